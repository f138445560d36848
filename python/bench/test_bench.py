#!/usr/bin/env python3
"""Tests of the benchmark harness that need no GPU: statistics, the kiln JSON reader, output
agreement, the PNG writer, peer selection, the reports, and the NVML reader and sampler against
a mock libnvidia-ml compiled here (skipped without a C compiler).

  python3 python/bench/test_bench.py
"""

import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import charts  # noqa: E402
import nvml  # noqa: E402
import peers  # noqa: E402
import png  # noqa: E402
import report  # noqa: E402
import run  # noqa: E402
import timing  # noqa: E402
from peers.kiln_peers import bench_extra_options, parse_kiln_json  # noqa: E402

try:
    import numpy as np

    import compare
except ImportError:  # the parent process needs numpy only for agreement
    np = compare = None


class TimingTest(unittest.TestCase):
    def test_percentile_matches_linear_interpolation(self):
        vals = [5.0, 1.0, 3.0, 2.0, 4.0]
        self.assertEqual(timing.percentile(vals, 50), 3.0)
        self.assertAlmostEqual(timing.percentile(vals, 90), 4.6)
        self.assertEqual(timing.percentile(vals, 0), 1.0)
        self.assertEqual(timing.percentile([7.0], 90), 7.0)
        with self.assertRaises(ValueError):
            timing.percentile([], 50)

    def test_summarize_spread_of_repeats(self):
        s = timing.summarize([1.0, 2.0, 3.0, 4.0], [1.5, 3.5])
        self.assertEqual(s["min"], 1.0)
        self.assertEqual(s["median"], 2.5)
        self.assertAlmostEqual(s["repeat_spread_pct"], 100.0 * 2.0 / 2.5)
        self.assertEqual(s["count"], 4)

    def test_plan_iterations_bounds(self):
        self.assertEqual(timing.plan_iterations(1.0, 2.0, 20, 1000, 60), 1000)  # capped
        self.assertEqual(timing.plan_iterations(50.0, 2.0, 20, 1000, 60), 40)
        self.assertEqual(timing.plan_iterations(500.0, 2.0, 20, 1000, 60), 20)  # floor
        self.assertEqual(timing.plan_iterations(5000.0, 2.0, 20, 1000, 60), 12)  # cell budget
        self.assertEqual(timing.plan_iterations(60000.0, 2.0, 20, 1000, 60), 3)  # never below 3

    def test_measure_runs_at_least_planned_iterations(self):
        calls = []

        class FakeTimer:
            def time_ms(self, fn):
                return 10.0 + len(calls) % 3, fn()

        stats, out = timing.measure(lambda: calls.append(1) or len(calls), FakeTimer(), warmup=2, target_s=0.05,
                                    min_iters=5, max_iters=7, repeats=2, max_cell_s=10)
        self.assertGreaterEqual(stats["count"], 5)  # ceil split: 2 repeats x 3
        self.assertEqual(stats["repeats"], 2)
        self.assertEqual(len(calls), stats["warmup"] + stats["count"])
        self.assertEqual(out, len(calls))


class SyncTimerTest(unittest.TestCase):
    """The PyTorch CUDA timer counts until the device is synchronized, as kiln's host clock
    does: work that finishes after the call returns (asynchronous launches) is included."""

    class FakeCuda:
        def __init__(self):
            self.pending = 0.0
            self.syncs = 0

        def synchronize(self):
            self.syncs += 1
            time.sleep(self.pending)
            self.pending = 0.0

    class FakeTorch:
        def __init__(self, cuda):
            self.cuda = cuda

    def test_includes_work_finished_at_synchronize(self):
        cuda = self.FakeCuda()
        t = timing.SyncTimer(self.FakeTorch(cuda))

        def launch():  # returns at once; the "device" needs 30 ms more
            cuda.pending = 0.03
            return "out"

        ms, out = t.time_ms(launch)
        self.assertEqual(out, "out")
        self.assertGreaterEqual(ms, 29.0)
        self.assertEqual(cuda.syncs, 2)  # one before (untimed queue drain), one after


class KilnJsonTest(unittest.TestCase):
    def test_nested_ms_and_bytes(self):
        f, missing, _ = parse_kiln_json({"latency_ms": {"median": 1.5, "min": 1.2, "p90": 1.9},
                                         "throughput_per_s": 666.0, "build_ms": 2500,
                                         "memory": {"peak_device_bytes": 3 * 2 ** 20}})
        self.assertEqual(f["latency_ms"], {"median": 1.5, "min": 1.2, "p90": 1.9})
        self.assertEqual(f["throughput_per_s"], 666.0)
        self.assertAlmostEqual(f["build_s"], 2.5)
        self.assertAlmostEqual(f["self_memory_mib"]["memory.peak_device_bytes"], 3.0)
        self.assertEqual(missing, [])

    def test_flat_keys_other_units(self):
        f, missing, _ = parse_kiln_json({"median_us": 1500, "min_us": 1200, "build_time_s": 4.0,
                                         "images_per_s": 10.0})
        self.assertAlmostEqual(f["latency_ms"]["median"], 1.5)
        self.assertAlmostEqual(f["latency_ms"]["min"], 1.2)
        self.assertAlmostEqual(f["build_s"], 4.0)
        self.assertEqual(f["throughput_per_s"], 10.0)
        self.assertIn("latency p90", missing)
        self.assertIn("memory", missing)

    def test_samples_list(self):
        f, missing, notes = parse_kiln_json({"latencies_ms": [3.0, 1.0, 2.0, 4.0, 5.0]})
        self.assertEqual(f["latency_ms"]["median"], 3.0)
        self.assertEqual(f["latency_ms"]["min"], 1.0)
        self.assertNotIn("latency median", missing)
        self.assertTrue(any("samples" in n for n in notes))

    def test_missing_everything(self):
        f, missing, _ = parse_kiln_json({"model": "x.onnx", "device": "cuda"})
        self.assertNotIn("latency_ms", f)
        self.assertIn("latency median", missing)
        f, missing, notes = parse_kiln_json([1, 2])
        self.assertEqual(len(missing), 6)

    def test_cli_bench_json(self):
        """The layout tools/cmd_bench.c writes: runs/s and inferences/s, memory in bytes,
        enqueue and host-split figures that are not the latency."""
        f, missing, notes = parse_kiln_json({
            "model": "m.onnx", "device": "cuda", "streams": 1, "batch": 8, "runs": 40, "wall_s": 0.2,
            "latency_ms": {"min": 4.0, "median": 5.0, "mean": 5.5, "p90": 6.0, "p99": 7.0, "max": 8.0},
            "throughput": {"runs_per_s": 200.0, "inferences_per_s": 1600.0},
            "host_latency_ms": {"upload": None, "compute": None, "download": None, "total": 5.5},
            "enqueue_ms": {"min": 0.1, "median": 0.2, "mean": 0.2, "p90": 0.3, "p99": 0.3, "max": 0.4},
            "memory_bytes": {"activations_per_context": 2 ** 20, "weights": 2 ** 21, "engine_total": 3 * 2 ** 20,
                             "host_peak_rss": 2 ** 26}})
        self.assertEqual(f["latency_ms"], {"min": 4.0, "median": 5.0, "mean": 5.5, "p90": 6.0, "p99": 7.0,
                                           "max": 8.0})
        self.assertEqual(f["throughput_per_s"], 1600.0)
        self.assertEqual(f["batch"], 8)
        self.assertEqual(f["iterations"], 40)
        self.assertAlmostEqual(f["self_memory_mib"]["memory_bytes.engine_total"], 3.0)
        self.assertEqual(missing, ["build time"])

    def test_bench_extra_options_from_help(self):
        self.assertEqual(bench_extra_options(None), [])
        self.assertEqual(bench_extra_options("usage: kiln bench MODEL --json FILE --no-cuda-graph"), [])
        self.assertEqual(bench_extra_options("  --device-io   keep I/O on the GPU"), ["--device-io"])


@unittest.skipIf(np is None, "numpy missing")
class CompareTest(unittest.TestCase):
    def test_rel_l2(self):
        r = np.random.RandomState(0).randn(4, 5).astype(np.float32)
        y = r * 1.01
        a = compare.agreement([y], [r])
        self.assertAlmostEqual(a["rel_l2"], 0.01, places=5)
        self.assertEqual(compare.agreement([r], [r])["rel_l2"], 0.0)

    def test_mismatches_are_errors(self):
        r = np.ones((2, 3), np.float32)
        self.assertIn("error", compare.agreement([np.ones((3, 3))], [r]))
        self.assertIn("error", compare.agreement([r, r], [r]))
        bad = r.copy()
        bad[0, 0] = np.nan
        self.assertIn("non-finite", compare.agreement([bad], [r])["error"])

    def test_round_trip_files(self):
        d = tempfile.mkdtemp()
        try:
            outs = [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(4, np.float32)]
            compare.save_outputs(os.path.join(d, "ref.npz"), outs)
            back = compare.load_outputs(os.path.join(d, "ref.npz"))
            self.assertEqual(len(back), 2)
            self.assertTrue(np.array_equal(back[0], outs[0]))
            try:
                from onnx import numpy_helper
            except ImportError:
                return
            with open(os.path.join(d, "out.pb"), "wb") as f:
                f.write(numpy_helper.from_array(outs[0], "output").SerializeToString())
            self.assertTrue(np.array_equal(compare.load_outputs(os.path.join(d, "out.pb"))[0], outs[0]))
        finally:
            shutil.rmtree(d)


class PngTest(unittest.TestCase):
    def test_encode_decode_pixels(self):
        c = png.Canvas(7, 5, (10, 20, 30))
        c.fill_rect(2, 1, 4, 3, (255, 0, 0))
        w, h, rgb = png.decode_png(c.to_png())
        self.assertEqual((w, h), (7, 5))
        px = lambda x, y: tuple(rgb[(y * w + x) * 3:(y * w + x) * 3 + 3])  # noqa: E731
        self.assertEqual(px(0, 0), (10, 20, 30))
        self.assertEqual(px(2, 1), (255, 0, 0))
        self.assertEqual(px(3, 2), (255, 0, 0))
        self.assertEqual(px(4, 2), (10, 20, 30))  # exclusive right edge

    def test_text_draws_and_clips(self):
        c = png.Canvas(40, 12)
        c.text(1, 1, "Ag|", (0, 0, 0))
        c.text(30, 5, "clipped text", (0, 0, 0), 2)  # must not raise
        self.assertIn(b"\x00\x00\x00", bytes(c.pixels))
        self.assertEqual(png.text_width("abc", 2), 34)

    def test_font_covers_ascii(self):
        for code in range(32, 127):
            rows = png._FONT[chr(code)]
            self.assertIn(len(rows), (7, 9), chr(code))
            self.assertTrue(all(0 <= r < 32 for r in rows), chr(code))

    def test_wrap(self):
        lines = png.wrap("aaa bbb ccc dddddddddd", 6 * 7, 1)
        self.assertTrue(all(len(ln) <= 7 for ln in lines))
        self.assertEqual("".join(lines).replace(" ", ""), "aaabbbcccdddddddddd")

    def test_corrupt_png_rejected(self):
        data = bytearray(png.Canvas(3, 3).to_png())
        data[40] ^= 0xFF
        with self.assertRaises(Exception):
            png.decode_png(bytes(data))


def _fake_results(device="cpu"):
    peers_info = {"torch-eager-fp32": {"label": "PyTorch eager FP32", "family": "peer", "order": 10,
                                       "reference": True},
                  "ort-cpu": {"label": "ONNX Runtime CPU", "family": "peer", "order": 40},
                  "kiln-fp16": {"label": "kiln FP16", "family": "kiln", "order": 52}}

    def ok(model, b, peer, ms, rel=None, mem=100.0):
        return {"model": model, "batch": b, "peer": peer, "status": "ok",
                "latency_ms": {"median": ms, "min": ms * 0.9, "p90": ms * 1.2, "count": 10},
                "throughput_per_s": b * 1000.0 / ms, "peak_gpu_mib": mem, "peak_rss_mib": 50.0,
                "build_s": 1.0 if peer != "torch-eager-fp32" else None, "rel_l2": rel,
                "agreement": {"reference": True} if rel is None else {"rel_l2": rel}}

    cells = [ok("resnet50", 1, "torch-eager-fp32", 4.0), ok("resnet50", 32, "torch-eager-fp32", 40.0),
             {"model": "resnet50", "batch": 1, "peer": "ort-cpu", "status": "skipped",
              "error": "onnxruntime not installed"},
             {"model": "resnet50", "batch": 32, "peer": "ort-cpu", "status": "skipped",
              "error": "onnxruntime not installed"},
             ok("resnet50", 1, "kiln-fp16", 1.0, 2e-3),
             {"model": "resnet50", "batch": 32, "peer": "kiln-fp16", "status": "failed",
              "error": "CUDA out of memory | tried to allocate"}]
    return {"created": "2026-01-01T00:00:00", "command": "run.py --quick",
            "config": {"device": device, "quick": True},
            "env": {"device": device, "torch": "2.11.0", "onnxruntime": None, "cpu": "x", "cpu_count": 2,
                    "gpu": {"name": "NVIDIA H100", "driver": "580.1", "memory_gib": 79.6}},
            "models": {"resnet50": {"label": "ResNet-50", "input": [3, 224, 224], "batches": [1, 32]}},
            "peers": peers_info, "cells": cells}


class ReportTest(unittest.TestCase):
    def test_tables_show_values_errors_and_skips(self):
        res = _fake_results("cuda")
        md = report.full_report(res)
        self.assertIn("| PyTorch eager FP32 | 4.00 [3.60–4.80] | 800 | 100 / 100 | – | reference |", md)
        self.assertIn("n/a: onnxruntime not installed", md)
        self.assertIn("**failed**: CUDA out of memory \\| tried to allocate", md)  # pipes escaped
        self.assertIn("2.0e-03", md)
        self.assertIn("| ResNet-50 | 1.00 (kiln FP16) | 4.00 (PyTorch eager FP32) | 4.00× |", md)
        self.assertIn("NVIDIA H100", md)
        self.assertIn("failed: kiln-fp16 at resnet50 b32: CUDA out of memory", md)

    def test_merge_refuses_other_devices(self):
        a, b = _fake_results("cuda"), _fake_results("cuda")
        b["cells"] = [dict(b["cells"][0], status="ok", latency_ms={"median": 9.0})]
        merged = report.merge([a, b])
        self.assertEqual(len(merged["cells"]), len(a["cells"]))
        self.assertEqual(next(c for c in merged["cells"] if c["peer"] == "torch-eager-fp32" and c["batch"] == 1)
                         ["latency_ms"]["median"], 9.0)
        b["env"]["gpu"] = {"name": "other"}
        with self.assertRaises(ValueError):
            report.merge([a, b])

    def test_write_all_makes_valid_pngs(self):
        d = tempfile.mkdtemp()
        try:
            report.write_all(_fake_results("cuda"), d, charts="builtin")
            for name in ("latency.png", "throughput.png"):
                with open(os.path.join(d, name), "rb") as f:
                    w, h, _ = png.decode_png(f.read())
                self.assertGreater(w * h, 10000)
            with open(os.path.join(d, "performance_fragment.md")) as f:
                self.assertIn("![Latency at batch 1](bench/latency.png)", f.read())
        finally:
            shutil.rmtree(d)

    def test_axis(self):
        log, lo, hi, ticks = charts.axis([1.0, 3.0], [0.9, 2.5], [1.1, 3.3])
        self.assertFalse(log)
        self.assertEqual(lo, 0.0)
        self.assertGreaterEqual(hi, 3.3)
        log, lo, hi, ticks = charts.axis([0.5, 200.0], [None, None], [None, None])
        self.assertTrue(log)
        self.assertEqual((lo, hi), (0.1, 1000.0))
        self.assertEqual(len(ticks), 5)


class SelectionTest(unittest.TestCase):
    env = {"device": "cuda", "torch": "2.11.0", "cuda_available": True, "onnxruntime": "1.20",
           "onnxruntime_providers": ["CPUExecutionProvider"], "kiln_path": None}

    def names(self, spec, compile_flag=False):
        return [p.name for p in run.select_peers(spec, compile_flag, self.env)]

    def test_default_and_modifiers(self):
        default = self.names("")
        self.assertIn("ort-cpu", default)
        self.assertNotIn("ort-cuda", default)  # provider not installed
        self.assertNotIn("torch-compile-fp16", default)
        self.assertIn("torch-compile-fp16", self.names("", True))
        self.assertNotIn("ort-cpu", self.names("-ort-cpu"))
        self.assertIn("torch-eager-tf32", self.names("+torch-eager-tf32"))
        self.assertEqual(self.names("kiln-fp16"), ["torch-eager-fp32", "kiln-fp16"])  # reference kept
        with self.assertRaises(SystemExit):
            self.names("no-such-peer")

    def test_unavailable_reasons(self):
        cpu_env = dict(self.env, device="cpu")
        self.assertEqual(peers.get("torch-fp16-cl-graph").unavailable(cpu_env), "needs CUDA")
        self.assertIn("kiln", peers.get("kiln-fp32").unavailable(self.env))
        self.assertIn("not in onnxruntime", peers.get("ort-cuda").unavailable(self.env))
        self.assertIn("torch >= 2.0", peers.get("torch-compile-fp16").unavailable(dict(self.env, torch="1.13.0")))
        self.assertEqual(peers.get("torch-eager-fp32").unavailable(dict(self.env, cuda_available=False)),
                         "torch sees no CUDA device")
        self.assertIsNone(peers.get("torch-eager-fp32").unavailable(dict(self.env, device="cpu",
                                                                          cuda_available=False)))
        self.assertEqual(peers.get("kiln-fp16").unavailable(dict(cpu_env, kiln_path=sys.executable)), "needs CUDA")


MOCK_NVML = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
typedef struct { unsigned int pid; unsigned long long used; unsigned int gi, ci; } proc_t;
typedef struct { unsigned long long total, free, used; } mem_t;
static int dev;
/* State file: first line 'used BYTES', then 'PID BYTES' per process. */
static int load(unsigned long long *used, proc_t *p, unsigned int max) {
    FILE *f = fopen(getenv("MOCK_NVML_STATE"), "r"); unsigned int n = 0;
    if (!f) return -1;
    if (fscanf(f, "used %llu", used) != 1) { fclose(f); return -1; }
    while (n < max && fscanf(f, "%u %llu", &p[n].pid, &p[n].used) == 2) n++;
    fclose(f); return (int)n;
}
int nvmlInit_v2(void) { return 0; }
int nvmlShutdown(void) { return 0; }
const char *nvmlErrorString(int rc) { return rc == 7 ? "Insufficient Size" : "Unknown Error"; }
int nvmlDeviceGetCount_v2(unsigned int *n) { *n = 1; return 0; }
int nvmlDeviceGetHandleByIndex_v2(unsigned int i, void **h) { if (i) return 2; *h = &dev; return 0; }
int nvmlDeviceGetHandleByUUID(const char *u, void **h) { *h = &dev; return strcmp(u, "GPU-mock") ? 2 : 0; }
int nvmlDeviceGetName(void *h, char *b, unsigned int n) { snprintf(b, n, "Mock GPU"); return 0; }
int nvmlDeviceGetUUID(void *h, char *b, unsigned int n) { snprintf(b, n, "GPU-mock"); return 0; }
int nvmlSystemGetDriverVersion(char *b, unsigned int n) { snprintf(b, n, "999.1"); return 0; }
int nvmlSystemGetCudaDriverVersion_v2(int *v) { *v = 13000; return 0; }
int nvmlDeviceGetMemoryInfo(void *h, mem_t *m) {
    proc_t p[64]; unsigned long long used = 0;
    if (load(&used, p, 64) < 0) return 999;
    m->total = 80ULL << 30; m->used = used; m->free = m->total - used; return 0;
}
int nvmlDeviceGetComputeRunningProcesses_v3(void *h, unsigned int *count, proc_t *out) {
    proc_t p[64]; unsigned long long used; int n = load(&used, p, 64);
    if (n < 0) return 999;
    if (*count < (unsigned)n) { *count = n; return 7; }
    memcpy(out, p, n * sizeof(proc_t)); *count = n; return 0;
}
"""


@unittest.skipIf(shutil.which("cc") is None, "no C compiler for the mock NVML")
class NvmlMockTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp()
        src = os.path.join(cls.dir, "mock.c")
        with open(src, "w") as f:
            f.write(MOCK_NVML)
        cls.lib = os.path.join(cls.dir, "libmocknvml.so")
        subprocess.run(["cc", "-shared", "-fPIC", "-o", cls.lib, src], check=True)
        cls.state = os.path.join(cls.dir, "state")
        os.environ["MOCK_NVML_STATE"] = cls.state

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir)

    def write_state(self, used, procs):
        tmp = self.state + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"used {used}\n" + "".join(f"{p} {m}\n" for p, m in procs))
        os.replace(tmp, self.state)

    def test_queries(self):
        self.write_state(5 << 20, [(os.getpid(), 3 << 20)] + [(100000 + i, 1) for i in range(20)])
        s = nvml.Nvml(self.lib)
        h = s.handle(0)
        self.assertEqual(s.name(h), "Mock GPU")
        self.assertEqual(s.uuid(h), "GPU-mock")
        self.assertEqual(s.driver_version(), "999.1")
        self.assertEqual(s.cuda_driver_version(), "13.0")
        self.assertEqual(s.memory(h), (80 << 30, 5 << 20))
        procs = s.processes(h)  # more than the first guess: the INSUFFICIENT_SIZE retry path
        self.assertEqual(len(procs), 21)
        self.assertEqual(procs[os.getpid()], 3 << 20)
        with self.assertRaises(nvml.NvmlError):
            s.handle(3)

    def test_sampler_attributes_the_child_tree(self):
        s = nvml.Nvml(self.lib)
        h = s.handle(0)
        self.write_state(1000 << 20, [(1, 500 << 20)])
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.6)"])
        try:
            sampler = nvml.Sampler(s, h, 0.005)
            sampler.start(child.pid, 1000 << 20)
            time.sleep(0.1)
            self.write_state(1300 << 20, [(1, 500 << 20), (child.pid, 250 << 20)])
            time.sleep(0.1)
            self.write_state(1100 << 20, [(1, 500 << 20), (child.pid, 80 << 20)])
            time.sleep(0.1)
            r = sampler.stop()
        finally:
            child.wait()
        self.assertEqual(r["gpu_mem_method"], "nvml-process")
        self.assertEqual(r["peak_gpu_bytes"], 250 << 20)
        self.assertEqual(r["peak_device_delta_bytes"], 300 << 20)

    def test_sampler_falls_back_to_device_delta(self):
        s = nvml.Nvml(self.lib)
        h = s.handle(0)
        self.write_state(1000 << 20, [])
        sampler = nvml.Sampler(s, h, 0.005)
        sampler.start(os.getpid() + 10 ** 6, 1000 << 20)  # a PID NVML never lists (other namespace)
        time.sleep(0.05)
        self.write_state(1400 << 20, [(424242, 400 << 20)])
        time.sleep(0.1)
        r = sampler.stop()
        self.assertEqual(r["gpu_mem_method"], "nvml-device-delta")
        self.assertEqual(r["peak_gpu_bytes"], 400 << 20)


class ProcessTreeTest(unittest.TestCase):
    def test_tree_includes_grandchildren(self):
        child = subprocess.Popen([sys.executable, "-c",
                                  "import subprocess,sys,time; p=subprocess.Popen([sys.executable,'-c',"
                                  "'import time; time.sleep(2)']); print(p.pid, flush=True); p.wait()"],
                                 stdout=subprocess.PIPE, text=True)
        with child:
            grandchild = int(child.stdout.readline())
            tree = nvml.process_tree(child.pid)
            self.assertIn(child.pid, tree)
            self.assertIn(grandchild, tree)
            self.assertNotIn(os.getpid(), tree)
            os.kill(grandchild, 9)  # both were started here, by this test


class WaitChildTest(unittest.TestCase):
    def test_timeout_kills_group(self):
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
        t0 = time.monotonic()
        rc, rss, timed_out = run.wait_child(proc, 0.3)
        self.assertTrue(timed_out)
        self.assertLess(rc, 0)
        self.assertLess(time.monotonic() - t0, 10)

    def test_exit_code_and_rss(self):
        proc = subprocess.Popen([sys.executable, "-c", "import sys; b = bytearray(50 << 20); sys.exit(3)"],
                                start_new_session=True)
        rc, rss, timed_out = run.wait_child(proc, 30)
        self.assertEqual((rc, timed_out), (3, False))
        self.assertGreater(rss, 40)


if __name__ == "__main__":
    unittest.main()
