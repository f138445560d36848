#!/usr/bin/env python3
"""The processes run.py starts, one job each, so that every measurement has a fresh process
whose GPU memory NVML can attribute, and a crash or out-of-memory ends only that cell.

  worker.py env DEVICE              print the software and device versions as JSON
  worker.py prepare SPEC.json       build a seed model once: pickled module, inputs, ONNX files
  worker.py run CELL.json           measure one (model, batch, peer) cell, write its result JSON
"""

import contextlib
import hashlib
import inspect
import json
import os
import platform
import sys
import time
import traceback

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
PYTHON_DIR = os.path.dirname(BENCH_DIR)
for _p in (BENCH_DIR, PYTHON_DIR):
    if _p not in sys.path:
        sys.path.insert(0, _p)


def log(msg):
    print(f"[worker {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def one_line(exc):
    """'TypeName: first line of the message', the text a table cell shows."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip().rstrip(":")


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, default=str)
    os.replace(tmp, path)


# ------------------------------------------------------------------ env


def _version(module):
    try:
        mod = __import__(module)
        return getattr(mod, "__version__", "unknown")
    except Exception:
        return None


def cmd_env(device):
    import importlib.util
    info = {"python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), None)
    except OSError:
        info["cpu"] = platform.processor() or None
    for mod in ("numpy", "onnx", "torchvision"):
        info[mod] = _version(mod)
    info["matplotlib"] = importlib.util.find_spec("matplotlib") is not None
    try:
        import onnxruntime
        info["onnxruntime"] = onnxruntime.__version__
        info["onnxruntime_providers"] = list(onnxruntime.get_available_providers())
    except Exception as e:
        info["onnxruntime"] = None
        info["onnxruntime_error"] = one_line(e)
    try:
        import torch
        info["torch"] = torch.__version__
        info["torch_cuda"] = torch.version.cuda
        info["cuda_available"] = bool(torch.cuda.is_available())
        if device == "cuda" and info["cuda_available"]:
            info["cudnn"] = torch.backends.cudnn.version()
            p = torch.cuda.get_device_properties(0)
            info["torch_device"] = {"name": p.name, "capability": f"{p.major}.{p.minor}",
                                    "memory_gib": round(p.total_memory / 2 ** 30, 1),
                                    "multiprocessors": p.multi_processor_count}
    except Exception as e:
        info["torch"] = None
        info["torch_error"] = one_line(e)
    print(json.dumps(info))


# ------------------------------------------------------------------ prepare


@contextlib.contextmanager
def torchscript_exporter(torch):
    """torch >= 2.9 exports through dynamo by default, which needs onnxscript; the TorchScript
    exporter needs nothing more and gives the same graphs on every torch version. Applies to
    export.py's calls unless they choose an exporter themselves."""
    orig = torch.onnx.export
    try:
        has_dynamo = "dynamo" in inspect.signature(orig).parameters
    except (TypeError, ValueError):
        has_dynamo = False
    if not has_dynamo:
        yield
        return

    def export(*args, **kwargs):
        kwargs.setdefault("dynamo", False)
        return orig(*args, **kwargs)

    torch.onnx.export = export
    try:
        yield
    finally:
        torch.onnx.export = orig


def prepare_key(spec, torch_version):
    h = hashlib.sha256()
    for name in ("kiln_models.py", "export.py"):
        with open(os.path.join(PYTHON_DIR, name), "rb") as f:
            h.update(f.read())
    fields = {k: spec[k] for k in ("model", "channels", "size", "batches", "seed", "need_onnx", "opset")}
    h.update(json.dumps([fields, torch_version], sort_keys=True).encode())
    return h.hexdigest()


def make_input(torch, name, channels, h, w, batch, seed):
    """The input every peer gets for (model, batch): N(0, 1), or [0, 1) pixels for the MNIST CNN."""
    g = torch.Generator().manual_seed(seed + 12345 + batch)
    if name == "mnist_cnn":
        return torch.rand(batch, channels, h, w, generator=g)
    return torch.randn(batch, channels, h, w, generator=g)


def cmd_prepare(spec_path):
    with open(spec_path) as f:
        spec = json.load(f)
    out_dir, name = spec["dir"], spec["model"]
    result = {"model": name, "status": "ok", "batches": {}, "input_name": "input"}
    try:
        import numpy as np
        import torch
        key = prepare_key(spec, torch.__version__)
        done_path = os.path.join(out_dir, "prepare.json")
        if os.path.exists(done_path):
            with open(done_path) as f:
                done = json.load(f)
            files = [done.get("model_pt")] + [p for b in done.get("batches", {}).values()
                                              for p in (b.get("input_npy"), b.get("input_pb"), b.get("onnx")) if p]
            if done.get("key") == key and done.get("status") == "ok" and all(os.path.exists(p) for p in files):
                done["cached"] = True
                write_json(spec["result"], done)
                log(f"{name}: reusing {out_dir}")
                return 0
        import export as exporter
        import kiln_models
        torch.set_grad_enabled(False)
        os.makedirs(out_dir, exist_ok=True)
        channels = spec["channels"]  # run.py owns the input shapes
        h, w = spec["size"]
        t0 = time.perf_counter()
        model = kiln_models.build(name, spec["seed"], (channels, h, w))
        # One forward first: it checks the size suits the model and fills caches the model
        # keeps (YOLO's grids) before the module is pickled.
        y = model(make_input(torch, name, channels, h, w, 1, spec["seed"]))
        ys = list(y) if isinstance(y, (tuple, list)) else [y]
        result["output_shapes_b1"] = [list(t.shape) for t in ys]
        result["params"] = sum(p.numel() for p in model.parameters())
        model_pt = os.path.join(out_dir, "model.pt")
        torch.save(model, model_pt)
        result["model_pt"] = model_pt
        result["build_s"] = time.perf_counter() - t0
        log(f"{name}: built in {result['build_s']:.1f}s, {result['params']:,} parameters")
        for batch in spec["batches"]:
            bdir = os.path.join(out_dir, f"b{batch}")
            os.makedirs(bdir, exist_ok=True)
            x = make_input(torch, name, channels, h, w, batch, spec["seed"])
            rec = {"input_npy": os.path.join(bdir, "input.npy"),
                   "input_pb": os.path.join(bdir, "test_data_set_0", "input_0.pb")}
            np.save(rec["input_npy"], x.numpy())
            exporter.write_test_data(os.path.dirname(rec["input_pb"]), "input", x.numpy(), [], [])
            if spec["need_onnx"]:
                path = os.path.join(bdir, "model.onnx")
                t1 = time.perf_counter()
                try:
                    with torchscript_exporter(torch):
                        exporter.export(model, x, path, "input", ["output"], spec["opset"], False)
                    rec["onnx"] = path
                    rec["export_s"] = time.perf_counter() - t1
                    log(f"{name} b{batch}: exported in {rec['export_s']:.1f}s "
                        f"({os.path.getsize(path) / 1e6:.0f} MB)")
                except Exception as e:
                    rec["onnx_error"] = one_line(e)
                    log(f"{name} b{batch}: export failed: {traceback.format_exc()}")
            result["batches"][str(batch)] = rec
        result["key"] = key
        write_json(done_path, result)
    except Exception as e:
        result.update(status="failed", error=one_line(e), traceback=traceback.format_exc())
        log(traceback.format_exc())
    write_json(spec["result"], result)
    return 0 if result["status"] == "ok" else 1


# ------------------------------------------------------------------ run


def cmd_run(cell_path):
    with open(cell_path) as f:
        cell = json.load(f)
    import compare
    import peers
    import timing
    result = {"status": "ok"}
    try:
        peer = peers.get(cell["peer"])
        log(f"{cell['model']} b{cell['batch']} {peer.name}: setting up")
        setup = peer.setup(cell)
        plan = cell["plan"]
        stats, out = timing.measure(setup.fn, setup.timer, plan["warmup"], plan["target_s"], plan["min_iters"],
                                    plan["max_iters"], plan["repeats"], plan["max_cell_s"], log)
        result.update(latency_ms=stats, build_s=setup.build_s, info=setup.info)
        outputs = setup.to_numpy(out)
        result["output_shapes"] = [list(o.shape) for o in outputs]
        ref = cell.get("ref_npz")
        if cell.get("write_ref"):
            compare.save_outputs(ref, outputs)
            result["agreement"] = {"reference": True}
        elif ref and os.path.exists(ref):
            result["agreement"] = compare.agreement(outputs, compare.load_outputs(ref))
        else:
            result["agreement"] = {"error": "no reference output"}
    except peers.Skip as e:
        result.update(status="skipped", error=str(e))
    except (Exception, MemoryError) as e:
        result.update(status="failed", error=one_line(e), traceback=traceback.format_exc())
        log(traceback.format_exc())
    write_json(cell["result_json"], result)
    return 0 if result["status"] != "failed" else 1


def main(argv):
    if len(argv) != 2 or argv[0] not in ("env", "prepare", "run"):
        print(__doc__, file=sys.stderr)
        return 2
    cmd, arg = argv
    if cmd == "env":
        cmd_env(arg)
        return 0
    return cmd_prepare(arg) if cmd == "prepare" else cmd_run(arg)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
