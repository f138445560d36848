"""A quick torch.compile check of one seed model on the GPU machine: compiles it with
mode="reduce-overhead" (CUDA graph trees, no autotuning: seconds, not minutes), runs three
forwards and compares them with eager FP32. Finds models that break under compilation
before a max-autotune harness cell spends minutes on them.
    python3 python/bench/compile_probe.py MODEL [HxW] [BATCH]"""
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import kiln_models  # noqa: E402


def main():
    name = sys.argv[1]
    h, w = (int(v) for v in (sys.argv[2] if len(sys.argv) > 2 else "320x320").split("x"))
    batch = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    model = kiln_models.build(name, input_shape=(3, h, w)).cuda().eval()
    x = torch.randn(batch, 3, h, w, device="cuda")
    with torch.no_grad():
        ref = model(x).float()
        half = model.half().to(memory_format=torch.channels_last)
        comp = torch.compile(half, mode="reduce-overhead")
        t0 = time.time()
        outs = []
        for _ in range(3):
            outs.append(comp(x.half().contiguous(memory_format=torch.channels_last)).float().clone())
        torch.cuda.synchronize()
        err = max(((o - ref).norm() / ref.norm()).item() for o in outs)
    print(f"{name} {h}x{w} b{batch}: torch.compile reduce-overhead ran 3 forwards in {time.time() - t0:.1f} s, "
          f"rel. L2 vs eager FP32 {err:.1e}")


if __name__ == "__main__":
    main()
