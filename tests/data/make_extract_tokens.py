#!/usr/bin/python3
"""Write the token-tensor models of the extraction tests (tests/test_extract_tokens.c).

    /usr/bin/python3 tests/data/make_extract_tokens.py tests/data

extract_tokens.onnx, input x: N x 1 x 8 x 8 (dynamic batch), opset 13; every node named as its
output:
  patch  = Conv(x, 4 filters 2x2, stride 2)          N x 4 x 4 x 4   map
  seq    = Reshape(patch, [0, 4, 16])                 N x 4 x 16      (view)
  tok    = Transpose(seq, [0, 2, 1])                  N x 16 x 4      (view)
  h      = MatMul(tok, 4 x 6)                         N x 16 x 6      tokens
  hb     = Add(h, bias[6])                            N x 16 x 6      tokens
  q      = MatMul(hb, 6 x 6)                          N x 16 x 6      tokens
  qh     = Reshape(q, [0, 16, 2, 3])                  heads apart (view)
  qt     = Transpose(qh, [0, 2, 1, 3])                N x 2 x 16 x 3  heads (view)
  kt     = Transpose(qh, [0, 2, 3, 1])                N x 2 x 3 x 16  heads (view)
  scores = MatMul(qt, kt)                             N x 2 x 16 x 16 heads
  attn   = Softmax(scores, axis=-1)                   N x 2 x 16 x 16 attention weights
  ctx    = MatMul(attn, qt)                           N x 2 x 16 x 3  heads
  ctxt   = Transpose(ctx, [0, 2, 1, 3])               N x 16 x 2 x 3  heads (view)
  merged = Reshape(ctxt, [0, 16, 6])                  N x 16 x 6      tokens (view of data
                                                                      no layer holds)
  res    = Add(hb, merged)                            N x 16 x 6      tokens
  sf     = Transpose(res, [1, 0, 2])                  16 x N x 6      (view)
  m2     = MatMul(sf, 6 x 5)                          16 x N x 5      tokens, sequence first
  fl     = Reshape(m2, [-1, 5])                       16N x 5         (view, batch folded)
  fo     = MatMul(fl, 5 x 5)                          16N x 5         batch folded
  fo2    = Reshape(fo, [16, -1, 5])                   16 x N x 5      tokens, sequence first
  nhwc   = Transpose(patch, [0, 2, 3, 1])             N x 4 x 4 x 4   (view)
  lin    = MatMul(nhwc, 4 x 3)                        N x 4 x 4 x 3   map, channels last
  pooled = ReduceMean(res, axes=[1], keepdims=0)      N x 6
  fc     = Gemm(pooled, 6 x 3)                        N x 3
outputs: fc, fo2, lin.

extract_cls.onnx, input x: 1 x 1 x 8 x 8 (batch fixed at 1), opset 13:
  patch = Conv(x, 4 filters 2x2, stride 2)            1 x 4 x 4 x 4
  seq   = Reshape(patch, [1, 4, 16]); tok = Transpose(seq, [0, 2, 1])     1 x 16 x 4
  cat   = Concat(cls_token (a 1 x 1 x 4 constant), tok, axis=1)          1 x 17 x 4
  emb   = Add(cat, pos (17 x 4))                      1 x 17 x 4   tokens with a class token
  h     = MatMul(emb, 4 x 6)                          1 x 17 x 6   tokens with a class token
  head  = Gather(h, 0, axis=1)                        1 x 6
  hs    = Transpose(h, [1, 0, 2]); sfm = MatMul(hs, 6 x 5)   17 x 1 x 5: sequence first, found
                                                      without a second batch size (the fixed
                                                      batch's axis)
extract_mha.onnx, input x: N x 1 x 8 x 8 (dynamic batch), opset 13: attention as torch's
MultiheadAttention exports it (sequence first, the batch folded with the heads):
  patch = Conv(x, 4 filters 2x2, stride 2); seq = Reshape(patch, [0, 4, 16])
  tok   = Transpose(seq, [0, 2, 1])                   N x 16 x 4
  sf    = Transpose(tok, [1, 0, 2])                   16 x N x 4     (view)
  qkv   = MatMul(sf, 4 x 12); qkvb = Add(qkv, bias)   16 x N x 12    tokens, sequence first
  q, k, v = Slice(qkvb, channels 0:4, 4:8, 8:12)      16 x N x 4     (parts of qkvb)
  qf    = Reshape(q, [16, -1, 2]); qb = Transpose(qf, [1, 0, 2])      N*2 x 16 x 2
  kf    = Reshape(k, [16, -1, 2]); kb = Transpose(kf, [1, 2, 0])      N*2 x 2 x 16
  vf    = Reshape(v, [16, -1, 2]); vb = Transpose(vf, [1, 0, 2])      N*2 x 16 x 2
  scores = MatMul(qb, kb)                             N*2 x 16 x 16  batch folded
  attn  = Softmax(scores, axis=-1)                    N*2 x 16 x 16  attention weights
  ctx   = MatMul(attn, vb)                            N*2 x 16 x 2   batch folded
  ctxt  = Transpose(ctx, [1, 0, 2]); ctxf = Reshape(ctxt, [-1, 4])    16N x 4 (batch inner)
  proj  = MatMul(ctxf, 4 x 4)                         16N x 4        batch folded
  out   = Reshape(proj, [16, -1, 4])                  16 x N x 4     tokens, sequence first
  outb  = Transpose(out, [1, 0, 2]); res = Add(tok, outb)             N x 16 x 4
  pooled = ReduceMean(res, axes=[1], keepdims=0); fc = Gemm(pooled, 4 x 3)
Weights are seeded random numbers: the same bytes every run.
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def node(op, inputs, out, **kw):
    return helper.make_node(op, inputs, [out], name=out, **kw)


def const(name, a):
    return numpy_helper.from_array(np.asarray(a), name)


def save(nodes, inits, name, inputs, outputs, path):
    g = helper.make_graph(nodes, name, inputs, outputs, inits)
    m = helper.make_model(g, producer_name="h2tdb-tests",
                          opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    helper.set_model_props(m, {"h2tdb.preprocess": "scale=0,1"})
    onnx.checker.check_model(m)
    with open(path, "wb") as f:
        f.write(m.SerializeToString())


def tokens(path):
    r = np.random.RandomState(7)
    w = lambda *s: (r.standard_normal(s) * 0.5).astype(np.float32)
    i64 = lambda v: np.array(v, np.int64)
    inits = [
        const("wp", w(4, 1, 2, 2)), const("bp", w(4)),
        const("seq_shape", i64([0, 4, 16])),
        const("w1", w(4, 6)), const("b1", w(6)),
        const("wq", w(6, 6)),
        const("qh_shape", i64([0, 16, 2, 3])),
        const("merged_shape", i64([0, 16, 6])),
        const("w2", w(6, 5)),
        const("fl_shape", i64([-1, 5])),
        const("w3", w(5, 5)),
        const("fo2_shape", i64([16, -1, 5])),
        const("w4", w(4, 3)),
        const("wf", w(6, 3)),
    ]
    nodes = [
        node("Conv", ["x", "wp", "bp"], "patch", strides=[2, 2]),
        node("Reshape", ["patch", "seq_shape"], "seq"),
        node("Transpose", ["seq"], "tok", perm=[0, 2, 1]),
        node("MatMul", ["tok", "w1"], "h"),
        node("Add", ["h", "b1"], "hb"),
        node("MatMul", ["hb", "wq"], "q"),
        node("Reshape", ["q", "qh_shape"], "qh"),
        node("Transpose", ["qh"], "qt", perm=[0, 2, 1, 3]),
        node("Transpose", ["qh"], "kt", perm=[0, 2, 3, 1]),
        node("MatMul", ["qt", "kt"], "scores"),
        node("Softmax", ["scores"], "attn", axis=-1),
        node("MatMul", ["attn", "qt"], "ctx"),
        node("Transpose", ["ctx"], "ctxt", perm=[0, 2, 1, 3]),
        node("Reshape", ["ctxt", "merged_shape"], "merged"),
        node("Add", ["hb", "merged"], "res"),
        node("Transpose", ["res"], "sf", perm=[1, 0, 2]),
        node("MatMul", ["sf", "w2"], "m2"),
        node("Reshape", ["m2", "fl_shape"], "fl"),
        node("MatMul", ["fl", "w3"], "fo"),
        node("Reshape", ["fo", "fo2_shape"], "fo2"),
        node("Transpose", ["patch"], "nhwc", perm=[0, 2, 3, 1]),
        node("MatMul", ["nhwc", "w4"], "lin"),
        node("ReduceMean", ["res"], "pooled", axes=[1], keepdims=0),
        node("Gemm", ["pooled", "wf"], "fc"),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])
    outs = [helper.make_tensor_value_info("fc", TensorProto.FLOAT, ["N", 3]),
            helper.make_tensor_value_info("fo2", TensorProto.FLOAT, [16, "N", 5]),
            helper.make_tensor_value_info("lin", TensorProto.FLOAT, ["N", 4, 4, 3])]
    save(nodes, inits, "extract_tokens", [x], outs, path)


def cls(path):
    r = np.random.RandomState(11)
    w = lambda *s: (r.standard_normal(s) * 0.5).astype(np.float32)
    inits = [
        const("wp", w(4, 1, 2, 2)), const("bp", w(4)),
        const("seq_shape", np.array([1, 4, 16], np.int64)),
        const("cls_token", w(1, 1, 4)),
        const("pos", w(17, 4)),
        const("w1", w(4, 6)),
        const("zero", np.array(0, np.int64)),
    ]
    nodes = [
        node("Conv", ["x", "wp", "bp"], "patch", strides=[2, 2]),
        node("Reshape", ["patch", "seq_shape"], "seq"),
        node("Transpose", ["seq"], "tok", perm=[0, 2, 1]),
        node("Concat", ["cls_token", "tok"], "cat", axis=1),
        node("Add", ["cat", "pos"], "emb"),
        node("MatMul", ["emb", "w1"], "h"),
        node("Gather", ["h", "zero"], "head", axis=1),
        node("Transpose", ["h"], "hs", perm=[1, 0, 2]),
        node("MatMul", ["hs", "w2"], "sfm"),
    ]
    inits.append(const("w2", w(6, 5)))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])
    y = helper.make_tensor_value_info("head", TensorProto.FLOAT, [1, 6])
    y2 = helper.make_tensor_value_info("sfm", TensorProto.FLOAT, [17, 1, 5])
    save(nodes, inits, "extract_cls", [x], [y, y2], path)


def mha(path):
    r = np.random.RandomState(13)
    w = lambda *s: (r.standard_normal(s) * 0.5).astype(np.float32)
    i64 = lambda v: np.array(v, np.int64)
    inits = [
        const("wp", w(4, 1, 2, 2)), const("bp", w(4)),
        const("seq_shape", i64([0, 4, 16])),
        const("win", w(4, 12)), const("bin", w(12)),
        const("ax", i64([2])),
        const("s0", i64([0])), const("s4", i64([4])), const("s8", i64([8])), const("s12", i64([12])),
        const("heads_shape", i64([16, -1, 2])),
        const("merge_shape", i64([-1, 4])),
        const("wo", w(4, 4)),
        const("out_shape", i64([16, -1, 4])),
        const("wf", w(4, 3)),
    ]
    nodes = [
        node("Conv", ["x", "wp", "bp"], "patch", strides=[2, 2]),
        node("Reshape", ["patch", "seq_shape"], "seq"),
        node("Transpose", ["seq"], "tok", perm=[0, 2, 1]),
        node("Transpose", ["tok"], "sf", perm=[1, 0, 2]),
        node("MatMul", ["sf", "win"], "qkv"),
        node("Add", ["qkv", "bin"], "qkvb"),
        node("Slice", ["qkvb", "s0", "s4", "ax"], "q"),
        node("Slice", ["qkvb", "s4", "s8", "ax"], "k"),
        node("Slice", ["qkvb", "s8", "s12", "ax"], "v"),
        node("Reshape", ["q", "heads_shape"], "qf"),
        node("Transpose", ["qf"], "qb", perm=[1, 0, 2]),
        node("Reshape", ["k", "heads_shape"], "kf"),
        node("Transpose", ["kf"], "kb", perm=[1, 2, 0]),
        node("Reshape", ["v", "heads_shape"], "vf"),
        node("Transpose", ["vf"], "vb", perm=[1, 0, 2]),
        node("MatMul", ["qb", "kb"], "scores"),
        node("Softmax", ["scores"], "attn", axis=-1),
        node("MatMul", ["attn", "vb"], "ctx"),
        node("Transpose", ["ctx"], "ctxt", perm=[1, 0, 2]),
        node("Reshape", ["ctxt", "merge_shape"], "ctxf"),
        node("MatMul", ["ctxf", "wo"], "proj"),
        node("Reshape", ["proj", "out_shape"], "out"),
        node("Transpose", ["out"], "outb", perm=[1, 0, 2]),
        node("Add", ["tok", "outb"], "res"),
        node("ReduceMean", ["res"], "pooled", axes=[1], keepdims=0),
        node("Gemm", ["pooled", "wf"], "fc"),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])
    y = helper.make_tensor_value_info("fc", TensorProto.FLOAT, ["N", 3])
    save(nodes, inits, "extract_mha", [x], [y], path)


if __name__ == "__main__":
    d = sys.argv[1] if len(sys.argv) > 1 else "tests/data"
    tokens(os.path.join(d, "extract_tokens.onnx"))
    cls(os.path.join(d, "extract_cls.onnx"))
    mha(os.path.join(d, "extract_mha.onnx"))
