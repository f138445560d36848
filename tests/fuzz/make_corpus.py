#!/usr/bin/python3
"""Writes the seed corpus of fuzz_onnx (tests/onnx/corpus): small ONNX models that
between them use most ops and attribute forms the importer handles. Needs the `onnx`
Python package (Debian python3-onnx). Run: /usr/bin/python3 tests/fuzz/make_corpus.py"""
import os
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "onnx", "corpus")
rng = np.random.default_rng(7)


def f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def init(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def save(name, nodes, inputs, outputs, inits=(), opset=13, ir=8):
    g = helper.make_graph(nodes, name, inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="kiln-corpus")
    m.ir_version = ir
    with open(os.path.join(OUT, name + ".onnx"), "wb") as f:
        f.write(m.SerializeToString())


def vi(name, shape, t=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, t, shape)


def main():
    os.makedirs(OUT, exist_ok=True)
    N = helper.make_node
    save("cnn", [
        N("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
        N("Relu", ["c1"], ["r1"]),
        N("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1),
        N("BatchNormalization", ["p1", "g", "bt", "m", "v"], ["bn"], epsilon=1e-3),
        N("GlobalAveragePool", ["bn"], ["gap"]),
        N("Flatten", ["gap"], ["f"], axis=1),
        N("Gemm", ["f", "wf", "bf"], ["y"], transB=1, alpha=0.5),
    ], [vi("x", [1, 3, 16, 16])], [vi("y", [1, 10])],
        [init("w1", f32(8, 3, 3, 3)), init("b1", f32(8)), init("g", f32(8)), init("bt", f32(8)),
         init("m", f32(8)), init("v", np.abs(f32(8)) + 0.1), init("wf", f32(10, 8)), init("bf", f32(10))])
    save("shape_chain", [
        N("Shape", ["x"], ["s"]),
        N("Gather", ["s", "i0"], ["n"], axis=0),
        N("Unsqueeze", ["n", "ax"], ["n1"]),
        N("Concat", ["n1", "m1"], ["t"], axis=0),
        N("Reshape", ["x", "t"], ["r"]),
        N("Transpose", ["r"], ["y"], perm=[1, 0]),
    ], [vi("x", ["N", 3, 4])], [vi("y", None)],
        [init("i0", np.array(0, np.int64)), init("ax", np.array([0], np.int64)), init("m1", np.array([-1], np.int64))])
    save("resize", [
        N("Resize", ["x", "", "sc"], ["a"], mode="nearest", nearest_mode="floor",
          coordinate_transformation_mode="asymmetric"),
        N("Resize", ["a", "", "", "sz"], ["y"], mode="linear", coordinate_transformation_mode="align_corners"),
    ], [vi("x", [1, 2, 3, 3])], [vi("y", None)],
        [init("sc", np.array([1, 1, 2, 2], np.float32)), init("sz", np.array([1, 2, 5, 7], np.int64))])
    save("upsample9", [N("Upsample", ["x", "sc"], ["y"], mode="nearest")], [vi("x", [1, 1, 2, 2])], [vi("y", None)],
         [init("sc", np.array([1, 1, 2, 3], np.float32))], opset=9, ir=4)
    save("softmax11", [N("Softmax", ["x"], ["a"], axis=1), N("LogSoftmax", ["a"], ["y"], axis=-1)],
         [vi("x", [2, 3, 4])], [vi("y", None)], opset=11, ir=6)
    save("movement", [
        N("Slice", ["x", "st", "en", "ax", "sp"], ["s"]),
        N("Pad", ["s", "pads", "cv"], ["p"], mode="constant"),
        N("Split", ["p", "spl"], ["a", "b"], axis=1),
        N("Concat", ["b", "a"], ["c"], axis=1),
        N("Tile", ["c", "rep"], ["t"]),
        N("Expand", ["t", "esh"], ["e"]),
        N("Clip", ["e", "lo", "hi"], ["cl"]),
        N("DepthToSpace", ["cl"], ["d"], blocksize=2, mode="CRD"),
        N("SpaceToDepth", ["d"], ["y"], blocksize=2),
    ], [vi("x", [1, 4, 6, 6])], [vi("y", None)],
        [init("st", np.array([0, 1], np.int64)), init("en", np.array([4, -1], np.int64)),
         init("ax", np.array([1, 2], np.int64)), init("sp", np.array([1, 2], np.int64)),
         init("pads", np.array([0, 0, 1, 0, 0, 0, 0, 1], np.int64)), init("cv", np.array(0.5, np.float32)),
         init("spl", np.array([2, 2], np.int64)), init("rep", np.array([1, 1, 1, 2], np.int64)),
         init("esh", np.array([2, 1, 1, 1], np.int64)), init("lo", np.array(-1, np.float32)),
         init("hi", np.array(1, np.float32))])
    save("folding", [
        N("ConstantOfShape", ["shp"], ["z"], value=numpy_helper.from_array(np.array([2.0], np.float32))),
        N("Range", ["r0", "r1", "r2"], ["rg"]),
        N("Cast", ["rg"], ["rgf"], to=TensorProto.FLOAT),
        N("Equal", ["rg", "r0"], ["eq"]),
        N("Where", ["eq", "z", "rgf"], ["w"]),
        N("Constant", [], ["k"], value_floats=[1.0, 2.0, 3.0, 4.0]),
        N("Mul", ["w", "k"], ["wk"]),
        N("Add", ["x", "wk"], ["y"]),
    ], [vi("x", [4])], [vi("y", None)],
        [init("shp", np.array([4], np.int64)), init("r0", np.array(0, np.int64)), init("r1", np.array(4, np.int64)),
         init("r2", np.array(1, np.int64))])
    save("gelu", [
        N("Div", ["x", "s2"], ["d"]), N("Erf", ["d"], ["e"]), N("Add", ["e", "one"], ["a"]),
        N("Mul", ["x", "a"], ["m"]), N("Mul", ["m", "half"], ["y"]),
    ], [vi("x", [2, 8])], [vi("y", None)],
        [init("s2", np.array(1.4142135, np.float32)), init("one", np.array(1, np.float32)),
         init("half", np.array(0.5, np.float32))])
    save("legacy6", [
        N("Add", ["x", "b"], ["a"], broadcast=1, axis=1),
        N("Flatten", ["a"], ["f"], axis=1),
        N("Gemm", ["f", "w", "c"], ["g"], broadcast=1, transB=1),
        N("Dropout", ["g"], ["y"], is_test=1),
    ], [vi("x", [2, 3, 2])], [vi("y", None)],
        [init("b", f32(3)), init("w", f32(5, 6)), init("c", f32(5))], opset=6, ir=3)
    ext = init("w", f32(4))
    ext.ClearField("raw_data")
    ext.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "weights.bin"), ("offset", "0"), ("length", "16")):
        e = ext.external_data.add()
        e.key, e.value = k, v
    save("external", [N("Mul", ["x", "w"], ["y"])], [vi("x", [4])], [vi("y", None)], [ext])
    save("reduce_norm", [
        N("ReduceMean", ["x"], ["rm"], axes=[1], keepdims=1),
        N("ReduceSum", ["x", "axs"], ["rs"], keepdims=0),
        N("ArgMax", ["x"], ["am"], axis=2, select_last_index=1),
        N("InstanceNormalization", ["x", "sc", "bi"], ["inn"]),
        N("LRN", ["inn"], ["l"], size=3),
        N("LayerNormalization", ["l", "lsc", "lbi"], ["ln"], axis=-1),
        N("Sub", ["ln", "rm"], ["y"]),
    ], [vi("x", [1, 3, 4, 4])], [vi("y", None), vi("rs", None), vi("am", None, TensorProto.INT64)],
        [init("axs", np.array([2, 3], np.int64)), init("sc", f32(3)), init("bi", f32(3)), init("lsc", f32(4)),
         init("lbi", f32(4))], opset=17)
    save("conv1d_deconv", [
        N("Conv", ["x", "w"], ["c"], pads=[1, 1], dilations=[2], auto_pad="NOTSET"),
        N("Unsqueeze", ["c", "ax"], ["c4"]),
        N("ConvTranspose", ["c4", "wt"], ["t"], strides=[2, 2], output_padding=[1, 1], group=1),
        N("AveragePool", ["t"], ["y"], kernel_shape=[3, 3], auto_pad="SAME_UPPER", count_include_pad=1),
    ], [vi("x", [1, 2, 9])], [vi("y", None)],
        [init("w", f32(4, 2, 3)), init("ax", np.array([2], np.int64)), init("wt", f32(4, 3, 3, 3))])
    save("unsupported", [N("Hardmax", ["x"], ["a"]), N("Resize", ["a", "", "sc"], ["y"], mode="cubic")],
         [vi("x", [1, 1, 2, 2])], [vi("y", None)], [init("sc", np.array([1, 1, 2, 2], np.float32))])


if __name__ == "__main__":
    main()
