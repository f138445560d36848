"""Latency measurement shared by every in-process peer: warm-up, then repeats of timed single
inferences (on CUDA the host clock from the call to the end of a device synchronize, as kiln's
rows are timed; the host clock alone otherwise), and the statistics every column reports. No
torch import here: CUDA timers take the torch module they synchronize with."""

import math
import time


def percentile(values, q):
    """Linear interpolation between closest ranks (numpy's default), q in [0, 100]."""
    if not values:
        raise ValueError("percentile of no values")
    s = sorted(values)
    pos = (len(s) - 1) * q / 100.0
    lo, hi = int(math.floor(pos)), int(math.ceil(pos))
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summarize(times_ms, repeat_medians=None):
    """The latency record of the JSON: median/min/p10/p90/mean of all timed iterations, and the
    spread of the repeats' medians ((max - min) / median, in percent)."""
    out = {
        "median": percentile(times_ms, 50),
        "min": min(times_ms),
        "p10": percentile(times_ms, 10),
        "p90": percentile(times_ms, 90),
        "mean": sum(times_ms) / len(times_ms),
        "count": len(times_ms),
    }
    if repeat_medians:
        out["repeat_medians"] = list(repeat_medians)
        med = percentile(repeat_medians, 50)
        out["repeat_spread_pct"] = 100.0 * (max(repeat_medians) - min(repeat_medians)) / med if med > 0 else None
    return out


def plan_iterations(estimate_ms, target_s, min_iters, max_iters, max_cell_s):
    """How many timed iterations: enough for target_s, within [min_iters, max_iters], but fewer
    (down to 3) when even min_iters would take longer than max_cell_s."""
    est = max(estimate_ms, 1e-3)
    n = int(target_s * 1000.0 / est)
    n = max(min_iters, min(max_iters, n))
    if n * est > max_cell_s * 1000.0:
        n = max(3, int(max_cell_s * 1000.0 / est))
    return n


class HostTimer:
    """Wall clock around a call that returns once the work is done."""

    def time_ms(self, fn):
        t0 = time.perf_counter()
        out = fn()
        return (time.perf_counter() - t0) * 1000.0, out


class SyncTimer:
    """Host clock around a call and a synchronize of the device: what a caller waits for one
    inference, launch overhead and completion wake-up included. kiln's rows (`kiln bench`,
    the host clock around kiln_context_execute, which synchronizes) are timed the same way."""

    def __init__(self, torch):
        self.torch = torch

    def time_ms(self, fn):
        self.torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        self.torch.cuda.synchronize()
        return (time.perf_counter() - t0) * 1000.0, out


class EventTimer:
    """CUDA events recorded on the current stream around each call, then a synchronize: the
    latency of one inference including its launch overhead (the GPU idles until work arrives)."""

    def __init__(self, torch):
        self.torch = torch
        self.start = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)

    def time_ms(self, fn):
        self.torch.cuda.synchronize()
        self.start.record()
        out = fn()
        self.end.record()
        self.end.synchronize()
        return self.start.elapsed_time(self.end), out


def measure(fn, timer, warmup, target_s, min_iters, max_iters, repeats, max_cell_s, log=None):
    """Runs fn `warmup` times (at least once), plans the iteration count from the last warm-up
    times, then `repeats` rounds. Returns (stats dict, last output)."""
    warm_times, out = [], None
    t_start = time.monotonic()
    for i in range(max(1, warmup)):
        t, out = timer.time_ms(fn)
        warm_times.append(t)
        # A slow model (CPU peers at large batch) stops warming up after a quarter of its budget.
        if i >= 1 and time.monotonic() - t_start > max_cell_s / 4:
            break
    tail = warm_times[-3:] if len(warm_times) > 1 else warm_times
    estimate = percentile(tail, 50)
    n = plan_iterations(estimate, target_s, min_iters, max_iters, max_cell_s)
    repeats = max(1, min(repeats, n))
    per = max(1, -(-n // repeats))  # ceil: at least n timed iterations in all
    times, medians = [], []
    for _ in range(repeats):
        rep = []
        for _ in range(per):
            t, out = timer.time_ms(fn)
            rep.append(t)
        medians.append(percentile(rep, 50))
        times.extend(rep)
    stats = summarize(times, medians)
    stats.update({"warmup": len(warm_times), "first_ms": warm_times[0], "repeats": repeats,
                  "iterations_per_repeat": per})
    if log:
        log(f"warm-up {len(warm_times)} (first {warm_times[0]:.3f} ms), {repeats} x {per} timed, "
            f"median {stats['median']:.3f} ms")
    return stats, out
