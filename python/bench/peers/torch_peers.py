"""PyTorch rows: eager FP32 (the reference), eager TF32, FP16 channels-last replayed from a CUDA
graph, and torch.compile(mode="max-autotune") in FP16. Written for torch 1.13 to 2.x."""

import os
import time

from . import PythonPeer, Setup, Skip, register


def _torch_version(env):
    v = env.get("torch") or ""
    try:
        return tuple(int(p) for p in v.split("+")[0].split(".")[:2])
    except ValueError:
        return (0, 0)


def torch_unavailable(env):
    if not env.get("torch"):
        return "torch not installed"
    if env.get("device") == "cuda" and not env.get("cuda_available"):
        return "torch sees no CUDA device"
    return None


def capture_graph(torch, model, x, warmup=3):
    """Warm-up runs on a side stream (cuDNN algorithm search, lazy allocations), then the
    forward captured once into a CUDA graph. Returns (graph, output tensor the replays fill)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            model(x)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = model(x)
    torch.cuda.synchronize()
    return graph, out


def set_tf32(torch, enabled):
    """TF32 for cuDNN convolutions and cuBLAS matmuls. torch >= 2.9 has per-backend
    fp32_precision settings and warns about the old flags; older versions only have those."""
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        mode = "tf32" if enabled else "ieee"
        conv.fp32_precision = mode
        torch.backends.cuda.matmul.fp32_precision = mode
    else:
        torch.backends.cudnn.allow_tf32 = enabled
        torch.backends.cuda.matmul.allow_tf32 = enabled


def load_inputs(cell):
    """The pickled model (CPU) and the input as a CPU tensor, both written by worker prepare."""
    import numpy as np
    import torch
    try:
        model = torch.load(cell["model_pt"], map_location="cpu", weights_only=False)
    except TypeError:  # torch < 1.13 has no weights_only
        model = torch.load(cell["model_pt"], map_location="cpu")
    x = torch.from_numpy(np.load(cell["input_npy"]))
    return model.eval(), x


def move_cached_tensors(model, device, dtype):
    """Tensors a module caches outside its buffers (kiln_models.Detect._grids, YOLO's grids)
    do not follow model.to(): move them too, or the forward mixes devices."""
    import torch

    def conv(v):
        if torch.is_tensor(v):
            return v.to(device=device, dtype=dtype if v.is_floating_point() else v.dtype)
        if isinstance(v, (tuple, list)):
            return type(v)(conv(e) for e in v)
        return v

    for m in model.modules():
        cache = getattr(m, "_grids", None)
        if isinstance(cache, dict):
            for k in list(cache):
                cache[k] = conv(cache[k])


def outputs_to_numpy(out):
    import torch
    if torch.is_tensor(out):
        out = [out]
    elif isinstance(out, dict):
        out = list(out.values())
    return [o.detach().float().cpu().numpy() for o in out]


def _timer(torch, device):
    from timing import HostTimer, SyncTimer
    return SyncTimer(torch) if device.type == "cuda" else HostTimer()


class TorchEager(PythonPeer):
    name = "torch-eager-fp32"
    label = "PyTorch eager FP32"
    order = 10
    is_reference = True
    tf32 = False

    def unavailable(self, env):
        return torch_unavailable(env) or super().unavailable(env)

    def setup(self, cell):
        import torch
        torch.set_grad_enabled(False)
        device = torch.device(cell["device"])
        if device.type == "cuda":
            set_tf32(torch, self.tf32)
            torch.backends.cudnn.benchmark = True
        t0 = time.perf_counter()
        model, x = load_inputs(cell)
        model = model.to(device)
        move_cached_tensors(model, device, torch.float32)
        x = x.to(device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        info = {"load_s": time.perf_counter() - t0, "tf32": self.tf32 and device.type == "cuda"}
        return Setup(lambda: model(x), _timer(torch, device), outputs_to_numpy, None, info)


class TorchEagerTF32(TorchEager):
    name = "torch-eager-tf32"
    label = "PyTorch eager TF32"
    order = 11
    is_reference = False
    tf32 = True
    needs_cuda = True
    default = False


class TorchFP16Graph(PythonPeer):
    """What a practitioner does before reaching for a compiler: half precision, NHWC, and the
    whole forward captured once into a CUDA graph (no per-kernel launch cost)."""
    name = "torch-fp16-cl-graph"
    label = "PyTorch FP16 CL + CUDA graph"
    order = 20
    needs_cuda = True

    def unavailable(self, env):
        return torch_unavailable(env) or super().unavailable(env)

    def setup(self, cell):
        import torch
        torch.set_grad_enabled(False)
        device = torch.device(cell["device"])
        if device.type != "cuda":
            raise Skip("needs CUDA")
        torch.backends.cudnn.benchmark = True
        model, x = load_inputs(cell)
        model = model.to(device).half().to(memory_format=torch.channels_last)
        move_cached_tensors(model, device, torch.float16)
        static_x = x.to(device).half().contiguous(memory_format=torch.channels_last)
        t0 = time.perf_counter()
        graph, static_out = capture_graph(torch, model, static_x)
        build_s = time.perf_counter() - t0

        def run():
            graph.replay()
            return static_out

        return Setup(run, _timer(torch, device), outputs_to_numpy, build_s,
                     {"build_what": "3 warm-up runs + graph capture"})


class TorchCompile(PythonPeer):
    name = "torch-compile-fp16"
    label = "torch.compile max-autotune FP16"
    order = 30
    needs_cuda = True
    default = False  # minutes per model: run.py adds it with --compile
    timeout_factor = 2

    def unavailable(self, env):
        if torch_unavailable(env):
            return torch_unavailable(env)
        if _torch_version(env) < (2, 0):
            return f"needs torch >= 2.0 (have {env.get('torch')})"
        return super().unavailable(env)

    def extra_env(self, cell):
        # A fresh cache per cell: the build time column is a cold compile, as on a new machine.
        return {"TORCHINDUCTOR_CACHE_DIR": os.path.join(cell["dir"], "inductor-cache"),
                "TRITON_CACHE_DIR": os.path.join(cell["dir"], "triton-cache")}

    def setup(self, cell):
        import torch
        torch.set_grad_enabled(False)
        device = torch.device(cell["device"])
        if device.type != "cuda":
            raise Skip("needs CUDA")
        torch.backends.cudnn.benchmark = True
        model, x = load_inputs(cell)
        model = model.to(device).half().to(memory_format=torch.channels_last)
        move_cached_tensors(model, device, torch.float16)
        x = x.to(device).half().contiguous(memory_format=torch.channels_last)
        compiled = torch.compile(model, mode="max-autotune")
        mark = getattr(getattr(torch, "compiler", None), "cudagraph_mark_step_begin", None)

        def run():
            if mark is not None:  # outputs of the previous replay may be overwritten
                mark()
            return compiled(x)

        t0 = time.perf_counter()
        for _ in range(3):  # compile + autotune, then CUDA-graph recording on the next calls
            run()
        torch.cuda.synchronize()
        build_s = time.perf_counter() - t0
        return Setup(run, _timer(torch, device), outputs_to_numpy, build_s,
                     {"build_what": "first 3 calls: compile, autotune, CUDA-graph recording"})


register(TorchEager())
register(TorchEagerTF32())
register(TorchFP16Graph())
register(TorchCompile())
