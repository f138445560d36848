"""ONNX Runtime rows, one per execution provider; those whose provider is not installed stay out
of the default selection (asked for by name, they report why they cannot run)."""

import time

from . import PythonPeer, Setup, Skip, register


class OrtPeer(PythonPeer):
    needs_onnx = True

    def __init__(self, name, label, provider, on_gpu, order, options=None):
        self.name, self.label, self.provider = name, label, provider
        self.needs_cuda, self.order = on_gpu, order
        self.options = options or {}

    def unavailable(self, env):
        if not env.get("onnxruntime"):
            return "onnxruntime not installed"
        have = env.get("onnxruntime_providers") or []
        if self.provider not in have:
            return f"{self.provider} not in onnxruntime {env['onnxruntime']} (has {', '.join(have) or 'none'})"
        return super().unavailable(env)

    def default_for(self, env):
        """The CPU provider always (its row says so when ONNX Runtime is missing); the GPU
        providers only when installed, or every table would carry two rows of 'not installed'."""
        return not self.needs_cuda or self.provider in (env.get("onnxruntime_providers") or [])

    def setup(self, cell):
        import numpy as np
        import onnxruntime as ort
        from timing import HostTimer
        if self.needs_cuda and cell["device"] != "cuda":
            raise Skip("needs CUDA")
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        x = np.load(cell["input_npy"])
        t0 = time.perf_counter()
        sess = ort.InferenceSession(cell["onnx"], so, providers=[(self.provider, self.options)])
        if self.provider not in sess.get_providers():
            raise RuntimeError(f"session fell back to {sess.get_providers()}")
        in_name = sess.get_inputs()[0].name
        if not self.needs_cuda:
            def run():
                return sess.run(None, {in_name: x})
            to_numpy = lambda out: [np.asarray(o, dtype=np.float32) for o in out]  # noqa: E731
        else:
            # Input and outputs stay on the device, as for the PyTorch rows: no copies timed.
            io = sess.io_binding()
            x_dev = ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0)
            io.bind_ortvalue_input(in_name, x_dev)
            for o in sess.get_outputs():
                io.bind_output(o.name, "cuda")

            def run():
                sess.run_with_iobinding(io)  # returns once the provider's stream is done
                return io.get_outputs()
            to_numpy = lambda out: [np.asarray(o.numpy(), dtype=np.float32) for o in out]  # noqa: E731
        run()  # TensorRT's provider builds its engine at the first run: count it as build time
        build_s = time.perf_counter() - t0
        return Setup(run, HostTimer(), to_numpy, build_s,
                     {"providers": sess.get_providers(), "ort_version": ort.__version__,
                      "build_what": "session creation + first run"})


register(OrtPeer("ort-cpu", "ONNX Runtime CPU", "CPUExecutionProvider", False, 40))
register(OrtPeer("ort-cuda", "ONNX Runtime CUDA", "CUDAExecutionProvider", True, 41))
register(OrtPeer("ort-tensorrt", "ONNX Runtime TensorRT FP16", "TensorrtExecutionProvider", True, 42,
                 {"trt_fp16_enable": True}))
