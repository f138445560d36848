#!/usr/bin/env python3
"""kiln against the runtimes practitioners deploy with, on the seed models, in one run.

  python3 python/bench/run.py --kiln build/tools/kiln --out OUT [--models M,...] [--peers P,...]
                              [--compile] [--quick] [--device cuda|cpu]

Each (model, batch, runtime) cell runs in a fresh process (worker.py, or `kiln bench` itself)
on the same input; this process only orchestrates, samples that process's GPU memory through
NVML, and never touches CUDA. PyTorch eager FP32 runs first at every batch: its output is the
reference of the agreement column. Writes OUT/results.json (after every cell), results.md,
performance_fragment.md (for docs/PERFORMANCE.md), latency.png, throughput.png and run.log.
docs/BENCHMARKS.md describes the method and every option.
"""

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(BENCH_DIR))
sys.path.insert(0, BENCH_DIR)

import nvml  # noqa: E402
import peers  # noqa: E402
import report  # noqa: E402
from peers.kiln_peers import bench_extra_options  # noqa: E402

# name: (label, input HxW, batches). The first batch is the latency column, the others the
# throughput columns. Input channels are in CHANNELS (3 unless listed).
MODELS = {
    "vgg16": ("VGG16", (224, 224), [1, 32]),
    "resnet50": ("ResNet-50", (224, 224), [1, 32, 256]),
    "unet": ("UNet", (512, 512), [1, 8]),
    "deeplabv3plus": ("DeepLabV3+", (512, 512), [1, 8]),
    "yolov5s": ("YOLOv5s", (640, 640), [1, 16]),
    "mnist_cnn": ("MNIST CNN", (28, 28), [1, 256]),
}
# --quick: small inputs and batches, for a smoke test on a CPU or a first look on a GPU.
QUICK = {
    "vgg16": ((224, 224), [1, 2]),  # its 7x7 adaptive pool exports to ONNX only from 224
    "resnet50": ((64, 64), [1, 2, 4]),
    "unet": ((64, 64), [1, 2]),
    "deeplabv3plus": ((64, 64), [1, 2]),
    "yolov5s": ((64, 64), [1, 2]),
    "mnist_cnn": ((28, 28), [1, 4]),
}
CHANNELS = {"mnist_cnn": 1}

PLAN_FULL = {"warmup": 10, "target_s": 2.0, "min_iters": 20, "max_iters": 20000, "repeats": 5, "max_cell_s": 20.0}
PLAN_QUICK = {"warmup": 2, "target_s": 0.2, "min_iters": 3, "max_iters": 10, "repeats": 2, "max_cell_s": 15.0}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kiln", default=os.path.join(REPO, "build", "tools", "kiln"),
                   help="the kiln command line (default: build/tools/kiln)")
    p.add_argument("--out", help="directory for the results (created; required)")
    p.add_argument("--models", default="all",
                   help=f"comma-separated subset of: {', '.join(MODELS)} (default all)")
    p.add_argument("--peers", default="",
                   help="comma-separated runtimes; 'all'; or +NAME / -NAME to change the default set "
                        "(--list-peers shows them)")
    p.add_argument("--list-peers", action="store_true", help="list the registered runtimes and exit")
    p.add_argument("--compile", action="store_true", help="add torch.compile(mode='max-autotune') FP16 (slow)")
    p.add_argument("--quick", action="store_true", help="small inputs and batches, few iterations")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--gpu", type=int, default=None,
                   help="NVML index of the GPU (default: the first of CUDA_VISIBLE_DEVICES, else 0)")
    p.add_argument("--batches", help="override every model's batches, e.g. 1,8 (first = latency column)")
    p.add_argument("--size", help="override every model's input HxW (the MNIST CNN stays 28x28)")
    p.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "kiln-bench-work"),
                   help="scratch directory: pickled models, inputs, ONNX files, kept as a cache "
                        "(default: $TMPDIR/kiln-bench-work; several GB for the full set)")
    p.add_argument("--keep-work", action="store_true", help="also keep reference outputs and cell logs")
    p.add_argument("--iterations", type=int, help="timed iterations per cell (default: about --target-s of work)")
    p.add_argument("--warmup", type=int, help="warm-up iterations per cell")
    p.add_argument("--target-s", type=float, help="seconds of timed iterations to aim for per cell")
    p.add_argument("--repeats", type=int, help="rounds the timed iterations are split into")
    p.add_argument("--max-cell-s", type=float, help="a slow cell runs fewer iterations to stay near this")
    p.add_argument("--cell-timeout", type=float, default=600.0, help="kill a cell after this many seconds")
    p.add_argument("--time-budget", type=float,
                   help="stop starting cells after this many seconds and write the report")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--opset", type=int, default=13)
    p.add_argument("--kiln-bench-args", default="auto",
                   help="extra options for `kiln bench`, e.g. '--streams 1'; 'auto' (default) adds one "
                        "that keeps I/O on the GPU if its --help lists one (--device-io, "
                        "--no-data-transfers)")
    p.add_argument("--charts", choices=("auto", "builtin", "matplotlib", "none"), default="auto")
    p.add_argument("--doc-image-dir", default="bench",
                   help="where performance_fragment.md expects the PNGs, relative to docs/")
    args = p.parse_args(argv)
    if not args.out and not args.list_peers:
        p.error("--out is required")
    for name in ("iterations", "warmup", "repeats"):
        v = getattr(args, name)
        if v is not None and v < 1:
            p.error(f"--{name} must be >= 1")
    return args


class Console:
    """Prints and appends to OUT/run.log."""

    def __init__(self, path):
        self.f = open(path, "a", buffering=1)

    def __call__(self, msg=""):
        print(msg, flush=True)
        self.f.write(msg + "\n")


# ------------------------------------------------------------------ environment


def probe_env(args, child_env, say):
    env = {"device": args.device, "kiln_path": os.path.abspath(args.kiln) if args.kiln else None}
    try:
        out = subprocess.run([sys.executable, os.path.join(BENCH_DIR, "worker.py"), "env", args.device],
                             capture_output=True, text=True, timeout=300, env=child_env)
        env.update(json.loads(out.stdout.strip().splitlines()[-1]))
    except Exception as e:
        say(f"warning: environment probe failed: {e}")
    env["kiln_version"], env["kiln_bench_help"] = None, None
    if env["kiln_path"] and os.access(env["kiln_path"], os.X_OK):
        for argv in (["--version"], ["version"]):
            r = _quiet_run([env["kiln_path"], *argv])
            if r and r.returncode == 0 and r.stdout.strip():
                env["kiln_version"] = r.stdout.strip().splitlines()[0][:200]
                break
        r = _quiet_run([env["kiln_path"], "bench", "--help"])
        if r is not None:
            env["kiln_bench_help"] = (r.stdout + r.stderr)[:8000]
    r = _quiet_run(["git", "-C", REPO, "describe", "--always", "--dirty", "--abbrev=10"])
    # a build carried to another machine names the commit it was made from (gpu_check --pack
    # writes it; gpu_session.sh exports it): that machine's checkout may be stale
    env["kiln_git"] = (os.environ.get("KILN_GIT_COMMIT")
                       or (r.stdout.strip() if r and r.returncode == 0 else None))
    return env


def _quiet_run(argv, timeout=60):
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None


def open_gpu(args, say):
    """(nvml session, handle, info dict, env for children) or (None, None, info with the reason, {})."""
    try:
        session = nvml.Nvml()
    except nvml.NvmlError as e:
        return None, None, {"nvml_error": str(e)}, {}
    try:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
        if args.gpu is not None:
            handle = session.handle(args.gpu)
        elif visible.startswith(("GPU-", "MIG-")):
            handle = session.handle_by_uuid(visible)
        else:
            handle = session.handle(int(visible) if visible.isdigit() else 0)
        total, used = session.memory(handle)
        info = {"name": session.name(handle), "uuid": session.uuid(handle),
                "driver": session.driver_version(), "memory_gib": round(total / 2 ** 30, 1),
                "used_at_start_mib": round(used / 2 ** 20)}
        try:
            info["cuda_driver"] = session.cuda_driver_version()
        except nvml.NvmlError:
            pass
        # Children see exactly this GPU as device 0, whatever the enumeration order.
        return session, handle, info, {"CUDA_VISIBLE_DEVICES": info["uuid"]}
    except (nvml.NvmlError, ValueError) as e:
        session.close()
        return None, None, {"nvml_error": str(e)}, {}


# ------------------------------------------------------------------ selection


def select_peers(spec, compile_flag, env):
    registry = peers.all_peers()
    names = {p.name for p in registry}
    chosen = [p.name for p in registry if p.default_for(env)]
    items = [s.strip() for s in spec.split(",") if s.strip()]
    if items and not all(s[0] in "+-" for s in items):
        chosen = []
    for s in items:
        name = s.lstrip("+-")
        if name == "all":
            chosen = [p.name for p in registry]
            continue
        if name not in names:
            raise SystemExit(f"run.py: unknown peer '{name}' (known: {', '.join(sorted(names))})")
        if s.startswith("-"):
            chosen = [c for c in chosen if c != name]
        elif name not in chosen:
            chosen.append(name)
    if compile_flag and "torch-compile-fp16" not in chosen:
        chosen.append("torch-compile-fp16")
    ref = next(p.name for p in registry if p.is_reference)
    if ref not in chosen:  # the agreement column needs it
        chosen.insert(0, ref)
    return [p for p in registry if p.name in chosen]


# ------------------------------------------------------------------ one cell


def wait_child(proc, timeout):
    """Waits with a deadline; returns (returncode, peak RSS MiB, timed_out). Kills the child's
    process group (it was started in a session of its own) on timeout."""
    try:
        return _wait_child(proc, timeout)
    except BaseException:  # Ctrl-C: the child runs in its own session and would outlive us
        try:
            os.killpg(proc.pid, 9)
            os.waitpid(proc.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        raise


def _wait_child(proc, timeout):
    deadline = time.monotonic() + timeout
    timed_out = False
    while True:
        pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            code = os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else (
                -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))
            proc.returncode = code
            return code, rusage.ru_maxrss / 1024.0, timed_out
        if not timed_out and time.monotonic() > deadline:
            timed_out = True
            for sig, grace in ((15, 10.0), (9, 0.0)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                end = time.monotonic() + grace
                while time.monotonic() < end:
                    if os.wait4(proc.pid, os.WNOHANG)[0] == proc.pid:
                        proc.returncode = -sig
                        return -sig, None, True
                    time.sleep(0.1)
        time.sleep(0.02)


class Runner:
    def __init__(self, args, env, say, gpu, child_env):
        self.args, self.env, self.say = args, env, say
        self.session, self.handle = gpu
        self.child_env = dict(os.environ, **child_env, PYTHONUNBUFFERED="1")
        self.child_env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
        self.plan = dict(PLAN_QUICK if args.quick else PLAN_FULL)
        for k in ("warmup", "target_s", "repeats", "max_cell_s"):
            if getattr(args, k) is not None:
                self.plan[k] = getattr(args, k)
        if args.iterations:
            self.plan["min_iters"] = self.plan["max_iters"] = args.iterations
        if args.kiln_bench_args == "auto":
            self.kiln_bench_extra = bench_extra_options(env.get("kiln_bench_help"))
        else:
            self.kiln_bench_extra = shlex.split(args.kiln_bench_args)
        env["kiln_bench_extra"] = self.kiln_bench_extra

    def run(self, model, batch, peer, prep, ref_npz, write_ref, ref_result):
        args = self.args
        cdir = os.path.join(args.work, "cells", model, f"b{batch}", peer.name)
        shutil.rmtree(cdir, ignore_errors=True)
        os.makedirs(cdir)
        brec = prep["batches"][str(batch)]
        plan = dict(self.plan)
        ref_n = (ref_result or {}).get("latency_ms", {}).get("count")
        plan["kiln_iterations"] = args.iterations or max(plan["min_iters"], min(plan["max_iters"], ref_n or 100))
        plan["kiln_warmup"] = plan["warmup"]
        cell = {"model": model, "batch": batch, "peer": peer.name, "device": args.device, "dir": cdir,
                "model_pt": prep["model_pt"], "input_npy": brec["input_npy"], "input_pb": brec["input_pb"],
                "onnx": brec.get("onnx"), "ref_npz": ref_npz, "write_ref": write_ref, "plan": plan,
                "kiln": self.env.get("kiln_path"), "kiln_bench_extra": self.kiln_bench_extra,
                "input_name": prep.get("input_name", "input"),
                "cell_json": os.path.join(cdir, "cell.json"), "result_json": os.path.join(cdir, "result.json"),
                "log": os.path.join(cdir, "log.txt")}
        if peer.needs_onnx and not cell["onnx"]:
            return {"status": "failed", "error": "ONNX export failed: " + brec.get("onnx_error", "not exported")}
        env = dict(self.child_env, **peer.extra_env(cell))
        steps = []

        def step(argv, name):
            """An unmeasured command of the cell; its output goes to CELL/NAME.log."""
            path = os.path.join(cdir, f"{name}.log")
            with open(path, "w") as f:
                f.write("$ " + " ".join(argv) + "\n")
                f.flush()
                try:
                    p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=REPO,
                                         start_new_session=True)
                except OSError as e:
                    return 127, f"could not start {argv[0]}: {e}"
                rc = wait_child(p, args.cell_timeout)[0]
            steps.append({"step": name, "returncode": rc})
            return rc, "\n".join(_tail(path, 50))

        pre = peer.before(cell, step)
        if pre.get("status") == "failed":
            return dict(pre, steps=steps)
        cmd = peer.command(cell)
        with open(cell["cell_json"], "w") as f:
            json.dump(cell, f, indent=1)
        baseline = nvml.settle_used(self.session, self.handle) if self.session else None
        sampler = nvml.Sampler(self.session, self.handle) if self.session else None
        t0 = time.monotonic()
        with open(cell["log"], "w") as logf:
            logf.write("$ " + " ".join(cmd) + "\n")
            logf.flush()
            try:
                proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env, cwd=REPO,
                                        start_new_session=True)
            except OSError as e:
                return {"status": "failed", "error": f"could not start {cmd[0]}: {e}"}
            if sampler:
                sampler.start(proc.pid, baseline)
            timeout = args.cell_timeout * peer.timeout_factor
            rc, rss, timed_out = wait_child(proc, timeout)
            mem = sampler.stop() if sampler else None
        wall = time.monotonic() - t0
        if timed_out:
            res = {"status": "failed", "error": f"timed out after {timeout:.0f} s (--cell-timeout)"}
        else:
            res = peer.collect(cell, rc, step)
        notes = pre.pop("notes", []) + res.pop("notes", [])
        res = dict(pre, **res)
        if notes:
            res["notes"] = notes
        if steps:
            res["steps"] = steps
        res["wall_s"] = wall
        res["returncode"] = rc
        res["peak_rss_mib"] = rss
        if mem:
            res["peak_gpu_mib"] = mem["peak_gpu_bytes"] / 2 ** 20
            res["gpu_mem_method"] = mem["gpu_mem_method"]
            res["gpu_mem_samples"] = mem["samples"]
        if res.get("status") == "failed":
            res["log_tail"] = _tail(cell["log"], 40)
        if "traceback" in res:
            res["traceback"] = res["traceback"][-4000:]
        res["log"] = cell["log"]
        return res


def _tail(path, n):
    try:
        with open(path, errors="replace") as f:
            return f.read().splitlines()[-n:]
    except OSError:
        return []


def finish_record(rec, batch, work):
    """Derived fields every peer gets the same way. Paths in the scratch directory leave error
    texts (they differ per batch and say nothing): 'WORK/models/x/b1/model.onnx' -> 'model.onnx'."""
    for key in ("error",):
        if isinstance(rec.get(key), str):
            rec[key] = re.sub(re.escape(os.path.abspath(work).rstrip("/")) + r"/\S*/", "", rec[key])
    for i, note in enumerate(rec.get("notes") or []):
        rec["notes"][i] = re.sub(re.escape(os.path.abspath(work).rstrip("/")) + r"/\S*/", "", note)
    lat = rec.get("latency_ms") or {}
    if rec.get("status") == "ok" and lat.get("median"):
        rec["throughput_per_s"] = batch * 1000.0 / lat["median"]
    agr = rec.get("agreement") or {}
    if "rel_l2" in agr and not agr.get("error"):
        rec["rel_l2"] = agr["rel_l2"]
    return rec


def describe(rec):
    if rec["status"] != "ok":
        return f"{rec['status']}: {rec.get('error', '')}"
    lat = rec["latency_ms"]
    parts = [f"{lat['median']:.3f} ms [{lat.get('min', float('nan')):.3f}-{lat.get('p90', float('nan')):.3f}]",
             f"{rec.get('throughput_per_s', 0):,.0f}/s"]
    if rec.get("peak_gpu_mib") is not None:
        parts.append(f"GPU {rec['peak_gpu_mib']:,.0f} MiB")
    elif rec.get("peak_rss_mib") is not None:
        parts.append(f"RSS {rec['peak_rss_mib']:,.0f} MiB")
    agr = rec.get("agreement") or {}
    if agr.get("reference"):
        parts.append("reference")
    elif "rel_l2" in rec:
        parts.append(f"relL2 {rec['rel_l2']:.1e}")
    elif agr.get("error"):
        parts.append(f"agreement: {agr['error']}")
    if rec.get("build_s") is not None:
        parts.append(f"build {rec['build_s']:.1f} s")
    return "  ".join(parts)


# ------------------------------------------------------------------ main


def main(argv=None):
    args = parse_args(argv if argv is not None else sys.argv[1:])
    if args.list_peers:
        for p in peers.all_peers():
            print(f"{p.name:22} {p.label:34} {'kiln' if p.family == 'kiln' else 'peer':5} "
                  f"{'default' if p.default else 'optional'}{'  needs CUDA' if p.needs_cuda else ''}")
        return 0
    models = list(MODELS) if args.models == "all" else [m.strip() for m in args.models.split(",") if m.strip()]
    for m in models:
        if m not in MODELS:
            raise SystemExit(f"run.py: unknown model '{m}' (known: {', '.join(MODELS)})")
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.work, exist_ok=True)
    say = Console(os.path.join(args.out, "run.log"))
    started = time.monotonic()
    say(f"kiln benchmark, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}: {' '.join(sys.argv)}")

    gpu_session, handle, gpu_info, gpu_env = (None, None, {}, {})
    if args.device == "cuda":
        gpu_session, handle, gpu_info, gpu_env = open_gpu(args, say)
        if gpu_session is None:
            say(f"warning: NVML unavailable ({gpu_info.get('nvml_error')}): no GPU memory column")
    env = probe_env(args, dict(os.environ, **gpu_env), say)
    env["gpu"] = gpu_info
    if args.device == "cuda" and env.get("torch") and not env.get("cuda_available"):
        say("warning: torch sees no CUDA device; the PyTorch rows will fail")
    selected = select_peers(args.peers, args.compile, env)
    unavailable = {p.name: p.unavailable(env) for p in selected}
    say("device: " + (f"{gpu_info.get('name')} (driver {gpu_info.get('driver')}, CUDA {gpu_info.get('cuda_driver')})"
                      if gpu_info.get("name") else f"{args.device} ({env.get('cpu')}, {env.get('cpu_count')} cores)"))
    say(f"torch {env.get('torch')}, onnxruntime {env.get('onnxruntime')}, onnx {env.get('onnx')}, "
        f"{report.kiln_text(env)} at {env.get('kiln_path')}")
    for p in selected:
        say(f"  {p.name:22} {unavailable[p.name] or 'ready'}")

    results = {
        "schema": "kiln-bench/1",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(sys.argv),
        "config": {"device": args.device, "quick": args.quick, "plan": None, "seed": args.seed,
                   "opset": args.opset, "compile": args.compile},
        "env": env,
        "models": {},
        "peers": {p.name: {"label": p.label, "family": p.family, "order": p.order, "reference": p.is_reference,
                           "unavailable": unavailable[p.name]} for p in selected},
        "cells": [],
    }
    runner = Runner(args, env, say, (gpu_session, handle), gpu_env)
    results["config"]["plan"] = runner.plan
    if args.device == "cuda" and any(p.family == "kiln" and not unavailable[p.name] for p in selected) \
            and not runner.kiln_bench_extra:
        say("note: kiln bench has no option for device-resident I/O: kiln's latency includes the "
            "host<->GPU copies of the input and output")
    json_path = os.path.join(args.out, "results.json")

    def save():
        tmp = json_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(results, f, indent=1, default=str)
        os.replace(tmp, json_path)

    need_onnx = any(p.needs_onnx and not unavailable[p.name] for p in selected)
    budget_hit = False
    total = sum(len(_batches(args, m)) for m in models) * len(selected)
    done = 0
    for model in models:
        label, _, _ = MODELS[model]
        size, batches = _size(args, model), _batches(args, model)
        results["models"][model] = {"label": label, "input": [CHANNELS.get(model, 3), *size], "batches": batches}
        prep = None
        if not budget_hit and not _over_budget(args, started):
            say(f"\n== {label} ({CHANNELS.get(model, 3)}x{size[0]}x{size[1]}), batches {batches}")
            prep = prepare(args, model, size, batches, need_onnx, say)
            results["models"][model]["prepare"] = {k: v for k, v in prep.items() if k not in ("traceback",)}
        for batch in batches:
            ref_npz = os.path.join(args.work, "cells", model, f"b{batch}", "reference.npz")
            ref_result = None
            if os.path.exists(ref_npz):
                os.remove(ref_npz)
            for peer in selected:
                done += 1
                rec = {"model": model, "batch": batch, "peer": peer.name}
                if not budget_hit and _over_budget(args, started):
                    budget_hit = True
                    say(f"time budget of {args.time_budget:.0f} s spent: the remaining cells are skipped")
                if budget_hit:
                    rec.update(status="skipped", error=f"time budget ({args.time_budget:.0f} s) spent")
                elif unavailable[peer.name]:
                    rec.update(status="skipped", error=unavailable[peer.name])
                elif prep is None or prep.get("status") != "ok":
                    rec.update(status="failed", error="model preparation failed: "
                               + ((prep or {}).get("error") or "see run.log"))
                else:
                    rec.update(runner.run(model, batch, peer, prep, ref_npz, peer.is_reference, ref_result))
                finish_record(rec, batch, args.work)
                if peer.is_reference:
                    ref_result = rec
                results["cells"].append(rec)
                save()
                say(f"[{done:3}/{total}] {model} b{batch:<4} {peer.name:22} {describe(rec)}")
                tail = [ln for ln in rec.get("log_tail") or [] if not ln.startswith("$ ")]
                if rec["status"] == "failed" and len(tail) > 1:  # more than the error line
                    say("      | " + "\n      | ".join(tail[-15:]))
            if not args.keep_work:
                shutil.rmtree(os.path.join(args.work, "cells", model, f"b{batch}"), ignore_errors=True)
            # After every batch: a run killed from outside still leaves readable tables.
            results["elapsed_s"] = time.monotonic() - started
            save()
            _write_report(results, args, say)
    if gpu_session:
        gpu_session.close()

    failed = [c for c in results["cells"] if c["status"] == "failed"]
    skipped = [c for c in results["cells"] if c["status"] == "skipped"]
    ok = [c for c in results["cells"] if c["status"] == "ok"]
    say(f"\n{len(ok)} cells measured, {len(failed)} failed, {len(skipped)} skipped "
        f"in {time.monotonic() - started:.0f} s")
    for line in report.failure_lines(results):
        say("  " + line)
    say(f"results: {args.out}/results.md, results.json, performance_fragment.md, latency.png, throughput.png")
    return 0 if ok else 1


def _size(args, model):
    size = (QUICK[model][0] if args.quick else MODELS[model][1])
    if args.size and model != "mnist_cnn":
        try:
            h, w = (int(v) for v in args.size.lower().split("x"))
        except ValueError:
            raise SystemExit(f"run.py: --size wants HxW, got '{args.size}'")
        size = (h, w)
    return list(size)


def _batches(args, model):
    if args.batches:
        try:
            b = [int(v) for v in args.batches.split(",")]
        except ValueError:
            raise SystemExit(f"run.py: --batches wants numbers, got '{args.batches}'")
        if not b or min(b) < 1:
            raise SystemExit("run.py: --batches must be >= 1")
        return b
    return list(QUICK[model][1] if args.quick else MODELS[model][2])


def _over_budget(args, started):
    return args.time_budget is not None and time.monotonic() - started > args.time_budget


def prepare(args, model, size, batches, need_onnx, say):
    mdir = os.path.join(args.work, "models", f"{model}_{size[0]}x{size[1]}")
    os.makedirs(mdir, exist_ok=True)
    spec = {"model": model, "channels": CHANNELS.get(model, 3), "size": size, "batches": batches,
            "seed": args.seed, "need_onnx": need_onnx,
            "opset": args.opset, "dir": mdir, "result": os.path.join(mdir, "prepare_result.json")}
    spec_path = os.path.join(mdir, "prepare_spec.json")
    with open(spec_path, "w") as f:
        json.dump(spec, f)
    if os.path.exists(spec["result"]):
        os.remove(spec["result"])
    t0 = time.monotonic()
    logp = os.path.join(mdir, "prepare.log")
    with open(logp, "w") as logf:
        try:
            # CPU only: preparing must not hold GPU memory or time.
            env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
            subprocess.run([sys.executable, os.path.join(BENCH_DIR, "worker.py"), "prepare", spec_path],
                           stdout=logf, stderr=subprocess.STDOUT, env=env, timeout=1800)
        except subprocess.TimeoutExpired:
            return {"status": "failed", "error": "preparation timed out after 1800 s"}
    try:
        with open(spec["result"]) as f:
            res = json.load(f)
    except (OSError, ValueError):
        res = {"status": "failed", "error": "worker prepare crashed", "log_tail": _tail(logp, 20)}
    res["prepare_s"] = time.monotonic() - t0
    if res.get("status") != "ok":
        say(f"preparation failed: {res.get('error')}\n      | " + "\n      | ".join(_tail(logp, 15)))
    else:
        errs = [f"b{b}: {r['onnx_error']}" for b, r in res["batches"].items() if r.get("onnx_error")]
        say(f"prepared in {res['prepare_s']:.1f} s{' (cached)' if res.get('cached') else ''}"
            + (f"; ONNX export failed: {'; '.join(errs)}" if errs else ""))
    return res


def _write_report(results, args, say):
    try:
        written = report.write_all(results, args.out, charts=args.charts, image_dir=args.doc_image_dir)
        for w in written.get("warnings", []):
            say(f"warning: {w}")
    except Exception as e:  # the JSON is already saved; report.py can redo this from it
        import traceback
        say(f"warning: writing the report failed: {e}\n{traceback.format_exc()}")


if __name__ == "__main__":
    sys.exit(main())
