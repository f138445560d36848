#!/usr/bin/env python3
"""Turns benchmark results (run.py's results.json) into Markdown tables, a fragment for
docs/PERFORMANCE.md and PNG charts. run.py calls it after every model; run it by hand to
redo the report, or to merge the results of several runs (e.g. one per model):

  python3 python/bench/report.py OUT1/results.json OUT2/results.json --out DIR
"""

import argparse
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import charts  # noqa: E402
from charts import fmt_num  # noqa: E402

# ------------------------------------------------------------------ formatting


def _esc(text):
    return " ".join(str(text).split()).replace("|", "\\|")


def _short(text, n=70):
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[:n - 3] + "..."


def fmt_rel(v):
    if v is None:
        return "?"
    if isinstance(v, float) and math.isnan(v):
        return "NaN"
    return "0" if v == 0 else f"{v:.1e}"


def _sorted_peers(results):
    return [n for n, _ in sorted(results["peers"].items(), key=lambda kv: (kv[1].get("order", 100), kv[0]))]


def _index(results):
    return {(c["model"], c["batch"], c["peer"]): c for c in results["cells"]}


def _not_ok(rec, n=60):
    if rec is None:
        return "not run"
    word = "n/a" if rec["status"] == "skipped" else "**failed**"
    return f"{word}: {_esc(_short(rec.get('error', ''), n))}"


def _mem(rec):
    if rec is None or rec["status"] != "ok":
        return None
    return rec.get("peak_gpu_mib") if rec.get("peak_gpu_mib") is not None else None


def kiln_text(env):
    """'kiln 0.1.0 (git abc123)' from `kiln --version` and the repository's revision."""
    kiln = env.get("kiln_version") or env.get("kiln_git")
    if not kiln:
        return "kiln version unknown"
    if env.get("kiln_version") and env.get("kiln_git") and env["kiln_git"] not in kiln:
        kiln += f" (git {env['kiln_git']})"
    return kiln if kiln.lower().startswith("kiln") else "kiln " + kiln


def caption(results):
    env = results.get("env", {})
    gpu = env.get("gpu") or {}
    parts = []
    if env.get("device") == "cuda" and gpu.get("name"):
        parts.append(f"GPU {gpu['name']} ({gpu.get('memory_gib', '?')} GiB), driver {gpu.get('driver', '?')}"
                     + (f", CUDA {gpu['cuda_driver']} (driver API)" if gpu.get("cuda_driver") else ""))
    else:
        parts.append(f"{env.get('device', '?').upper()} run; CPU {env.get('cpu') or '?'}, "
                     f"{env.get('cpu_count') or '?'} cores")
    if env.get("torch"):
        t = f"PyTorch {env['torch']}"
        extra = [f"CUDA {env['torch_cuda']}" if env.get("torch_cuda") else None,
                 f"cuDNN {env['cudnn']}" if env.get("cudnn") else None]
        extra = [e for e in extra if e]
        parts.append(t + (f" ({', '.join(extra)})" if extra else ""))
    if env.get("torchvision"):
        parts.append(f"torchvision {env['torchvision']}")
    if env.get("onnxruntime"):
        provs = ", ".join(p.replace("ExecutionProvider", "") for p in env.get("onnxruntime_providers") or [])
        parts.append(f"ONNX Runtime {env['onnxruntime']} ({provs})")
    else:
        parts.append("ONNX Runtime not installed")
    if env.get("onnx"):
        parts.append(f"onnx {env['onnx']}")
    parts.append(kiln_text(env))
    parts.append(f"Python {env.get('python', '?')}")
    parts.append(results.get("created", "")[:10])
    if results.get("config", {}).get("quick"):
        parts.append("QUICK RUN (small inputs, few iterations): not for publication")
    return "; ".join(p for p in parts if p) + "."


# ------------------------------------------------------------------ tables


def model_table(results, model):
    m = results["models"][model]
    index = _index(results)
    batches = m["batches"]
    b1, large = batches[0], batches[1:]
    on_gpu = results.get("env", {}).get("device") == "cuda"
    mem_head = "peak GPU MiB" if on_gpu else "peak RSS MiB"
    head = [f"runtime", f"latency b{b1}, ms: median [min–p90]"] + [f"b{b} img/s" for b in large] + \
           [f"{mem_head} ({' / '.join('b' + str(b) for b in batches)})", "build s", "rel. L2 vs FP32"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for peer in _sorted_peers(results):
        info = results["peers"][peer]
        recs = [index.get((model, b, peer)) for b in batches]
        if all(r is None for r in recs):
            continue
        row = [_esc(info["label"])]
        bad = [r for r in recs if r is None or r["status"] != "ok"]
        if len(bad) == len(recs) and len({(r or {}).get("error") for r in recs}) == 1:
            # The same reason everywhere: say it once.
            lines.append("| " + " | ".join(row + [_not_ok(recs[0], 120)] + ["–"] * (len(head) - 2)) + " |")
            continue
        r1 = recs[0]
        if r1 and r1["status"] == "ok":
            lat = r1["latency_ms"]
            rng = ""
            if lat.get("min") is not None and lat.get("p90") is not None:
                rng = f" [{fmt_num(lat['min'])}–{fmt_num(lat['p90'])}]"
            row.append(f"{fmt_num(lat['median'])}{rng}")
        else:
            row.append(_not_ok(r1))
        for r in recs[1:]:
            row.append(fmt_num(r.get("throughput_per_s")) if r and r["status"] == "ok" else _not_ok(r, 40))
        if on_gpu:
            mems = [_mem(r) for r in recs]
        else:
            mems = [r.get("peak_rss_mib") if r and r["status"] == "ok" else None for r in recs]
        row.append(" / ".join("–" if v is None else f"{v:,.0f}" for v in mems))
        builds = [r.get("build_s") for r in recs if r and r["status"] == "ok" and r.get("build_s") is not None]
        row.append(fmt_num(builds[0]) if builds else "–")
        row.append(_agreement_text(recs, info))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _agreement_text(recs, info):
    if info.get("reference"):
        return "reference"
    vals, errs = [], []
    for r in recs:
        if r is None or r["status"] != "ok":
            continue
        if r.get("rel_l2") is not None:
            vals.append(r["rel_l2"])
        elif (r.get("agreement") or {}).get("error"):
            errs.append(r["agreement"]["error"])
    if vals:
        worst = max(vals, key=lambda v: float("inf") if isinstance(v, float) and math.isnan(v) else v)
        return fmt_rel(worst) + (" (some batches unchecked)" if errs else "")
    return _esc(_short(errs[0], 60)) if errs else "–"


def summary_table(results):
    """Per model: kiln's best row against the best other runtime, at batch 1 and large batch."""
    index = _index(results)
    peers = results["peers"]
    lines = ["| model | b1: best kiln, ms | b1: best other, ms | speed-up | large batch | best kiln, img/s | "
             "best other, img/s | speed-up |", "|---|---|---|---|---|---|---|---|"]
    any_row = False
    for model, m in results["models"].items():
        b1, bl = m["batches"][0], m["batches"][-1]

        def best(batch, kiln, key):
            cands = []
            for p, info in peers.items():
                if (info.get("family") == "kiln") != kiln:
                    continue
                r = index.get((model, batch, p))
                if r and r["status"] == "ok" and r.get(key) is not None:
                    v = r["latency_ms"]["median"] if key == "latency_ms" else r[key]
                    cands.append((v, info["label"]))
            if not cands:
                return None
            return min(cands) if key == "latency_ms" else max(cands)

        kl, ol = best(b1, True, "latency_ms"), best(b1, False, "latency_ms")
        kt, ot = best(bl, True, "throughput_per_s"), best(bl, False, "throughput_per_s")
        if not any((kl, ol, kt, ot)):
            continue
        any_row = True

        def cell(v):
            return f"{fmt_num(v[0])} ({_esc(v[1])})" if v else "–"

        sp1 = f"{ol[0] / kl[0]:.2f}×" if kl and ol else "–"
        spl = f"{kt[0] / ot[0]:.2f}×" if kt and ot else "–"
        lines.append(f"| {_esc(m['label'])} | {cell(kl)} | {cell(ol)} | {sp1} | {bl} | {cell(kt)} | "
                     f"{cell(ot)} | {spl} |")
    return "\n".join(lines) if any_row else ""


METHOD = """\
- **Timing.** Every cell (model, batch, runtime) runs in a fresh process on the same input
  (seeded N(0,1); the MNIST CNN gets [0,1) pixels). PyTorch rows: warm-up, then timed single
  inferences, each timed with the host clock from the call to the end of a synchronize, so
  the figure includes launch overhead and completion wake-up, as kiln's rows (`kiln bench`,
  host clock around the synchronous execute) do; the timed iterations are split into repeats and the
  JSON keeps each repeat's median. ONNX Runtime rows: host clock around each (synchronous)
  run. kiln rows: `kiln bench` times itself with the same warm-up and iteration counts as the
  PyTorch FP32 row of that cell. Tables show the median, with the min and 90th percentile.
- **Throughput** is batch / median latency at that batch, one inference in flight, for every
  runtime alike.
- **Peak GPU memory** is measured identically for every runtime: the parent process (which
  never initialises CUDA) samples NVML every 5 ms while the cell's process runs and keeps the
  largest sum of `usedGpuMemory` over that process and its children
  (`nvmlDeviceGetComputeRunningProcesses`); where NVML's PIDs do not match ours (a container
  with its own PID namespace) it keeps the rise of the device's used memory over its value
  before the process started (`nvmlDeviceGetMemoryInfo`). It includes the CUDA context and
  library code, the whole footprint a deployment pays. CPU runs report peak RSS instead.
- **Build** is what a runtime spends before the first timed inference: CUDA-graph capture
  with its warm-up, torch.compile's compile and autotune, ONNX Runtime's session creation and
  first run, kiln's engine build as `kiln bench` reports it. Eager PyTorch builds nothing.
- **Agreement** is ||y − y_ref|| / ||y_ref|| over all outputs, in float64, where y_ref is
  PyTorch eager FP32 (TF32 off) on the same device and input; the worst over the batches."""


def failure_lines(results):
    """'model bN peer: error' for failures; skips grouped by runtime and reason."""
    out, fails, skips = [], {}, {}
    for c in results["cells"]:
        if c["status"] == "failed":
            fails.setdefault((c["peer"], c.get("error", "")), {}).setdefault(c["model"], []).append(c["batch"])
        elif c["status"] == "skipped":
            key = (c["peer"], c.get("error", ""))
            skips[key] = skips.get(key, 0) + 1
    for (peer, why), where in fails.items():
        cells = ", ".join(f"{m} " + "/".join(f"b{b}" for b in bs) for m, bs in where.items())
        out.append(f"failed: {peer} at {cells}: {_short(why, 300)}")
    for (peer, why), n in skips.items():
        out.append(f"skipped: {peer} in {n} cell{'s' if n > 1 else ''}: {why}")
    notes = {}
    for c in results["cells"]:
        if c["status"] != "ok":
            continue
        texts = list(c.get("notes") or [])
        if c.get("missing"):
            texts.append("kiln's JSON lacks " + ", ".join(c["missing"]))
        for t in texts:
            notes.setdefault((c["peer"], t), {}).setdefault(c["model"], []).append(c["batch"])
    for (peer, text), where in notes.items():
        cells = ", ".join(f"{m} " + "/".join(f"b{b}" for b in bs) for m, bs in where.items())
        out.append(f"note: {peer} at {cells}: {_short(text, 300)}")
    return out


def fragment(results, image_dir="bench"):
    """The part of docs/PERFORMANCE.md this harness owns."""
    cap = caption(results)
    prefix = (image_dir.rstrip("/") + "/") if image_dir else ""
    out = ["<!-- Generated by python/bench/run.py (report.py); regenerate, do not edit. -->",
           "## kiln against PyTorch and ONNX Runtime", "",
           f"_{_esc(cap)}_", "",
           f"Command: `{results.get('command', '?')}`", ""]
    summary = summary_table(results)
    if summary:
        out += ["### Summary", "", "Speed-up = best other runtime's time / kiln's best (above 1: kiln is "
                "faster).", "", summary, ""]
    for model, m in results["models"].items():
        if not any(c["model"] == model for c in results["cells"]):
            continue
        dims = "×".join(str(v) for v in m["input"])
        out += [f"### {m['label']} ({dims})", "", model_table(results, model), ""]
    out += [f"![Latency at batch 1]({prefix}latency.png)", "",
            f"![Throughput at large batch]({prefix}throughput.png)", "", "### Method", "", METHOD, ""]
    fails = failure_lines(results)
    if fails:
        out += ["### What did not run, and notes", ""] + [f"- {_esc(f)}" for f in fails] + [""]
    return "\n".join(out)


def all_cells_table(results):
    head = ["model", "batch", "runtime", "status", "median ms", "min", "p90", "repeat spread %", "img/s",
            "GPU MiB", "memory method", "RSS MiB", "build s", "rel. L2", "iters", "wall s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in results["cells"]:
        lat = c.get("latency_ms") or {}
        spread = lat.get("repeat_spread_pct")
        row = [c["model"], str(c["batch"]), c["peer"],
               c["status"] if c["status"] == "ok" else f"{c['status']}: {_esc(_short(c.get('error', ''), 80))}",
               fmt_num(lat.get("median")) if lat else "", fmt_num(lat.get("min")) if lat.get("min") else "",
               fmt_num(lat.get("p90")) if lat.get("p90") else "", f"{spread:.1f}" if spread is not None else "",
               fmt_num(c.get("throughput_per_s")) if c.get("throughput_per_s") else "",
               f"{c['peak_gpu_mib']:,.0f}" if c.get("peak_gpu_mib") is not None else "",
               c.get("gpu_mem_method", ""),
               f"{c['peak_rss_mib']:,.0f}" if c.get("peak_rss_mib") is not None else "",
               fmt_num(c["build_s"]) if c.get("build_s") is not None else "",
               fmt_rel(c["rel_l2"]) if c.get("rel_l2") is not None else "",
               str(lat.get("count", "")), f"{c['wall_s']:.1f}" if c.get("wall_s") is not None else ""]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def full_report(results):
    return "\n".join(["# kiln benchmark results", "", fragment(results, image_dir=""),
                      "## Every cell", "", all_cells_table(results), ""])


# ------------------------------------------------------------------ files


def write_all(results, out_dir, charts="auto", image_dir="bench"):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(full_report(results))
    with open(os.path.join(out_dir, "performance_fragment.md"), "w") as f:
        f.write(fragment(results, image_dir))
    written = {"warnings": []}
    if charts != "none":
        import charts as charts_mod
        for name, fig in charts_mod.chart_specs(results, caption(results)):
            try:
                used = charts_mod.render(fig, os.path.join(out_dir, name), charts)
                written[name] = used
            except Exception as e:
                written["warnings"].append(f"{name}: {e}")
    return written


def merge(result_list):
    """Later files win for the same (model, batch, runtime); environments must name the same
    device, or the merged tables would compare different machines."""
    base = json.loads(json.dumps(result_list[0]))
    key = lambda c: (c["model"], c["batch"], c["peer"])  # noqa: E731
    cells = {key(c): c for c in base["cells"]}
    for r in result_list[1:]:
        g0, g1 = (base.get("env", {}).get("gpu") or {}), (r.get("env", {}).get("gpu") or {})
        if g0.get("name") != g1.get("name") or base["env"].get("device") != r["env"].get("device"):
            raise ValueError(f"cannot merge results from different devices: {g0.get('name')} vs {g1.get('name')}")
        for m, info in r["models"].items():
            base["models"].setdefault(m, info)
        for p, info in r["peers"].items():
            base["peers"].setdefault(p, info)
        for c in r["cells"]:
            cells[key(c)] = c
        base["command"] = base.get("command", "") + " ; " + r.get("command", "")
    base["cells"] = list(cells.values())
    return base


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="+", help="results.json files (merged in order)")
    p.add_argument("--out", required=True)
    p.add_argument("--charts", choices=("auto", "builtin", "matplotlib", "none"), default="auto")
    p.add_argument("--doc-image-dir", default="bench")
    args = p.parse_args(argv)
    loaded = []
    for path in args.results:
        with open(path) as f:
            loaded.append(json.load(f))
    try:
        results = merge(loaded)
    except ValueError as e:
        print(f"report.py: {e}", file=sys.stderr)
        return 1
    os.makedirs(args.out, exist_ok=True)
    if len(loaded) > 1:
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump(results, f, indent=1)
    written = write_all(results, args.out, args.charts, args.doc_image_dir)
    for w in written["warnings"]:
        print(f"report.py: warning: {w}", file=sys.stderr)
    print(f"wrote {args.out}/results.md, performance_fragment.md"
          + "".join(f", {k} ({v})" for k, v in written.items() if k.endswith(".png")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
