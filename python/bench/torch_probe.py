"""PyTorch FP16 channels-last on one model, outside the harness, for kernel-level probes on the
GPU machine (scripts/gpu_kernels.sh):
  torch_probe.py MODEL --batch B --size HxW kernels   eager forward runs (for ncu to list kernels)
  torch_probe.py MODEL --batch B --size HxW latency   CUDA-graph replays timed like the harness
                                                      (host clock around replay + synchronize)
Random weights and inputs (timing does not depend on the values' meaning)."""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402

import kiln_models  # noqa: E402
from peers.torch_peers import capture_graph  # noqa: E402  (the harness's capture)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model", choices=sorted(kiln_models.MODELS))
    p.add_argument("mode", choices=("kernels", "latency"))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--size", default=None, help="HxW")
    p.add_argument("--iters", type=int, default=5)
    a = p.parse_args()
    build, classes, shape, _ = kiln_models.MODELS[a.model]
    c, h, w = shape
    if a.size:
        h, w = (int(v) for v in a.size.split("x"))
    torch.manual_seed(0)
    torch.set_grad_enabled(False)
    torch.backends.cudnn.benchmark = True
    model = build(classes).eval().cuda().half().to(memory_format=torch.channels_last)
    x = torch.rand(a.batch, c, h, w, device="cuda").half().contiguous(memory_format=torch.channels_last)
    for _ in range(3):
        model(x)
    torch.cuda.synchronize()
    if a.mode == "kernels":
        for _ in range(a.iters):
            model(x)
        torch.cuda.synchronize()
        return
    graph, _ = capture_graph(torch, model, x)
    for _ in range(50):
        graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(a.iters):
        t0 = time.perf_counter()
        graph.replay()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1000.0)
    print(f"torch-fp16-cl-graph {a.model} b{a.batch}: median {statistics.median(times):.4f} ms "
          f"min {min(times):.4f} ms over {a.iters} replays")


if __name__ == "__main__":
    main()
