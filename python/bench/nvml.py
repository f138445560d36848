"""NVML through ctypes (no pynvml): GPU name, driver, memory in use, per-process memory, and a
sampler thread that records a child process tree's peak GPU memory while it runs.

Every column of the benchmark is measured by this one method, from the parent process, which
never touches CUDA itself: see docs/BENCHMARKS.md."""

import ctypes
import os
import threading
import time

NVML_SUCCESS = 0
NVML_ERROR_INSUFFICIENT_SIZE = 7
NVML_VALUE_NOT_AVAILABLE = 0xFFFFFFFFFFFFFFFF


class _Memory(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]


class _ProcessInfoV1(ctypes.Structure):
    _fields_ = [("pid", ctypes.c_uint), ("usedGpuMemory", ctypes.c_ulonglong)]


class _ProcessInfoV2(ctypes.Structure):  # also the layout of the _v3 query
    _fields_ = [("pid", ctypes.c_uint), ("usedGpuMemory", ctypes.c_ulonglong),
                ("gpuInstanceId", ctypes.c_uint), ("computeInstanceId", ctypes.c_uint)]


class NvmlError(RuntimeError):
    pass


class Nvml:
    """One NVML session. Raises NvmlError when the library or a GPU is missing."""

    def __init__(self, library="libnvidia-ml.so.1"):
        try:
            self.lib = ctypes.CDLL(library)
        except OSError as e:
            raise NvmlError(f"libnvidia-ml.so.1 not loadable ({e})")
        init = getattr(self.lib, "nvmlInit_v2", None) or self.lib.nvmlInit
        self._check(init(), "nvmlInit")
        # Newest process query first: the older ones fill a shorter struct.
        self._proc_query = None
        for name, struct in (("nvmlDeviceGetComputeRunningProcesses_v3", _ProcessInfoV2),
                             ("nvmlDeviceGetComputeRunningProcesses_v2", _ProcessInfoV2),
                             ("nvmlDeviceGetComputeRunningProcesses", _ProcessInfoV1)):
            fn = getattr(self.lib, name, None)
            if fn is not None:
                self._proc_query = (name, fn, struct)
                break

    def _check(self, rc, what):
        if rc != NVML_SUCCESS:
            msg = ""
            try:
                self.lib.nvmlErrorString.restype = ctypes.c_char_p
                msg = self.lib.nvmlErrorString(rc).decode()
            except Exception:
                pass
            raise NvmlError(f"{what} failed: {msg or 'NVML error'} ({rc})")

    def close(self):
        try:
            self.lib.nvmlShutdown()
        except Exception:
            pass

    def device_count(self):
        n = ctypes.c_uint()
        fn = getattr(self.lib, "nvmlDeviceGetCount_v2", None) or self.lib.nvmlDeviceGetCount
        self._check(fn(ctypes.byref(n)), "nvmlDeviceGetCount")
        return n.value

    def handle(self, index):
        h = ctypes.c_void_p()
        fn = getattr(self.lib, "nvmlDeviceGetHandleByIndex_v2", None) or self.lib.nvmlDeviceGetHandleByIndex
        self._check(fn(ctypes.c_uint(index), ctypes.byref(h)), f"nvmlDeviceGetHandleByIndex({index})")
        return h

    def handle_by_uuid(self, uuid):
        h = ctypes.c_void_p()
        self._check(self.lib.nvmlDeviceGetHandleByUUID(uuid.encode(), ctypes.byref(h)),
                    f"nvmlDeviceGetHandleByUUID({uuid})")
        return h

    def _string(self, fn, *args, size=256):
        buf = ctypes.create_string_buffer(size)
        self._check(fn(*args, buf, ctypes.c_uint(size)), fn.__name__)
        return buf.value.decode(errors="replace")

    def name(self, h):
        return self._string(self.lib.nvmlDeviceGetName, h)

    def uuid(self, h):
        return self._string(self.lib.nvmlDeviceGetUUID, h)

    def driver_version(self):
        return self._string(self.lib.nvmlSystemGetDriverVersion)

    def cuda_driver_version(self):
        """CUDA version the driver supports, as '13.0'."""
        v = ctypes.c_int()
        fn = getattr(self.lib, "nvmlSystemGetCudaDriverVersion_v2", None) or self.lib.nvmlSystemGetCudaDriverVersion
        self._check(fn(ctypes.byref(v)), "nvmlSystemGetCudaDriverVersion")
        return f"{v.value // 1000}.{v.value % 1000 // 10}"

    def memory(self, h):
        """(total, used) bytes of device memory."""
        m = _Memory()
        self._check(self.lib.nvmlDeviceGetMemoryInfo(h, ctypes.byref(m)), "nvmlDeviceGetMemoryInfo")
        return m.total, m.used

    def processes(self, h):
        """{pid: bytes or None} of the compute processes on the device (None: not reported).

        PIDs are those of the driver's PID namespace: inside a container they may not match
        os.getpid() values, which the sampler detects."""
        if self._proc_query is None:
            raise NvmlError("this NVML has no nvmlDeviceGetComputeRunningProcesses")
        name, fn, struct = self._proc_query
        count = ctypes.c_uint(0)
        rc = fn(h, ctypes.byref(count), None)
        if rc == NVML_SUCCESS and count.value == 0:
            return {}
        if rc not in (NVML_SUCCESS, NVML_ERROR_INSUFFICIENT_SIZE):
            self._check(rc, name)
        for _ in range(3):  # processes may appear between the two calls
            n = count.value + 8
            infos = (struct * n)()
            count = ctypes.c_uint(n)
            rc = fn(h, ctypes.byref(count), infos)
            if rc == NVML_SUCCESS:
                out = {}
                for i in range(count.value):
                    used = infos[i].usedGpuMemory
                    prev = out.get(infos[i].pid, 0)
                    out[infos[i].pid] = None if used == NVML_VALUE_NOT_AVAILABLE or prev is None else prev + used
                return out
            if rc != NVML_ERROR_INSUFFICIENT_SIZE:
                self._check(rc, name)
        raise NvmlError(f"{name}: process list kept growing")


def process_tree(root):
    """PIDs of root and all its descendants, from /proc (Linux)."""
    children = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return {root}
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
        rest = stat[stat.rfind(b")") + 2:].split()
        if len(rest) > 1:
            children.setdefault(int(rest[1]), []).append(int(entry))
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in tree:
            tree.add(pid)
            todo.extend(children.get(pid, ()))
    return tree


class Sampler:
    """Samples device memory and the per-process memory of a process tree every `interval` s.

    peak_process: the largest sum of NVML's usedGpuMemory over the tree's PIDs (None when no
    PID of the tree ever showed up while other processes did, as under a container's own PID
    namespace, or when NVML does not report per-process memory).
    peak_device_delta: the largest device 'used' minus the value at start()."""

    def __init__(self, nvml, handle, interval=0.005):
        self.nvml, self.handle, self.interval = nvml, handle, interval
        self._thread = None
        self._stop = threading.Event()

    def start(self, root_pid, baseline_used):
        self.root = root_pid
        self.baseline_used = baseline_used
        self.peak_process = 0
        self.peak_device_used = baseline_used
        self.matched = False  # some PID of the tree was listed by NVML
        self.foreign = False  # some process outside the tree was listed
        self.unreported = False  # NVML listed the tree's process without a memory figure
        self.samples = 0
        self.error = None
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        tree, last_tree = {self.root}, 0.0
        while True:
            now = time.monotonic()
            if now - last_tree > 0.1:
                tree, last_tree = process_tree(self.root), now
            try:
                _, used = self.nvml.memory(self.handle)
                self.peak_device_used = max(self.peak_device_used, used)
                procs = self.nvml.processes(self.handle)
                total = 0
                for pid, mem in procs.items():
                    if pid in tree:
                        self.matched = True
                        if mem is None:
                            self.unreported = True
                        else:
                            total += mem
                    else:
                        self.foreign = True
                self.peak_process = max(self.peak_process, total)
                self.samples += 1
            except NvmlError as e:
                self.error = str(e)
            if self._stop.wait(self.interval):
                return

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        delta = max(0, self.peak_device_used - self.baseline_used)
        if self.matched and not self.unreported:
            return {"peak_gpu_bytes": self.peak_process, "gpu_mem_method": "nvml-process",
                    "peak_device_delta_bytes": delta, "samples": self.samples}
        # Unmatched PIDs: the tree's usage is the rise of the device total over its value
        # before the process started (nothing else runs on the benchmark GPU).
        return {"peak_gpu_bytes": delta, "gpu_mem_method": "nvml-device-delta",
                "peak_device_delta_bytes": delta, "samples": self.samples,
                **({"nvml_error": self.error} if self.error else {})}


def settle_used(nvml, handle, timeout=3.0, tolerance=2 << 20):
    """Device memory in use once it stops falling: the driver frees a finished process's memory
    shortly after exit, and the next cell's baseline must not include it."""
    _, last = nvml.memory(handle)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.05)
        _, used = nvml.memory(handle)
        if abs(used - last) <= tolerance:
            return used
        last = used
    return last
