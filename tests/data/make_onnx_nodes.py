#!/usr/bin/python3
"""Write tests/data/nodes/test_opt_<case>/ (model.onnx + test_data_set_0/{input,output}_K.pb),
executor node tests in the layout of ONNX's: the data types, static evaluation and shape /
logic operators as real exports use them. tests/test_onnx_conformance.c runs every case and
requires each to load and pass (on 1 and 3 threads). Expected outputs are computed here with
numpy.

    /usr/bin/python3 tests/data/make_onnx_nodes.py tests/data/nodes tests/data/onnx_bad

The second directory gets the models the executor refuses (bad_models), one per message.

Deterministic: the same bytes every run (fixed seed, no checker-dependent fields).
"""
import os
import shutil
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper

F, I32, I64, B = TensorProto.FLOAT, TensorProto.INT32, TensorProto.INT64, TensorProto.BOOL
NP = {F: np.float32, I32: np.int32, I64: np.int64, B: np.bool_}


def const(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def write(root, case, nodes, inputs, outputs, inits=(), opset=17, dyn=True):
    """inputs / outputs: [(name, elem_type, array)]. With dyn, the graph inputs keep a dynamic
    first dimension when the array has rank >= 2 (as exports with a dynamic batch do)."""
    d = os.path.join(root, "test_opt_" + case)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.join(d, "test_data_set_0"))

    def vi(name, et, a, dyn):
        shape = list(a.shape)
        if dyn and len(shape) >= 2:
            shape[0] = "N"
        return helper.make_tensor_value_info(name, et, shape)

    g = helper.make_graph(nodes, case, [vi(n, t, a, dyn) for n, t, a in inputs],
                          [vi(n, t, a, False) for n, t, a in outputs], list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)],
                          producer_name="h2tdb-tests")
    m.ir_version = 8
    with open(os.path.join(d, "model.onnx"), "wb") as f:
        f.write(m.SerializeToString())
    for kind, lst in (("input", inputs), ("output", outputs)):
        for k, (n, t, a) in enumerate(lst):
            with open(os.path.join(d, "test_data_set_0", "%s_%d.pb" % (kind, k)), "wb") as f:
                f.write(numpy_helper.from_array(np.asarray(a, NP[t]), n).SerializeToString())


def main(root):
    rng = np.random.default_rng(7)
    x4 = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)

    # int32 shape arithmetic (tf2onnx / paddle2onnx): Shape -> Cast int32 -> Gather, Mul, Div,
    # Concat -> Cast int64 -> Reshape of the float data to N x (C*H*W / 2) x 2
    nodes = [
        helper.make_node("Shape", ["x"], ["s64"]),
        helper.make_node("Cast", ["s64"], ["s32"], to=I32),
        helper.make_node("Gather", ["s32", "i0"], ["n"], axis=0),
        helper.make_node("Slice", ["s32", "st1", "en4"], ["chw3"]),
        helper.make_node("Mul", ["chw3", "two32"], ["chw3x2"]),
        helper.make_node("Split", ["chw3x2"], ["c2", "h2", "w2"], axis=0, split=[1, 1, 1]),
        helper.make_node("Mul", ["c2", "h2"], ["ch"]),
        helper.make_node("Mul", ["ch", "w2"], ["chw8"]),
        helper.make_node("Div", ["chw8", "sixteen32"], ["half"]),
        helper.make_node("Concat", ["n", "half", "two32"], ["shape32"], axis=0),
        helper.make_node("Cast", ["shape32"], ["shape64"], to=I64),
        helper.make_node("Reshape", ["x", "shape64"], ["y"]),
    ]
    inits = [const("i0", np.array([0], np.int32)), const("st1", np.array([1], np.int64)),
             const("en4", np.array([4], np.int64)), const("two32", np.array([2], np.int32)),
             const("sixteen32", np.array([16], np.int32))]
    write(root, "int32_shape_arithmetic", nodes, [("x", F, x4)],
          [("y", F, x4.reshape(2, 30, 2))], inits, opset=12)

    # a mask computed from the input's shape only (Swin's attention mask pattern), folded
    # before the run: rows = Range(0, H) as float; mask[h, w] = -100 where rows[h] >= H - 2
    # (Less, Not) or at (0, w=0), built with ConstantOfShape + ScatterND + Equal + Where
    H, W = 4, 5
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "i2s"], ["hs"], axis=0),
        helper.make_node("Gather", ["s", "i2"], ["h1"], axis=0),
        helper.make_node("Gather", ["s", "i3"], ["w1"], axis=0),
        helper.make_node("Range", ["zero", "hs", "one"], ["r"]),
        helper.make_node("Cast", ["r"], ["rf"], to=F),
        helper.make_node("Sub", ["hs", "two"], ["h2"]),
        helper.make_node("Cast", ["h2"], ["h2f"], to=F),
        helper.make_node("Less", ["rf", "h2f"], ["keep"]),
        helper.make_node("Not", ["keep"], ["drop"]),
        helper.make_node("Concat", ["h1", "one1", "w1"], ["hw_shape"], axis=0),
        helper.make_node("ConstantOfShape", ["hw_shape"], ["zeros"],
                         value=helper.make_tensor("v", F, [1], [0.0])),
        helper.make_node("Unsqueeze", ["drop", "ax12"], ["drop1"]),
        helper.make_node("Cast", ["drop1"], ["dropf"], to=F),
        helper.make_node("Add", ["zeros", "dropf"], ["marks"]),
        helper.make_node("ScatterND", ["marks", "idx", "upd"], ["marks2"]),
        helper.make_node("Equal", ["marks2", "onef"], ["is1"]),
        helper.make_node("Where", ["is1", "m100", "zerof"], ["mask"]),
        helper.make_node("Squeeze", ["mask", "ax1"], ["mask2"]),
        helper.make_node("Add", ["x", "mask2"], ["y"]),
    ]
    inits = [const("i2s", np.array(2, np.int64)), const("i2", np.array([2], np.int64)),
             const("i3", np.array([3], np.int64)), const("zero", np.array(0, np.int64)),
             const("one", np.array(1, np.int64)), const("two", np.array(2, np.int64)),
             const("one1", np.array([1], np.int64)), const("ax1", np.array([1], np.int64)),
             const("ax12", np.array([1, 2], np.int64)),
             const("idx", np.array([[0, 0, 0]], np.int64)),
             const("upd", np.array([1.0], np.float32)), const("onef", np.array(1.0, np.float32)),
             const("m100", np.array(-100.0, np.float32)),
             const("zerof", np.array(0.0, np.float32))]
    marks = np.zeros((H, 1, W), np.float32)
    marks[H - 2:] = 1
    marks[0, 0, 0] = 1
    mask = np.where(marks == 1, np.float32(-100), np.float32(0)).reshape(H, W)
    write(root, "shape_only_mask_folded", nodes, [("x", F, x4)], [("y", F, x4 + mask)], inits,
          opset=13)

    # bools from run-time data: Less / Greater / Equal over the float input, Not, And, Or,
    # Xor, Where picking per element, and Cast float <-> bool at run time
    xb = np.array([[-1.5, 0.0, 2.0, 0.25], [3.0, -0.5, 0.0, 1.0]], np.float32)
    nodes = [
        helper.make_node("Less", ["x", "zerof"], ["neg"]),
        helper.make_node("Greater", ["x", "onef"], ["big"]),
        helper.make_node("Equal", ["x", "zerof"], ["z"]),
        helper.make_node("Or", ["neg", "big"], ["outer"]),
        helper.make_node("Not", ["outer"], ["inner"]),
        helper.make_node("Xor", ["inner", "z"], ["inner_nz"]),
        helper.make_node("And", ["inner_nz", "inner"], ["sel"]),
        helper.make_node("Where", ["sel", "x", "tenth"], ["w"]),
        helper.make_node("Cast", ["x"], ["xb"], to=B),
        helper.make_node("Cast", ["xb"], ["xbf"], to=F),
        helper.make_node("Mul", ["w", "xbf"], ["y"]),
        helper.make_node("LessOrEqual", ["x", "zerof"], ["le"]),
        helper.make_node("GreaterOrEqual", ["x", "zerof"], ["ge"]),
        helper.make_node("And", ["le", "ge"], ["y_eq0"]),
    ]
    inits = [const("zerof", np.array(0.0, np.float32)), const("onef", np.array(1.0, np.float32)),
             const("tenth", np.array([0.1], np.float32))]
    neg, big, z = xb < 0, xb > 1, xb == 0
    inner = ~(neg | big)
    sel = (inner ^ z) & inner
    w = np.where(sel, xb, np.float32(0.1))
    write(root, "runtime_bool", nodes, [("x", F, xb)],
          [("y", F, (w * (xb != 0).astype(np.float32)).astype(np.float32)),
           ("y_eq0", B, (xb <= 0) & (xb >= 0))], inits, opset=16)

    # run-time bools next to static ones: Where picking a constant bool or a run-time one,
    # Concat of a run-time bool and a constant one, Where over an int64 constant cast to float
    nodes = [
        helper.make_node("Less", ["x", "zerof"], ["neg"]),
        helper.make_node("Greater", ["x", "onef"], ["big"]),
        helper.make_node("Where", ["neg", "tpat", "big"], ["pick"]),
        helper.make_node("Concat", ["pick", "tpat"], ["cat"], axis=0),
        helper.make_node("Cast", ["ints"], ["intsf"], to=F),
        helper.make_node("Where", ["big", "intsf", "x"], ["y"]),
    ]
    tpat = np.array([[True, False, True, False], [False, False, True, True]])
    ints = np.array([[1, 2, 3, 4], [5, 6, 7, 8]], np.int64)
    inits = [const("zerof", np.array(0.0, np.float32)), const("onef", np.array(1.0, np.float32)),
             const("tpat", tpat), const("ints", ints)]
    pick = np.where(xb < 0, tpat, xb > 1)
    write(root, "runtime_bool_with_static", nodes, [("x", F, xb)],
          [("cat", B, np.concatenate([pick, tpat], 0)),
           ("y", F, np.where(xb > 1, ints.astype(np.float32), xb))], inits, opset=16, dyn=False)

    # Cast between float32, int32, int64 and bool in every direction, from an int32 input
    # (static) and from constants; int32 arithmetic wraps
    iv = np.array([[-3, 0, 7], [2147483647, -2147483648, 1]], np.int32)
    fv = np.array([-2.7, -0.5, 0.0, 0.5, 2.7, 3e9], np.float32)
    nodes = [
        helper.make_node("Cast", ["i"], ["i_f"], to=F),
        helper.make_node("Cast", ["i"], ["i_64"], to=I64),
        helper.make_node("Cast", ["i"], ["i_b"], to=B),
        helper.make_node("Cast", ["i_b"], ["i_b32"], to=I32),
        helper.make_node("Cast", ["i_b"], ["i_bf"], to=F),
        helper.make_node("Cast", ["i_64"], ["i_64b"], to=B),
        helper.make_node("Add", ["i", "one32"], ["i_wrap"]),
        helper.make_node("Cast", ["fc"], ["f_64"], to=I64),
        helper.make_node("Cast", ["fc"], ["f_b"], to=B),
        helper.make_node("Cast", ["f_64"], ["f_64_32"], to=I32),
        helper.make_node("Cast", ["f_b"], ["f_b64"], to=I64),
    ]
    inits = [const("one32", np.array(1, np.int32)), const("fc", fv)]
    f64 = np.array([-2, 0, 0, 0, 2, 3000000000], np.int64)
    write(root, "cast_every_direction", nodes, [("i", I32, iv)],
          [("i_f", F, iv.astype(np.float32)), ("i_64", I64, iv.astype(np.int64)),
           ("i_b", B, iv != 0), ("i_b32", I32, (iv != 0).astype(np.int32)),
           ("i_bf", F, (iv != 0).astype(np.float32)), ("i_64b", B, iv != 0),
           ("i_wrap", I32, np.array([[-2, 1, 8], [-2147483648, -2147483647, 2]], np.int32)),
           ("f_64", I64, f64), ("f_b", B, fv != 0),
           ("f_64_32", I32, f64.astype(np.int32)), ("f_b64", I64, (fv != 0).astype(np.int64))],
          inits, opset=13)

    # Split: the attribute form (opset 11), the input form (13), num_outputs with a smaller
    # last part (18), and equal parts; on the run-time float data
    x6 = rng.standard_normal((2, 7, 3)).astype(np.float32)
    write(root, "split_attribute_opset11",
          [helper.make_node("Split", ["x"], ["a", "b"], axis=-2, split=[3, 4])],
          [("x", F, x6)], [("a", F, x6[:, :3]), ("b", F, x6[:, 3:])], opset=11)
    write(root, "split_input_opset13",
          [helper.make_node("Split", ["x", "sp"], ["a", "b", "c"], axis=1)],
          [("x", F, x6)], [("a", F, x6[:, :1]), ("b", F, x6[:, 1:5]), ("c", F, x6[:, 5:])],
          [const("sp", np.array([1, 4, 2], np.int64))], opset=13)
    write(root, "split_num_outputs_opset18",
          [helper.make_node("Split", ["x"], ["a", "b", "c"], axis=1, num_outputs=3)],
          [("x", F, x6)], [("a", F, x6[:, :3]), ("b", F, x6[:, 3:6]), ("c", F, x6[:, 6:])],
          opset=18)
    write(root, "split_equal_parts",
          [helper.make_node("Split", ["x"], ["a", "b", "c"], axis=2)],
          [("x", F, x6)], [("a", F, x6[:, :, :1]), ("b", F, x6[:, :, 1:2]),
                           ("c", F, x6[:, :, 2:])], opset=13)

    # Expand, Tile, ScatterND (reduction add, opset 16), Gather on the run-time float data
    # (x[:, 0], ViT's class token), Mod with both fmod values, int Range
    x3 = rng.standard_normal((2, 1, 3)).astype(np.float32)
    upd = rng.standard_normal((2, 3)).astype(np.float32)
    sidx = np.array([[1, 0], [0, 0]], np.int64)
    x3w = np.broadcast_to(x3, (2, 2, 3)).copy()
    sc = x3w.copy()
    for t in range(2):
        sc[tuple(sidx[t])] += upd[t]
    nodes = [
        helper.make_node("Expand", ["x", "eshape"], ["e"]),
        helper.make_node("Tile", ["x", "reps"], ["t"]),
        helper.make_node("ScatterND", ["e", "sidx", "u"], ["s"], reduction="add"),
        helper.make_node("Gather", ["e", "g0"], ["cls"], axis=1),
        helper.make_node("Mod", ["mi", "mj"], ["mod0"]),
        helper.make_node("Mod", ["mi", "mj"], ["mod1"], fmod=1),
        helper.make_node("Mod", ["x", "mf"], ["modf"], fmod=1),
        helper.make_node("Range", ["r0", "r1", "r2"], ["rng"]),
    ]
    mi = np.array([-7, 7, -7, 7, 0], np.int64)
    mj = np.array([3, -3, -3, 3, 5], np.int64)
    inits = [const("eshape", np.array([1, 2, 1], np.int64)),
             const("reps", np.array([1, 2, 2], np.int64)), const("sidx", sidx),
             const("g0", np.array(0, np.int64)), const("mi", mi), const("mj", mj),
             const("mf", np.array([0.7], np.float32)), const("r0", np.array(10, np.int32)),
             const("r1", np.array(1, np.int32)), const("r2", np.array(-3, np.int32))]
    write(root, "expand_tile_scatter_gather_mod_range", nodes, [("x", F, x3), ("u", F, upd)],
          [("e", F, x3w), ("t", F, np.tile(x3, (1, 2, 2))), ("s", F, sc),
           ("cls", F, x3w[:, 0]), ("mod0", I64, np.mod(mi, mj)), ("mod1", I64, np.fmod(mi, mj)),
           ("modf", F, np.fmod(x3, np.float32(0.7))),
           ("rng", I32, np.arange(10, 1, -3, dtype=np.int32))], inits, opset=16, dyn=False)



    # Dropout as torch exports it in training mode (ratio 0, training_mode true, the mask
    # output read by nothing): the identity
    xd = rng.standard_normal((2, 3, 4)).astype(np.float32)
    write(root, "dropout_training_ratio0",
          [helper.make_node("Dropout", ["x", "ratio", "train"], ["d", "mask"]),
           helper.make_node("Relu", ["d"], ["y"])],
          [("x", F, xd)], [("y", F, np.maximum(xd, 0))],
          [const("ratio", np.array(0.0, np.float32)), const("train", np.array(True))], opset=13)

    # Pad with axes (opset 18): only the named axes (one negative) are padded
    xp = rng.standard_normal((2, 3, 4)).astype(np.float32)
    write(root, "pad_axes_opset18",
          [helper.make_node("Pad", ["x", "pads", "cv", "axes"], ["y"], mode="constant")],
          [("x", F, xp)],
          [("y", F, np.pad(xp, ((0, 0), (1, 0), (2, 3)), constant_values=np.float32(0.5)))],
          [const("pads", np.array([1, 2, 0, 3], np.int64)), const("cv", np.array(0.5, np.float32)),
           const("axes", np.array([1, -1], np.int64))], opset=18)

    # samples moved along the batch axis (a reversed batch): the shapes stay batch-first, but
    # a batch split over threads would reverse each slice alone (tests/test_onnx_ops.c runs it
    # split; here, one run)
    xs = rng.standard_normal((4, 3)).astype(np.float32)
    write(root, "batch_axis_reversed",
          [helper.make_node("Slice", ["x", "st", "en", "ax", "step"], ["y"])],
          [("x", F, xs)], [("y", F, xs[::-1])],
          [const("st", np.array([-1], np.int64)), const("en", np.array([-(2 ** 62)], np.int64)),
           const("ax", np.array([0], np.int64)), const("step", np.array([-1], np.int64))],
          opset=13)
    # a tensor of the input's full shape computed from its shape only (ConstantOfShape of
    # Shape), added to the input: folded before the run, so the sum is no derived layer
    write(root, "add_full_shape_static",
          [helper.make_node("Shape", ["x"], ["s"]),
           helper.make_node("ConstantOfShape", ["s"], ["ones"],
                            value=helper.make_tensor("v", F, [1], [1.0])),
           helper.make_node("Relu", ["x"], ["r"]),
           helper.make_node("Add", ["r", "ones"], ["y"])],
          [("x", F, x4)], [("y", F, np.maximum(x4, 0) + 1)], opset=13)


def bad_models(root):
    """Models the executor refuses, each with a message test (tests/test_onnx_ops.c)."""
    os.makedirs(root, exist_ok=True)

    def save(name, nodes, inputs, outputs, inits=(), opset=13):
        g = helper.make_graph(nodes, name, inputs, outputs, list(inits))
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="h2tdb-tests")
        m.ir_version = 8
        with open(os.path.join(root, name + ".onnx"), "wb") as f:
            f.write(m.SerializeToString())

    x = helper.make_tensor_value_info("x", F, ["N", 3, 4, 4])
    y = helper.make_tensor_value_info("y", F, None)
    # several unsupported operators, two of one type
    save("unsupported_many", [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("FancyNorm", ["r"], ["a"], name="fancy1"),
        helper.make_node("FancyNorm", ["a"], ["b"], name="fancy2"),
        helper.make_node("Swoosh", ["b"], ["c"], name="swoosh"),
        helper.make_node("QuickGelu", ["c"], ["y"], name="qg", domain="com.microsoft"),
    ], [x], [y])
    # an integer tensor computed from the float data
    save("runtime_int", [
        helper.make_node("Cast", ["x"], ["xi"], name="to_int", to=I64),
        helper.make_node("Cast", ["xi"], ["y"], name="to_float", to=F),
    ], [x], [y])
    # an opset newer than the executor knows
    save("opset_new", [helper.make_node("Relu", ["x"], ["y"], name="relu")], [x], [y], opset=99)
    # weights in an external file
    w = helper.make_tensor("w", F, [3], [0.0, 0.0, 0.0])
    w.ClearField("float_data")
    w.data_location = TensorProto.EXTERNAL
    e = w.external_data.add()
    e.key, e.value = "location", "weights.bin"
    save("external_data", [helper.make_node("Add", ["x", "w"], ["y"], name="add")], [x], [y], [w])
    # an integer graph input (token ids): no image for the extraction to feed
    ids = helper.make_tensor_value_info("ids", I64, ["N", 16])
    emb = numpy_helper.from_array(np.ones((100, 8), np.float32), "emb")
    save("int_input", [helper.make_node("Gather", ["emb", "ids"], ["y"], name="embed")], [ids],
         [y], [emb])
    # training-mode Dropout that drops (random)
    save("dropout_training", [
        helper.make_node("Dropout", ["x", "ratio", "train"], ["y"], name="drop")], [x], [y],
        [numpy_helper.from_array(np.array(0.1, np.float32), "ratio"),
         numpy_helper.from_array(np.array(True), "train")])
    # a reshape whose target cannot hold the tensor: the error names the tensor and node
    save("bad_reshape", [helper.make_node("Reshape", ["x", "s"], ["y"], name="flatten_wrong")],
         [x], [y], [numpy_helper.from_array(np.array([-1, 5], np.int64), "s")])


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/nodes")
    bad_models(sys.argv[2] if len(sys.argv) > 2 else "tests/data/onnx_bad")
