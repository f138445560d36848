"""The registry of runtimes the benchmark compares. A peer is a small class: which environment it
needs, the command line of the process that measures it, and how to read what that process
left. Every module in this package is imported on first use, so a new row (INT8, a native-API
build, a Python binding) is a new register() call or a new file here; run.py does not change.

Two kinds of peers:
  - an external program (kiln bench) as the measured process: command() gives its argv,
    before() and collect() may run unmeasured steps around it and read what it wrote;
  - PythonPeer: the measured process is worker.py, which calls the peer's setup() in a fresh
    interpreter and times the callable it returns (timing.measure).
Neither kind imports torch or onnxruntime at registry import: the parent process stays free of
CUDA so that NVML's per-process memory is the measured process's alone."""

import importlib
import os
import pkgutil
import sys

_REGISTRY = {}
_LOADED = False

BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(BENCH_DIR, "worker.py")


class Skip(Exception):
    """Raised by setup() when the peer cannot run here (not an error of the runtime)."""


class Peer:
    name = ""  # id for --peers and the JSON
    label = ""  # row label in tables and charts
    family = "peer"  # "kiln" for kiln's own rows: the charts set them apart
    needs_cuda = False
    needs_onnx = False  # run.py exports ONNX files only when a selected peer needs them
    default = True  # in the selection when --peers is not given
    order = 100  # row order in tables and charts
    is_reference = False  # its output is the reference of the agreement column
    timeout_factor = 1  # times --cell-timeout this peer's measured process may take

    def unavailable(self, env):
        """Reason this peer cannot run in `env` (run.py's environment record), or None."""
        if self.needs_cuda and env.get("device") != "cuda":
            return "needs CUDA"
        return None

    def default_for(self, env):
        """Whether the peer is in the selection when --peers is not given."""
        return self.default

    def extra_env(self, cell):
        """Environment variables for the measured process."""
        return {}

    def before(self, cell, step):
        """Unmeasured steps before the measured process (e.g. building an engine file).
        step(argv, name) runs a command with the cell's environment and returns (returncode,
        output text). Returns fields for the result; {'status': 'failed', ...} ends the cell."""
        return {}

    def command(self, cell):
        """argv of the measured process."""
        raise NotImplementedError

    def collect(self, cell, returncode, step):
        """Result fields (see run.py's cell record) from what the process left behind; may run
        unmeasured follow-up steps (e.g. one run that saves the outputs) through step."""
        raise NotImplementedError


class PythonPeer(Peer):
    """Measured in worker.py: setup(cell) returns a Setup; the worker times setup.fn."""

    def command(self, cell):
        return [sys.executable, WORKER, "run", cell["cell_json"]]

    def collect(self, cell, returncode, step):
        import json
        try:
            with open(cell["result_json"]) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {"status": "failed", "error": _exit_text(returncode) + " before writing its result"}

    def setup(self, cell):
        raise NotImplementedError


class Setup:
    """What a PythonPeer's setup() hands the worker.

    fn: one inference, returning the output(s); timer: a timing.*Timer; to_numpy(out): list of
    float32 numpy arrays; build_s: engine build / compile / capture seconds (None: nothing to
    build); info: extra fields for the JSON."""

    def __init__(self, fn, timer, to_numpy, build_s=None, info=None):
        self.fn, self.timer, self.to_numpy, self.build_s = fn, timer, to_numpy, build_s
        self.info = info or {}


def _exit_text(returncode):
    if returncode is None:
        return "did not finish"
    if returncode < 0:
        import signal
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"


exit_text = _exit_text


def register(peer):
    if not peer.name or peer.name in _REGISTRY:
        raise ValueError(f"peer name '{peer.name}' is empty or registered twice")
    _REGISTRY[peer.name] = peer
    return peer


def _load():
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        importlib.import_module(f"{__name__}.{mod.name}")


def all_peers():
    _load()
    return sorted(_REGISTRY.values(), key=lambda p: (p.order, p.name))


def get(name):
    _load()
    if name not in _REGISTRY:
        raise KeyError(f"unknown peer '{name}' (known: {', '.join(p.name for p in all_peers())})")
    return _REGISTRY[name]
