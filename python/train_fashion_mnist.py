#!/usr/bin/python3
"""Trains the small CNN (kiln_models.MnistCNN) on Fashion-MNIST on the CPU and exports it as the
model of the C demo (examples/fashion_mnist_demo.c), by default to models/fashion_mnist.onnx.

The exported model's contract, which the demo follows:
  input  "image"  float32 [N, 1, 28, 28], N free: pixel / 255, so values in [0, 1], row-major as
                  stored in the idx file. The model normalises with the training set's mean
                  0.2860 and std 0.3530 itself.
  output "logits" float32 [N, 10]: unnormalised class scores; argmax is the predicted label
                  (0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal, 6 Shirt,
                  7 Sneaker, 8 Bag, 9 Ankle boot).

Data: the Debian package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist), read with
gzip and numpy; nothing is downloaded.
  train_fashion_mnist.py [--data DIR] [--out models/fashion_mnist.onnx] [--epochs 4]
"""

import argparse
import gzip
import os
import sys
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kiln_models  # noqa: E402

DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_idx(path, magic, ndim):
    """Reads an idx file (big-endian header: magic, then one uint32 per dimension)."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    header = np.frombuffer(data, dtype=">u4", count=1 + ndim)
    if header[0] != magic:
        raise ValueError(f"{path}: bad idx magic {header[0]:#x}, expected {magic:#x}")
    dims = tuple(int(d) for d in header[1:])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 * (1 + ndim))
    if body.size != int(np.prod(dims)):
        raise ValueError(f"{path}: {body.size} bytes of data, header says {dims}")
    return body.reshape(dims)


def load_split(directory, prefix):
    images = read_idx(os.path.join(directory, f"{prefix}-images-idx3-ubyte.gz"), 0x803, 3)
    labels = read_idx(os.path.join(directory, f"{prefix}-labels-idx1-ubyte.gz"), 0x801, 1)
    if len(images) != len(labels):
        raise ValueError(f"{prefix}: {len(images)} images but {len(labels)} labels")
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    return x, torch.from_numpy(labels.astype(np.int64))


@torch.no_grad()
def accuracy(model, x, y, batch=1000):
    model.eval()
    correct = sum((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item()
                  for i in range(0, len(x), batch))
    return correct / len(x)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--out", default=os.path.join(REPO, "models", "fashion_mnist.onnx"))
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--channels", type=int, nargs=2, default=[16, 32], metavar=("C1", "C2"),
                   help="conv widths (default 16 32: ~20 s an epoch on one core)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(args.seed)
    try:
        x_train, y_train = load_split(args.data, "train")
        x_test, y_test = load_split(args.data, "t10k")
    except (OSError, ValueError) as e:
        sys.exit(f"train_fashion_mnist.py: {e} (install dataset-fashion-mnist or pass --data)")
    print(f"train {tuple(x_train.shape)}, test {tuple(x_test.shape)}, {torch.get_num_threads()} threads")

    model = kiln_models.MnistCNN(10, args.channels[0], args.channels[1])
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps = args.epochs * ((len(x_train) + args.batch - 1) // args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps)
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(x_train))
        total = 0.0
        for i in range(0, len(x_train), args.batch):
            idx = perm[i:i + args.batch]
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx], label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        print(f"epoch {epoch + 1}/{args.epochs}: loss {total / len(x_train):.4f}, "
              f"test accuracy {accuracy(model, x_test, y_test):.4f}, {time.perf_counter() - t0:.0f}s")
    train_s = time.perf_counter() - t0
    model.eval()
    acc = accuracy(model, x_test, y_test)

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        torch.onnx.export(model, x_test[:1], args.out, input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}}, opset_version=13,
                          do_constant_folding=True)
    import onnx  # only needed here; training works without it
    onnx.checker.check_model(args.out)
    print(f"test accuracy {acc:.4f} ({round(acc * len(x_test))}/{len(x_test)}), training {train_s:.0f}s; "
          f"wrote {args.out} ({os.path.getsize(args.out) / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
