"""kiln rows: the C library through `kiln bench MODEL.onnx ... --json FILE`, one process per
cell, so NVML sees kiln's own process. The JSON is read defensively: keys are matched by the
words in their names, units by their suffixes, and what is missing is listed in the result."""

import json
import os
import re
import shlex

from . import Peer, exit_text, register

# ------------------------------------------------------------------ reading kiln's JSON


def _words(key):
    """'latency_ms.p90' -> ['latency', 'ms', 'p90']; 'buildTimeS' -> ['build', 'time', 's']."""
    key = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key)
    return [w for w in re.split(r"[^A-Za-z0-9]+", key.lower()) if w]


def _flatten(obj, prefix=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    else:
        yield prefix, obj


_TIME_TO_MS = {"ns": 1e-6, "nsec": 1e-6, "us": 1e-3, "usec": 1e-3, "micros": 1e-3, "ms": 1.0, "msec": 1.0,
               "millis": 1.0, "milliseconds": 1.0, "s": 1e3, "sec": 1e3, "secs": 1e3, "seconds": 1e3}
_MEM_TO_MIB = {"bytes": 1.0 / 2 ** 20, "byte": 1.0 / 2 ** 20, "b": 1.0 / 2 ** 20, "kib": 1.0 / 1024,
               "kb": 1e3 / 2 ** 20, "mib": 1.0, "mb": 1e6 / 2 ** 20, "gib": 1024.0, "gb": 1e9 / 2 ** 20}
_LAT_CONTEXT_OUT = {"build", "compile", "engine", "memory", "mem", "bytes", "throughput", "import", "parse",
                    "load", "optimize", "optimise", "plan", "serialize", "deserialize", "h2d", "d2h", "enqueue",
                    "upload", "download", "host", "profile", "save"}


def _time_unit(words, default):
    for w in reversed(words):
        if w in _TIME_TO_MS:
            return _TIME_TO_MS[w], w
    return default, None


def _number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def parse_kiln_json(obj):
    """-> (fields, missing, notes). fields: latency_ms {median, min, p90, mean?}, throughput_per_s,
    build_s, self_memory_mib {key: MiB}, precision, batch, iterations (whatever was found)."""
    if isinstance(obj, list):  # a list of runs: the last dict is the result
        dicts = [o for o in obj if isinstance(o, dict)]
        obj = dicts[-1] if dicts else {}
    if not isinstance(obj, dict):
        return {}, ["latency median", "latency min", "latency p90", "throughput", "memory", "build time"], \
            ["kiln JSON is not an object"]
    lat, fields, notes, mem = {}, {}, [], {}
    for key, value in _flatten(obj):
        words = _words(key)
        wset = set(words)
        if isinstance(value, list) and value and all(_number(v) for v in value) and \
                wset & {"latencies", "times", "samples", "latency"} and not wset & _LAT_CONTEXT_OUT:
            scale, unit = _time_unit(words, 1.0)
            from timing import summarize
            s = summarize([v * scale for v in value])
            for k in ("median", "min", "p90", "mean"):
                lat.setdefault(k, s[k])
            notes.append(f"latency statistics computed from the {len(value)} samples in '{key}'"
                         + ("" if unit else " (no unit in the key: ms assumed)"))
            continue
        if not _number(value):
            if isinstance(value, str) and wset & {"precision", "dtype", "mode"}:
                fields.setdefault("precision", value)
            continue
        if wset & {"throughput", "ips", "qps", "fps"} or ("per" in wset and wset & {"s", "sec", "second"}):
            # Inferences (images) per second, not runs per second, when both are there.
            if wset & {"inferences", "images", "samples", "items"} or "throughput_per_s" not in fields:
                fields["throughput_per_s"] = float(value)
                fields["_thr_items"] = bool(wset & {"inferences", "images", "samples", "items"})
            continue
        if wset & {"memory", "mem", "bytes", "mib", "gib", "kib"}:
            unit = next((w for w in reversed(words) if w in _MEM_TO_MIB), None)
            mem[key] = float(value) * (_MEM_TO_MIB[unit] if unit else 1.0 / 2 ** 20)
            if unit is None:
                notes.append(f"'{key}': no unit in the key, bytes assumed")
            continue
        if wset & {"build", "compile", "engine"} and not wset & {"count", "layers", "nodes"}:
            scale, unit = _time_unit(words, 1e3)
            fields.setdefault("build_s", float(value) * scale / 1e3)
            if unit is None:
                notes.append(f"'{key}': no unit in the key, seconds assumed")
            continue
        if wset <= {"batch", "size", "n"}:
            fields.setdefault("batch", value)
            continue
        if wset & {"iterations", "iters", "runs"}:
            fields.setdefault("iterations", value)
            continue
        if wset & _LAT_CONTEXT_OUT or wset & {"warmup"}:
            continue
        scale, unit = _time_unit(words, None)
        stat = next((s for s, names in (("median", {"median", "p50"}), ("min", {"min", "minimum"}),
                                         ("p90", {"p90"}), ("mean", {"mean", "avg", "average"}),
                                         ("p99", {"p99"}), ("max", {"max", "maximum"}))
                     if wset & names), None)
        if stat is None and wset & {"latency", "time"} and unit is not None and "total" not in wset:
            stat = "latency"  # a single latency figure, statistic unnamed
        if stat is None:
            continue
        if scale is None:
            scale = 1.0
            notes.append(f"'{key}': no unit in the key, ms assumed")
        lat.setdefault(stat, float(value) * scale)
    if fields.pop("_thr_items", None) is False and "throughput_per_s" in fields:
        notes.append("throughput read from a 'runs per second' figure")
    if "median" not in lat and "latency" in lat:
        lat["median"] = lat["latency"]
        notes.append("one unnamed latency figure taken as the median")
    lat.pop("latency", None)
    if lat:
        fields["latency_ms"] = lat
    if mem:
        fields["self_memory_mib"] = mem
    missing = [name for name, ok in (("latency median", "median" in lat), ("latency min", "min" in lat),
                                     ("latency p90", "p90" in lat),
                                     ("throughput", "throughput_per_s" in fields),
                                     ("memory", bool(mem)), ("build time", "build_s" in fields)) if not ok]
    return fields, missing, notes


# ------------------------------------------------------------------ the peer


def _first_error(text, limit=400):
    """The CLI prints exactly one error line on stderr ('kiln CMD: ...'); warnings say
    'warning:'. Take the last line that is not a warning, else the last line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("$ ")]
    for ln in reversed(lines):
        if ln.startswith("kiln") and "warning:" not in ln:
            return ln[:limit]
    for ln in reversed(lines):
        if re.search(r"error|fail|unsupported|not (implemented|supported)|out of memory|invalid", ln, re.I):
            return ln[:limit]
    return lines[-1][:limit] if lines else ""


def _error_from_log(path, limit=400):
    try:
        with open(path, errors="replace") as f:
            return _first_error(f.read(), limit)
    except OSError:
        return ""


class KilnPeer(Peer):
    """kiln through its command line (docs/CLI.md), three processes per cell:
      1. `kiln build MODEL.onnx -o CELL/model.plan --json`   (unmeasured) the engine and its
         build time; when it fails, the next steps take the ONNX model and build it themselves;
      2. `kiln bench PLAN --input input=X.npy --json`        the measured process;
      3. `kiln run PLAN --input input=X.npy --output-dir`    (unmeasured) outputs for agreement."""
    family = "kiln"
    needs_onnx = True

    def __init__(self, name, label, flags, order, needs_cuda=False, default=True):
        self.name, self.label, self.flags, self.order = name, label, list(flags), order
        self.needs_cuda, self.default = needs_cuda, default

    def unavailable(self, env):
        path = env.get("kiln_path")
        if not path:
            return "no kiln binary given (--kiln)"
        if not os.path.isfile(path):
            return f"kiln binary not found: {path}"
        if not os.access(path, os.X_OK):
            return f"kiln binary not executable: {path}"
        return super().unavailable(env)

    def _model_args(self, cell):
        """The model and the options it needs: build options only for an ONNX model (a plan
        fixed them when it was built, and the CLI warns about them)."""
        args = [cell["kiln_model"], "--device", cell["device"]]
        if cell["kiln_model"] == cell["onnx"]:
            args += self.flags
        return args

    def _input_args(self, cell):
        return ["--input", f"{cell.get('input_name', 'input')}={cell['input_npy']}"]

    def before(self, cell, step):
        plan = os.path.join(cell["dir"], "model.plan")
        build_json = os.path.join(cell["dir"], "build.json")
        rc, text = step([cell["kiln"], "build", cell["onnx"], "-o", plan, "--device", cell["device"],
                         *self.flags, "--json", build_json], "build")
        warnings = [ln.strip() for ln in text.splitlines() if "warning:" in ln]
        if rc == 0 and os.path.exists(plan):
            cell["kiln_model"] = plan
            res = {"kiln_build": _read_json(build_json), "notes": warnings}
            t = (res["kiln_build"] or {}).get("time_ms") or {}
            if isinstance(t.get("build"), (int, float)):
                cell["kiln_build_s"] = (t["build"] + (t.get("parse") or 0)) / 1e3
                res["build_what"] = "kiln build: ONNX import + engine build"
            return res
        # Building a plan failed: bench and run then build from the ONNX model, and fail the
        # same way if the model itself is the problem.
        cell["kiln_model"] = cell["onnx"]
        return {"notes": [f"kiln build failed ({_first_error(text)}): timed on the ONNX model directly"]}

    def command(self, cell):
        plan = cell["plan"]
        cmd = [cell["kiln"], "bench", *self._model_args(cell), "--iterations", str(plan["kiln_iterations"]),
               "--warmup", str(plan["kiln_warmup"]), *self._input_args(cell), "--json", cell["result_json"]]
        return cmd + list(cell.get("kiln_bench_extra") or [])

    def collect(self, cell, returncode, step):
        log = cell["log"]
        if returncode != 0:
            why = _error_from_log(log)
            return {"status": "failed", "error": (why or "kiln bench " + exit_text(returncode))}
        raw = _read_json(cell["result_json"])
        if raw is None:
            raw = _json_from_stdout(log)
            if raw is None:
                return {"status": "failed", "error": "kiln bench exited 0 but wrote no readable JSON"}
        fields, missing, notes = parse_kiln_json(raw)
        res = {"status": "ok", "kiln_json": raw, "missing": missing, "notes": notes}
        lat = fields.get("latency_ms")
        if not lat or "median" not in lat:
            res.update(status="failed", error="kiln JSON has no latency median (keys: "
                       + ", ".join(k for k, _ in _flatten(raw))[:300] + ")")
            return res
        res["latency_ms"] = lat
        if isinstance(fields.get("iterations"), int):
            lat.setdefault("count", fields["iterations"])
        if fields.get("build_s") is not None:
            res["build_s"] = fields["build_s"]
        elif cell.get("kiln_build_s") is not None:
            res["build_s"] = cell["kiln_build_s"]
            missing.remove("build time")
        res["self_reported"] = {k: fields[k] for k in ("throughput_per_s", "self_memory_mib", "precision",
                                                       "batch", "iterations") if k in fields}
        try:
            with open(log, errors="replace") as f:
                for ln in f.read().splitlines():
                    if "warning:" in ln and ln.strip() not in res["notes"]:
                        res["notes"].append(ln.strip())
        except OSError:
            pass
        if cell["device"] == "cuda" and not cell.get("kiln_bench_extra"):
            res["notes"].append("kiln bench binds host buffers: its latency includes the copies of the "
                                "input to and the output from the GPU")
        res["agreement"] = self._agreement(cell, step)
        return res

    def _agreement(self, cell, step):
        if not cell.get("ref_npz") or not os.path.exists(cell["ref_npz"]):
            return {"error": "no reference output"}
        out_dir = os.path.join(cell["dir"], "outputs")
        rc, text = step([cell["kiln"], "run", *self._model_args(cell), *self._input_args(cell),
                         "--output-dir", out_dir], "run")
        if rc != 0:
            return {"error": f"kiln run failed: {_first_error(text)}"}
        try:
            import compare
        except ImportError as e:
            return {"error": f"the harness's Python cannot compare outputs ({e})"}
        try:
            return compare.agreement(compare.load_outputs(out_dir), compare.load_outputs(cell["ref_npz"]))
        except Exception as e:  # a malformed output file must not end the run
            return {"error": f"reading kiln run's outputs: {e}"}


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _json_from_stdout(log):
    """Some CLIs print the JSON instead of writing it: take the last {...} block of the log."""
    try:
        with open(log, errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    end = text.rfind("}")
    start = text.rfind("\n{", 0, end)
    start = 0 if start < 0 and text.startswith("{") else start + 1
    if end < 0 or start < 0:
        return None
    try:
        return json.loads(text[start:end + 1])
    except ValueError:
        return None


def bench_extra_options(bench_help):
    """Options of `kiln bench` that keep inputs and outputs in device memory, if its --help
    lists one (as trtexec's --noDataTransfers does): the PyTorch rows time device-resident
    tensors too."""
    for opt in ("--device-io", "--no-data-transfers", "--noDataTransfers"):
        if bench_help and re.search(re.escape(opt) + r"\b", bench_help):
            return [opt]
    return []


register(KilnPeer("kiln-fp32", "kiln FP32", [], 50))
register(KilnPeer("kiln-tf32", "kiln TF32", ["--tf32"], 51, needs_cuda=True))
# --tf32 and --fp16 have no effect on kiln's CPU backend (the CLI warns): those rows need CUDA.
register(KilnPeer("kiln-fp16", "kiln FP16", ["--fp16"], 52, needs_cuda=True))
# Rows to come slot in here, e.g.:
#   register(KilnPeer("kiln-int8", "kiln INT8", ["--int8"], 53, default=False))
