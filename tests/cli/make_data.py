#!/usr/bin/env python3
"""Regenerates tests/cli/data: tiny ONNX models, their inputs (.npy, .pb, images) and
reference outputs computed here with numpy, so the CLI tests check kiln against an
independent implementation. Needs python3-onnx, python3-numpy, python3-pil.

    /usr/bin/python3 tests/cli/make_data.py      (writes next to this script)
"""
import os
import shutil

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
rng = np.random.default_rng(1234)


def f32(*shape, scale=0.5):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def save_model(graph, path, opset=13):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="kiln-cli-tests")
    model.ir_version = 7
    onnx.save(model, path)
    return model


def save_pb(arr, name, path):
    t = numpy_helper.from_array(arr, name)
    with open(path, "wb") as f:
        f.write(t.SerializeToString())


# ---- numpy reference ops (float64) ----

def conv2d(x, w, b, pad):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = h + 2 * pad - kh + 1, wd + 2 * pad - kw + 1
    out = np.zeros((n, o, oh, ow))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i:i + oh, j:j + ow]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
    return out + b.reshape(1, -1, 1, 1)


def maxpool2(x):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


# ---- tiny CNN: conv-bn-relu-pool-conv-relu-gap-flatten-gemm ----

def tiny_cnn():
    w1, b1 = f32(8, 3, 3, 3), f32(8)
    gamma, beta = (1 + f32(8, scale=0.1)), f32(8, scale=0.1)
    mean, var = f32(8, scale=0.1), (1 + np.abs(f32(8, scale=0.2))).astype(np.float32)
    w2, b2 = f32(8, 8, 3, 3, scale=0.3), f32(8)
    wf, bf = f32(10, 8), f32(10)
    inits = [numpy_helper.from_array(a, n) for a, n in
             [(w1, "w1"), (b1, "b1"), (gamma, "gamma"), (beta, "beta"), (mean, "mean"), (var, "var"),
              (w2, "w2"), (b2, "b2"), (wf, "wf"), (bf, "bf")]]
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("BatchNormalization", ["c1", "gamma", "beta", "mean", "var"], ["bn1"], name="bn1", epsilon=1e-5),
        helper.make_node("Relu", ["bn1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten", axis=1),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["out/logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("out/logits", TensorProto.FLOAT, [1, 10])], inits)

    def layers(x):
        """Every tensor the graph computes, by name (float32)."""
        x = x.astype(np.float64)
        t = {}
        t["c1"] = conv2d(x, w1.astype(np.float64), b1.astype(np.float64), 1)
        t["bn1"] = (t["c1"] - mean.reshape(1, -1, 1, 1)) / np.sqrt(var.reshape(1, -1, 1, 1) + 1e-5) \
            * gamma.reshape(1, -1, 1, 1) + beta.reshape(1, -1, 1, 1)
        t["r1"] = np.maximum(t["bn1"], 0)
        t["p1"] = maxpool2(t["r1"])
        t["c2"] = conv2d(t["p1"], w2.astype(np.float64), b2.astype(np.float64), 1)
        t["r2"] = np.maximum(t["c2"], 0)
        t["g"] = t["r2"].mean(axis=(2, 3), keepdims=True)
        t["f"] = t["g"].reshape(1, -1)
        t["out/logits"] = t["f"] @ wf.T.astype(np.float64) + bf
        return {k: v.astype(np.float32) for k, v in t.items()}

    def ref(x):
        return layers(x)["out/logits"]
    return graph, ref, layers


# ---- MLP with a symbolic batch and two inputs: y = sigmoid(x @ W + b) * s ----

def dyn_mlp():
    w, b = f32(6, 4), f32(4)
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["mm"], name="mm"),
        helper.make_node("Add", ["mm", "b"], ["pre"], name="add"),
        helper.make_node("Sigmoid", ["pre"], ["sig"], name="sigmoid"),
        helper.make_node("Mul", ["sig", "s"], ["y"], name="mul"),
    ]
    graph = helper.make_graph(
        nodes, "dyn_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 6]),
         helper.make_tensor_value_info("s", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b")])

    def ref(x, s):
        z = x.astype(np.float64) @ w.astype(np.float64) + b
        return (1 / (1 + np.exp(-z)) * s).astype(np.float32)
    return graph, ref


def unsupported():
    nodes = [
        helper.make_node("Relu", ["a"], ["r"], name="relu"),
        helper.make_node("FancyOp", ["r"], ["f"], name="fancy", domain="com.example"),
        helper.make_node("TotallyUnknownOp", ["f"], ["z"], name="mystery"),
    ]
    graph = helper.make_graph(
        nodes, "unsupported",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("com.example", 1)],
                              producer_name="kiln-cli-tests")
    model.ir_version = 7
    return model


def bilinear_half_pixel(img, oh, ow):
    """img HxWxC float64 -> ohxowxC, half-pixel centres, edge clamped (as ONNX Resize linear)."""
    h, w, _ = img.shape
    out = np.zeros((oh, ow, img.shape[2]))
    for y in range(oh):
        sy = min(max((y + 0.5) * h / oh - 0.5, 0), h - 1)
        y0 = int(np.floor(sy)); y1 = min(y0 + 1, h - 1); fy = sy - y0
        for x in range(ow):
            sx = min(max((x + 0.5) * w / ow - 0.5, 0), w - 1)
            x0 = int(np.floor(sx)); x1 = min(x0 + 1, w - 1); fx = sx - x0
            out[y, x] = (img[y0, x0] * (1 - fy) * (1 - fx) + img[y0, x1] * (1 - fy) * fx +
                         img[y1, x0] * fy * (1 - fx) + img[y1, x1] * fy * fx)
    return out


def main():
    if os.path.isdir(HERE):
        shutil.rmtree(HERE)
    os.makedirs(HERE)
    p = lambda *a: os.path.join(HERE, *a)

    graph, ref, layers = tiny_cnn()
    save_model(graph, p("tiny_cnn.onnx"))
    x = f32(1, 3, 16, 16, scale=1.0)
    np.save(p("tiny_cnn_input.npy"), x)
    save_pb(x, "input", p("tiny_cnn_input.pb"))
    os.makedirs(p("tiny_cnn_expected"))
    np.save(p("tiny_cnn_expected", "out_logits.npy"), ref(x))
    # the same reference, off by 1e-3 in one value: compare must fail on it
    bad = ref(x).copy()
    bad[0, 3] += 1e-3
    os.makedirs(p("tiny_cnn_wrong"))
    np.save(p("tiny_cnn_wrong", "out_logits.npy"), bad)

    # every intermediate tensor, with pool1's output off by 0.01 in one place: compare
    # --all-layers must name pool1 as the first layer beyond tolerance
    os.makedirs(p("tiny_cnn_layers"))
    for name, arr in layers(x).items():
        if name == "p1":
            arr = arr.copy()
            arr[0, 2, 3, 4] += 0.01
        np.save(p("tiny_cnn_layers", name.replace("/", "_") + ".npy"), arr)

    graph, mref = dyn_mlp()
    save_model(graph, p("dyn_mlp.onnx"))
    mx, ms = f32(3, 6, scale=1.0), f32(3, 4, scale=1.0)
    np.save(p("mlp_x.npy"), mx)
    np.save(p("mlp_s.npy"), ms)
    np.save(p("mlp_x_f64.npy"), mx.astype(np.float64))  # converted on load
    os.makedirs(p("mlp_expected"))
    np.save(p("mlp_expected", "y.npy"), mref(mx, ms))

    onnx.save(unsupported(), p("unsupported.onnx"))

    # images: 16x16 (no resize) and 32x32 (bilinear down to 16x16), PNG and JPEG
    yy, xx = np.mgrid[0:32, 0:32]
    img32 = np.stack([(xx * 8) % 256, (yy * 8) % 256, ((xx + yy) * 4) % 256], axis=-1).astype(np.uint8)
    Image.fromarray(img32, "RGB").save(p("img32.png"))
    Image.fromarray(img32, "RGB").save(p("img32.jpg"), quality=95)
    img16 = img32[::2, ::2].copy()
    Image.fromarray(img16, "RGB").save(p("img16.png"))
    unit16 = (img16.astype(np.float64) / 255).transpose(2, 0, 1)[None].astype(np.float32)
    np.save(p("img16_unit.npy"), unit16)
    res = bilinear_half_pixel(img32.astype(np.float64), 16, 16) / 255
    np.save(p("img32_unit_16.npy"), res.transpose(2, 0, 1)[None].astype(np.float32))
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    inet = ((img16.astype(np.float64) / 255 - mean) / std).transpose(2, 0, 1)[None].astype(np.float32)
    np.save(p("img16_imagenet.npy"), inet)

    # ONNX backend-style test directories for `kiln onnx-test`: one passes, one fails
    # (wrong expected output), one is skipped (unsupported op)
    def backend_test(name, model_path, inputs, outputs):
        d = p("onnxtest", name)
        os.makedirs(os.path.join(d, "test_data_set_0"))
        shutil.copy(model_path, os.path.join(d, "model.onnx"))
        for i, (n, a) in enumerate(inputs):
            save_pb(a, n, os.path.join(d, "test_data_set_0", "input_%d.pb" % i))
        for i, (n, a) in enumerate(outputs):
            save_pb(a, n, os.path.join(d, "test_data_set_0", "output_%d.pb" % i))
    backend_test("test_tiny_cnn_pass", p("tiny_cnn.onnx"), [("input", x)], [("out/logits", ref(x))])
    worse = ref(x).copy()
    worse[0, 3] += 0.5
    backend_test("test_tiny_cnn_fail", p("tiny_cnn.onnx"), [("input", x)], [("out/logits", worse)])
    backend_test("test_mlp_pass", p("dyn_mlp.onnx"), [("x", mx), ("s", ms)], [("y", mref(mx, ms))])
    backend_test("test_unsupported_skip", p("unsupported.onnx"), [("a", f32(2, 3))], [("z", f32(2, 3))])


if __name__ == "__main__":
    main()
