#!/usr/bin/python3
"""Exports a seed model (kiln_models.py) to ONNX together with one test case in the ONNX backend
test layout: DIR/model.onnx, DIR/test_data_set_0/input_0.pb and output_0.pb (float32 TensorProtos
named after the graph's input and output), which kiln_onnx_test runs and compares.

  export.py resnet50 --out build/models/resnet50
  export.py unet --out /tmp/unet --size 128x128 --batch 2
  export.py resnet50 --out /tmp/r50 --weights resnet50_trained.pth   # your own weights
"""

import inspect
import argparse
import copy
import os
import sys
import time
import warnings

import numpy as np
import onnx
import torch
from onnx import numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kiln_models  # noqa: E402

# Spatial sizes must be multiples of these, or the model's skip/concat shapes disagree.
SIZE_MULTIPLE = {"unet": 16, "yolov5s": 32, "deeplabv3plus": 16, "mnist_cnn": 4}


def parse_size(text):
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size wants HxW (e.g. 224x224), got '{text}'")
    if h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"--size must be positive, got '{text}'")
    return h, w


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", choices=sorted(kiln_models.MODELS))
    p.add_argument("--out", required=True, help="output directory (created)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--size", type=parse_size, help="input HxW (default: the model's usual size)")
    p.add_argument("--opset", type=int, default=13)
    p.add_argument("--weights", help=".pth state_dict to load instead of random weights")
    p.add_argument("--classes", type=int, help="number of classes (default: the model's usual: "
                   "1000 vgg16/resnet50, 2 unet, 21 deeplabv3plus, 80 yolov5s, 10 mnist_cnn)")
    p.add_argument("--seed", type=int, default=0, help="seed for random weights and the test input")
    p.add_argument("--dynamic-batch", action="store_true",
                   help="make dimension 0 of input and outputs symbolic ('N')")
    p.add_argument("--raw-head", action="store_true",
                   help="yolov5s: output the three raw Detect convs instead of decoded boxes")
    p.add_argument("--keep-bn", action="store_true",
                   help="keep BatchNormalization nodes (default: folded into the convs, as "
                        "torch.onnx.export does in eval mode)")
    p.add_argument("--input-name", default="input")
    p.add_argument("--output-name", default="output",
                   help="output name (with several outputs: NAME_0, NAME_1, ...)")
    p.add_argument("--no-test-data", action="store_true", help="write model.onnx only")
    p.add_argument("--reference", choices=("float32", "float64"), default="float32",
                   help="precision of the expected outputs in the test data: float64 runs a float64 "
                        "copy of the model (a reference free of PyTorch's own float32 rounding; the "
                        "values are stored as float32)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    if args.batch < 1:
        p.error("--batch must be >= 1")
    if args.raw_head and args.model != "yolov5s":
        p.error("--raw-head only applies to yolov5s")
    if args.weights and not os.path.isfile(args.weights):
        p.error(f"--weights: no such file '{args.weights}'")
    return args


def export(model, example, path, input_name, output_names, opset, dynamic_batch, keep_bn=False):
    """torch.onnx.export with static shapes (or a symbolic batch), then onnx.checker.

    In EVAL mode the exporter folds each BatchNorm into the conv before it; PRESERVE (with the
    model in eval mode) leaves BatchNormalization nodes in inference form instead."""
    dynamic_axes = None
    if dynamic_batch:
        dynamic_axes = {name: {0: "N"} for name in [input_name] + output_names}
    with warnings.catch_warnings():
        # Tracer warnings about Python ints taken from shapes are expected: shapes are static.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="The shape inference of prim::Constant")
        warnings.filterwarnings("ignore", message="It is recommended that constant folding")
        extra = {}
        # torch >= 2.5 defaults to the dynamo exporter (it needs onnxscript): keep the
        # TorchScript one, which every supported torch has
        if "dynamo" in inspect.signature(torch.onnx.export).parameters:
            extra["dynamo"] = False
        torch.onnx.export(model, example, path, input_names=[input_name], output_names=output_names,
                          opset_version=opset, do_constant_folding=True, dynamic_axes=dynamic_axes,
                          training=(torch.onnx.TrainingMode.PRESERVE if keep_bn
                                    else torch.onnx.TrainingMode.EVAL), **extra)
    onnx.checker.check_model(path)


def write_test_data(directory, input_name, x, output_names, outputs):
    os.makedirs(directory, exist_ok=True)
    tensors = [("input_0.pb", input_name, x)]
    tensors += [(f"output_{i}.pb", n, y) for i, (n, y) in enumerate(zip(output_names, outputs))]
    for fname, name, value in tensors:
        proto = numpy_helper.from_array(np.ascontiguousarray(value, dtype=np.float32), name)
        with open(os.path.join(directory, fname), "wb") as f:
            f.write(proto.SerializeToString())


def main(argv=None):
    args = parse_args(argv)
    _, _, default_shape, _ = kiln_models.MODELS[args.model]
    channels = default_shape[0]
    h, w = args.size or default_shape[1:]
    mult = SIZE_MULTIPLE.get(args.model, 1)
    if h % mult or w % mult:
        sys.exit(f"export.py: {args.model} needs H and W multiples of {mult}, got {h}x{w}")
    if args.model == "mnist_cnn" and (h, w) != (28, 28):
        sys.exit("export.py: mnist_cnn's fully connected layer fixes the input at 28x28")

    t0 = time.perf_counter()
    torch.set_grad_enabled(False)
    try:
        model = kiln_models.build(args.model, args.seed, (channels, h, w), args.weights,
                                  args.classes)
    except (OSError, ValueError) as e:
        sys.exit(f"export.py: {e}")
    if args.raw_head:
        model.detect.decode = False
    g = torch.Generator().manual_seed(args.seed + 12345)
    if args.model == "mnist_cnn":  # it takes pixel/255
        x = torch.rand(args.batch, channels, h, w, generator=g)
    else:
        x = torch.randn(args.batch, channels, h, w, generator=g)
    t1 = time.perf_counter()

    # The reference run also caches YOLO's grids, so the trace below bakes them in as constants.
    y = model(x)
    outputs = list(y) if isinstance(y, (tuple, list)) else [y]
    output_names = ([args.output_name] if len(outputs) == 1
                    else [f"{args.output_name}_{i}" for i in range(len(outputs))])
    t2 = time.perf_counter()

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "model.onnx")
    export(model, x, path, args.input_name, output_names, args.opset, args.dynamic_batch,
           args.keep_bn)
    t3 = time.perf_counter()
    if not args.no_test_data and args.reference == "float64":
        exact = copy.deepcopy(model).double()
        y64 = exact(x.double())
        y64 = list(y64) if isinstance(y64, (tuple, list)) else [y64]
        # How far PyTorch's own float32 run is from it: the model's conditioning, which a
        # test of another float32 implementation has to allow for.
        num = sum(float((a.double() - b).norm()) ** 2 for a, b in zip(outputs, y64))
        den = sum(float(b.norm()) ** 2 for b in y64)
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "float32_rel_l2.txt"), "w") as f:
            f.write(f"{(num / den) ** 0.5 if den > 0 else 0.0:.6g}\n")
        outputs = [o.float() for o in y64]
    if not args.no_test_data:
        write_test_data(os.path.join(args.out, "test_data_set_0"), args.input_name, x.numpy(),
                        output_names, [o.numpy() for o in outputs])
    t4 = time.perf_counter()
    if not args.quiet:
        shapes = ", ".join("x".join(map(str, o.shape)) for o in outputs)
        mb = os.path.getsize(path) / 1e6
        print(f"{args.model}: {args.batch}x{channels}x{h}x{w} -> {shapes}; {path} ({mb:.1f} MB, "
              f"opset {args.opset}, torch {torch.__version__}); build {t1 - t0:.1f}s, "
              f"forward {t2 - t1:.1f}s, export {t3 - t2:.1f}s, test data {t4 - t3:.1f}s")


if __name__ == "__main__":
    main()
