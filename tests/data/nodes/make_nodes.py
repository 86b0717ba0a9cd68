#!/usr/bin/python3
"""Writes tests/data/nodes/test_*: single-operator ONNX models in the layout of ONNX's own node
tests (model.onnx, test_data_set_0/input_K.pb, output_K.pb) for the numeric operators of
extract/ops_nn.c that libonnx-testdata 1.12 does not cover in float32: Gelu (opset 20),
GroupNormalization (18), Einsum, Resize with constant scales, opset-18 reductions, ConvTranspose
with groups and output padding, softmax layouts. Expected outputs come from numpy (float64)
and ONNX's reference helpers. Run: /usr/bin/python3 tests/data/nodes/make_nodes.py"""
import math
import os
import shutil

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.backend.test.case.node.layernormalization import _layer_normalization
from onnx.backend.test.case.node.resize import interpolate_nd, linear_coeffs, nearest_coeffs

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(7)


def save(name, opset, op, x, outs, inits=(), attrs=None, inputs=None, extra_nodes=(), dyn=False):
    """One node op(inputs) -> outputs; x: the float graph input; inits: (name, array); dyn:
    the input's and outputs' first axis symbolic (a batch the executor may split)."""
    d = os.path.join(HERE, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.join(d, "test_data_set_0"))
    in_names = inputs if inputs is not None else ["x"] + [n for n, _ in inits]
    node = helper.make_node(op, in_names, [f"y{k}" for k in range(len(outs))], **(attrs or {}))
    def shp(a):
        return ["N"] + list(a.shape[1:]) if dyn else a.shape
    ginputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, shp(x))]
    gouts = [helper.make_tensor_value_info(f"y{k}", TensorProto.INT64 if o.dtype == np.int64
                                           else TensorProto.FLOAT, shp(o))
             for k, o in enumerate(outs)]
    g = helper.make_graph(list(extra_nodes) + [node], name, ginputs, gouts,
                          [numpy_helper.from_array(a, n) for n, a in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.save(m, os.path.join(d, "model.onnx"))
    sd = os.path.join(d, "test_data_set_0")
    with open(os.path.join(sd, "input_0.pb"), "wb") as f:
        f.write(numpy_helper.from_array(x.astype(np.float32), "x").SerializeToString())
    for k, o in enumerate(outs):
        o = o if o.dtype == np.int64 else o.astype(np.float32)
        with open(os.path.join(sd, f"output_{k}.pb"), "wb") as f:
            f.write(numpy_helper.from_array(o, f"y{k}").SerializeToString())


def f32(*shape, lo=-1.0, hi=1.0):
    return rng.uniform(lo, hi, shape).astype(np.float32)


# Gelu (opset 20)
x = f32(2, 3, 7, lo=-6, hi=6).astype(np.float64)
erf = np.vectorize(math.erf)
save("test_nn_gelu_none", 20, "Gelu", x, [0.5 * x * (1 + erf(x / math.sqrt(2)))])
save("test_nn_gelu_tanh", 20, "Gelu",
     x, [0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))],
     attrs={"approximate": "tanh"})

# LayerNormalization (17): default axis with bias, one output; axis 1 without bias, three
x = f32(2, 5, 8, lo=-3, hi=4)
s, b = f32(8, lo=0.5, hi=2), f32(8)
y, _, _ = _layer_normalization(x.astype(np.float64), s, b, axis=-1)
save("test_nn_layernorm_last_axis", 17, "LayerNormalization", x, [y], [("s", s), ("b", b)])
s2 = f32(5, 8, lo=0.5, hi=2)
y, mean, inv = _layer_normalization(x.astype(np.float64), s2, 0.0, axis=1, epsilon=1e-3)
save("test_nn_layernorm_axis1_stats", 17, "LayerNormalization", x, [y, mean, inv], [("s", s2)],
     attrs={"axis": 1, "epsilon": 1e-3})

# GroupNormalization (18): scale and bias per group
x = f32(2, 6, 3, 4, lo=-2, hi=3).astype(np.float64)
s, b = f32(3, lo=0.5, hi=2), f32(3)
xg = x.reshape(2, 3, -1)
mu, var = xg.mean(axis=2, keepdims=True), xg.var(axis=2, keepdims=True)
yg = (xg - mu) / np.sqrt(var + 1e-4) * s[None, :, None] + b[None, :, None]
save("test_nn_groupnorm_opset18", 18, "GroupNormalization", x, [yg.reshape(x.shape)],
     [("s", s), ("b", b)], attrs={"num_groups": 3, "epsilon": 1e-4})

# Einsum (12): the second operand a constant
for i, (eq, sa, sb) in enumerate([("bhqd,bhkd->bhqk", (2, 3, 5, 4), (2, 3, 6, 4)),
                                  ("bij,bjk->bik", (3, 4, 5), (3, 5, 2)),
                                  ("...ij,...jk->...ik", (2, 3, 4, 5), (5, 6)),
                                  ("bij,bkj->bki", (2, 3, 4), (2, 5, 4)),
                                  ("ibj,bjk->ibk", (3, 2, 4), (2, 4, 5))]):
    x, w = f32(*sa), f32(*sb)
    save(f"test_nn_einsum_{i}", 12, "Einsum", x,
         [np.einsum(eq, x.astype(np.float64), w.astype(np.float64))], [("w", w)],
         attrs={"equation": eq})
x = f32(3, 4, 5)
save("test_nn_einsum_sum_transpose", 12, "Einsum", x,
     [np.einsum("ijk->kj", x.astype(np.float64))], attrs={"equation": "ijk->kj"})

# Resize (13) with constant scales, and sizes; Resize (10); Upsample (9, 7)
x = f32(2, 3, 4, 5, lo=0, hi=10)
xd = x.astype(np.float64)
empty = np.zeros(0, np.float32)
for name, mode, coord, near, scales in [
        ("linear_half_pixel_up", "linear", "half_pixel", None, [1, 1, 2, 1.5]),
        ("linear_pytorch_down", "linear", "pytorch_half_pixel", None, [1, 1, 0.6, 0.5]),
        ("linear_align_corners", "linear", "align_corners", None, [1, 1, 1.5, 2]),
        ("nearest_asym_floor", "nearest", "asymmetric", "floor", [1, 1, 2, 0.5]),
        ("nearest_half_ceil", "nearest", "half_pixel", "round_prefer_ceil", [1, 1, 1.5, 2.4]),
        ("nearest_pytorch_floor", "nearest", "pytorch_half_pixel", "round_prefer_floor",
         [1, 1, 0.75, 0.6])]:
    sc = np.array(scales, np.float32)
    if mode == "linear":
        want = interpolate_nd(xd, linear_coeffs, scale_factors=sc,
                              coordinate_transformation_mode=coord)
    else:
        want = interpolate_nd(xd, lambda r: nearest_coeffs(r, mode=near), scale_factors=sc,
                              coordinate_transformation_mode=coord)
    attrs = {"mode": mode, "coordinate_transformation_mode": coord}
    if near:
        attrs["nearest_mode"] = near
    save(f"test_nn_resize_{name}", 13, "Resize", x, [want], [("roi", empty), ("scales", sc)],
         attrs=attrs, inputs=["x", "roi", "scales"])
from onnx.backend.test.case.node.resize import cubic_coeffs  # noqa: E402
for name, coord, a, excl, scales in [
        ("cubic_half_pixel_up", "half_pixel", -0.75, 0, [1, 1, 2, 1.5]),
        ("cubic_align_corners", "align_corners", -0.75, 0, [1, 1, 1.5, 2]),
        ("cubic_a05_exclude_down", "half_pixel", -0.5, 1, [1, 1, 0.75, 0.6])]:
    sc = np.array(scales, np.float32)
    want = interpolate_nd(xd, lambda r: cubic_coeffs(r, A=a), scale_factors=sc,
                          coordinate_transformation_mode=coord, exclude_outside=bool(excl))
    save(f"test_nn_resize_{name}", 13, "Resize", x, [want], [("roi", empty), ("scales", sc)],
         attrs={"mode": "cubic", "coordinate_transformation_mode": coord, "cubic_coeff_a": a,
                "exclude_outside": excl}, inputs=["x", "roi", "scales"])
sizes = np.array([2, 3, 7, 3], np.int64)
want = interpolate_nd(xd, linear_coeffs, output_size=sizes, coordinate_transformation_mode="half_pixel")
save("test_nn_resize_linear_sizes", 13, "Resize", x, [want], [("sizes", sizes)],
     attrs={"mode": "linear"}, inputs=["x", "", "", "sizes"])
sc = np.array([1, 1, 2, 3], np.float32)
near = np.repeat(np.repeat(xd, 2, axis=2), 3, axis=3)
save("test_nn_resize_opset10_nearest", 10, "Resize", x, [near], [("scales", sc)])
save("test_nn_upsample_opset9_nearest", 9, "Upsample", x, [near], [("scales", sc)])
save("test_nn_upsample_opset7_nearest", 7, "Upsample", x, [near], attrs={"scales": [1., 1., 2., 3.]})
want = interpolate_nd(xd, linear_coeffs, scale_factors=sc, coordinate_transformation_mode="asymmetric")
save("test_nn_resize_opset10_linear", 10, "Resize", x, [want], [("scales", sc)],
     attrs={"mode": "linear"})

# Reductions: axes as an input (ReduceSum 13, ReduceMax 18), attribute (ReduceL2 13), no-op
x = f32(2, 3, 4, 5, lo=-2, hi=2)
xd = x.astype(np.float64)
save("test_nn_reducesum13_axes_input", 13, "ReduceSum", x, [xd.sum(axis=(1, 3))],
     [("axes", np.array([1, -1], np.int64))], attrs={"keepdims": 0})
save("test_nn_reducemax18_axes_input", 18, "ReduceMax", x, [xd.max(axis=2, keepdims=True)],
     [("axes", np.array([2], np.int64))])
save("test_nn_reducel2_13_attr", 13, "ReduceL2", x, [np.sqrt((xd ** 2).sum(axis=(0, 2)))],
     attrs={"axes": [0, 2], "keepdims": 0})
save("test_nn_reducemean18_noop", 18, "ReduceMean", x, [xd], attrs={"noop_with_empty_axes": 1})
save("test_nn_reducemin18_all", 18, "ReduceMin", x, [xd.min(keepdims=True)])
save("test_nn_reducelogsumexp13", 13, "ReduceLogSumExp", x,
     [np.log(np.exp(xd).sum(axis=1))], attrs={"axes": [1], "keepdims": 0})

# ConvTranspose: groups 2, strides (2, 1), pads, dilations (1, 2), output_padding (1, 0), bias


def convt(x, w, b, s, p, d, op, g):
    n, c, h, wd = x.shape
    mg, kh, kw = w.shape[1:]
    oh = s[0] * (h - 1) + op[0] + (kh - 1) * d[0] + 1 - p[0] - p[2]
    ow = s[1] * (wd - 1) + op[1] + (kw - 1) * d[1] + 1 - p[1] - p[3]
    y = np.zeros((n, mg * g, oh, ow)) + b[None, :, None, None]
    cg = c // g
    for ci in range(c):
        gi = ci // cg
        for m in range(mg):
            for i in range(kh):
                for j in range(kw):
                    for ih in range(h):
                        for iw in range(wd):
                            yh, yw = ih * s[0] - p[0] + i * d[0], iw * s[1] - p[1] + j * d[1]
                            if 0 <= yh < oh and 0 <= yw < ow:
                                y[:, gi * mg + m, yh, yw] += x[:, ci, ih, iw] * w[ci, m, i, j]
    return y


x, w, b = f32(2, 4, 3, 5), f32(4, 3, 3, 2), f32(6)
save("test_nn_convtranspose_groups", 11, "ConvTranspose", x,
     [convt(x.astype(np.float64), w, b, (2, 1), (1, 0, 0, 1), (1, 2), (1, 0), 2)],
     [("w", w), ("b", b)],
     attrs={"group": 2, "strides": [2, 1], "pads": [1, 0, 0, 1], "dilations": [1, 2],
            "output_padding": [1, 0]})

# Softmax over the last axis of 4-D (13), LogSoftmax over a middle axis (13), Softmax (11)
x = f32(2, 3, 5, 7, lo=-5, hi=5)
xd = x.astype(np.float64)


def softmax(v, axis):
    e = np.exp(v - v.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


save("test_nn_softmax13_last", 13, "Softmax", x, [softmax(xd, -1)])
save("test_nn_logsoftmax13_axis1", 13, "LogSoftmax", x, [np.log(softmax(xd, 1))],
     attrs={"axis": 1})
save("test_nn_softmax11_axis1", 11, "Softmax", x,
     [softmax(xd.reshape(2, -1), 1).reshape(x.shape)], attrs={"axis": 1})
save("test_nn_size", 13, "Size", x, [np.array(x.size, np.int64)])

# MatMul: batched like the output, shared, mixed broadcasting (the second operand a constant)
for i, (sa, sb) in enumerate([((2, 3, 5, 4), (2, 3, 4, 6)), ((1, 4, 5, 4), (1, 4, 4, 6)),
                              ((2, 3, 5, 4), (4, 6)), ((5, 4), (2, 3, 4, 6)),
                              ((1, 3, 5, 4), (2, 1, 4, 6)), ((2, 3, 5, 4), (1, 3, 4, 6))]):
    x, w = f32(*sa), f32(*sb)
    save(f"test_nn_matmul_{i}", 13, "MatMul", x, [np.matmul(x.astype(np.float64), w)], [("w", w)])

# Dropout as torch exports it in attention: training_mode a constant true, ratio a constant 0,
# the mask output named but read by nothing (dropped by the executor)
x = f32(2, 3, 4)
d = os.path.join(HERE, "test_nn_dropout_training_ratio0")
shutil.rmtree(d, ignore_errors=True)
os.makedirs(os.path.join(d, "test_data_set_0"))
nodes = [helper.make_node("Dropout", ["x", "r", "t"], ["y0", "mask"])]
g = helper.make_graph(nodes, "dropout", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                      [helper.make_tensor_value_info("y0", TensorProto.FLOAT, x.shape)],
                      [numpy_helper.from_array(np.array(0, np.float32), "r"),
                       numpy_helper.from_array(np.array(True), "t")])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
m.ir_version = 8
onnx.save(m, os.path.join(d, "model.onnx"))
with open(os.path.join(d, "test_data_set_0", "input_0.pb"), "wb") as f:
    f.write(numpy_helper.from_array(x, "x").SerializeToString())
with open(os.path.join(d, "test_data_set_0", "output_0.pb"), "wb") as f:
    f.write(numpy_helper.from_array(x, "y0").SerializeToString())

# Integer reductions of shapes (ReduceProd of a Shape, as exports flatten with)
x = f32(2, 3, 4)
save("test_nn_reduceprod_of_shape", 13, "ReduceProd", x, [np.array([12], np.int64)],
     attrs={"axes": [0], "keepdims": 1}, inputs=["s"],
     extra_nodes=[helper.make_node("Shape", ["x"], ["s1"]),
                  helper.make_node("Slice", ["s1", "one", "three"], ["s"])],
     inits=[("one", np.array([1], np.int64)), ("three", np.array([3], np.int64))])
save("test_nn_reducemax_of_shape", 18, "ReduceMax", x, [np.array(4, np.int64)],
     attrs={"keepdims": 0}, inputs=["s"], extra_nodes=[helper.make_node("Shape", ["x"], ["s"])])

# Transposes through the tiled path (the input's last axis moved inward), ragged tiles
for i, (shape, perm) in enumerate([((2, 37, 70), (0, 2, 1)), ((3, 5, 33, 20), (0, 3, 1, 2)),
                                   ((2, 19, 3, 17), (0, 3, 2, 1)), ((4, 6, 5), (2, 0, 1))]):
    x = f32(*shape)
    save(f"test_nn_transpose_{i}", 13, "Transpose", x, [np.transpose(x, perm)],
         attrs={"perm": list(perm)})

# Operators that mix the samples of axis 0 while keeping its size (so the executor must not
# split the batch over threads): LayerNormalization over axis 0, Einsum moving axis 0
x = f32(4, 3, 5, lo=-2, hi=3)
s, b = f32(3, 1, lo=0.5, hi=1.5), f32(5)
y, _, _ = _layer_normalization(x.astype(np.float64), s, b, axis=0)
save("test_nn_layernorm_axis0_mixes", 17, "LayerNormalization", x, [y], [("s", s), ("b", b)],
     attrs={"axis": 0}, dyn=True)
x = f32(4, 4, 3)
save("test_nn_einsum_moves_axis0", 12, "Einsum", x, [np.einsum("bij->ibj", x.astype(np.float64))],
     attrs={"equation": "bij->ibj"}, dyn=True)
x = f32(4, 3, 5, lo=-2, hi=3)
y, _, _ = _layer_normalization(x.astype(np.float64), np.ones(5), 0.0, axis=-1)
save("test_nn_layernorm_dynamic_batch", 17, "LayerNormalization", x, [y],
     [("s", np.ones(5, np.float32))], dyn=True)

# Models the executor must refuse, naming what it refuses: tests/data/refused/NAME.onnx, and
# tests/data/refused/expect.tsv (file TAB a substring of the error detail)
RD = os.path.join(os.path.dirname(HERE), "refused")
shutil.rmtree(RD, ignore_errors=True)
os.makedirs(RD)
expect = []


def refused(name, opset, op, inits, attrs, want, inputs=None, n_out=1):
    in_names = inputs if inputs is not None else ["x"] + [n for n, _ in inits]
    outs = ["y"] + [f"y{k}" for k in range(1, n_out)]
    node = helper.make_node(op, in_names, outs, **(attrs or {}))
    g = helper.make_graph([node], name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs],
                          [numpy_helper.from_array(a, n) for n, a in inits])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.save(m, os.path.join(RD, name + ".onnx"))
    expect.append(f"{name}.onnx\t{want}")


w = f32(1, 2, 4, 4)
refused("einsum_diagonal", 12, "Einsum", [("w", w)], {"equation": "bcii,bcij->bcj"},
        "'bcii,bcij->bcj': a label repeated")
refused("einsum_three_operands", 12, "Einsum", [("w", w), ("v", w)],
        {"equation": "abcd,abcd,abcd->abcd"}, "only one or two operands")
refused("resize_cubic_opset10", 10, "Resize", [("scales", np.array([1, 1, 2, 2], np.float32))],
        {"mode": "cubic"}, "mode=cubic")
refused("resize_crop", 13, "Resize", [("roi", empty), ("scales", np.array([1, 1, 2, 2], np.float32))],
        {"coordinate_transformation_mode": "tf_crop_and_resize"}, "tf_crop_and_resize",
        inputs=["x", "roi", "scales"])
refused("resize_scaled_channels", 13, "Resize",
        [("roi", empty), ("scales", np.array([1, 2, 2, 2], np.float32))], {}, "resizing axis 1",
        inputs=["x", "roi", "scales"])
refused("gelu_bad_approximate", 20, "Gelu", [], {"approximate": "fast"}, "approximate=fast")
refused("dropout_training_ratio", 13, "Dropout",
        [("r", np.array(0.5, np.float32)), ("t", np.array(True))], {},
        "training mode with a ratio other than a constant 0")
refused("convtranspose_3d", 11, "ConvTranspose", [("w", f32(2, 1, 3, 3, 3))],
        {"kernel_shape": [3, 3, 3]}, "only 1-D and 2-D transposed convolutions")
with open(os.path.join(RD, "expect.tsv"), "w") as f:
    f.write("\n".join(expect) + "\n")
