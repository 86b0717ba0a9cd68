#!/usr/bin/python3
"""Write tests/data/extract_affine.onnx, the model of the derived-layer tests
(tests/test_extract_derive.c): layers that are affine in other layers, and some that are not.

    /usr/bin/python3 tests/data/make_extract_affine.py tests/data/extract_affine.onnx

input x: N x 1 x 8 x 8 (dynamic batch); at T = 16 a 4-channel 8 x 8 map pools to a 2 x 2 grid
  c1 = Conv 3x3 pad 1 (1 -> 4)                 4 x 8 x 8
  b1 = BatchNormalization(c1)                  affine in c1
  r1 = Clip(b1, 0, 6)
  p1 = Pad(r1) 1 row and column after          4 x 9 x 9: the same 4 x 4 windows as r1
  d1 = Conv 3x3 depthwise stride 2 (p1)        4 x 4 x 4
  b2 = BatchNormalization(d1)                  affine in d1
  e1 = Conv 1x1 stride 2 (r1)                  4 x 4 x 4
  b3 = BatchNormalization(e1)                  affine in e1
  a1 = Add(b2, b3)                             sum
  p2 = Pad(r1) 1 on every side                 4 x 10 x 10: 5 x 5 windows, not r1's
  c2 = Conv 3x3 stride 2 (p2)                  4 x 4 x 4
  a2 = Add(a1, c2)                             sum (of a derived and a pooled layer)
  q  = Add(a2, per-channel constant)           broadcast: pooled from its tensor
  h  = Conv 1x1 (4 -> 16) (q)                  16 x 4 x 4: C >= T, global average
  hp = Pad(h) 1 on every side                  16 x 6 x 6: global average, h's times 16/36
  g  = GlobalAveragePool(hp)
  fc = Gemm(Flatten(g)) -> N x 3
Weights from a fixed generator; metadata h2tdb.preprocess = "scale=0,1". The same bytes every
run.
"""
import os
import sys

import numpy as np
from onnx import helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_extract_tiny  # noqa: E402  (save: the shared graph wrapper)


def main(out):
    rng = np.random.RandomState(7)
    inits = []

    def t(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr, np.float32), name))
        return name

    def ti(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr, np.int64), name))
        return name

    def bn(name, x, c):
        return helper.make_node(
            "BatchNormalization",
            [x, t(name + "_s", rng.uniform(0.5, 2.0, c)), t(name + "_b", rng.uniform(-1, 1, c)),
             t(name + "_m", rng.uniform(-0.5, 0.5, c)), t(name + "_v", rng.uniform(0.2, 3.0, c))],
            [name], name=name, epsilon=1e-3)

    nodes = [
        helper.make_node("Conv", ["x", t("c1_w", rng.uniform(-1, 1, (4, 1, 3, 3))),
                                  t("c1_b", rng.uniform(-0.5, 0.5, 4))], ["c1"], name="c1",
                         pads=[1, 1, 1, 1]),
        bn("b1", "c1", 4),
        helper.make_node("Clip", ["b1", t("lo", 0.0), t("hi", 6.0)], ["r1"], name="r1"),
        helper.make_node("Pad", ["r1", ti("p1_pads", [0, 0, 0, 0, 0, 0, 1, 1])], ["p1"],
                         name="p1"),
        helper.make_node("Conv", ["p1", t("d1_w", rng.uniform(-1, 1, (4, 1, 3, 3)))], ["d1"],
                         name="d1", group=4, strides=[2, 2]),
        bn("b2", "d1", 4),
        helper.make_node("Conv", ["r1", t("e1_w", rng.uniform(-1, 1, (4, 4, 1, 1)))], ["e1"],
                         name="e1", strides=[2, 2]),
        bn("b3", "e1", 4),
        helper.make_node("Add", ["b2", "b3"], ["a1"], name="a1"),
        helper.make_node("Pad", ["r1", ti("p2_pads", [0, 0, 1, 1, 0, 0, 1, 1])], ["p2"],
                         name="p2"),
        helper.make_node("Conv", ["p2", t("c2_w", rng.uniform(-1, 1, (4, 4, 3, 3)))], ["c2"],
                         name="c2", strides=[2, 2]),
        helper.make_node("Add", ["a1", "c2"], ["a2"], name="a2"),
        helper.make_node("Add", ["a2", t("q_c", rng.uniform(-1, 1, (1, 4, 1, 1)))], ["q"],
                         name="q"),
        helper.make_node("Conv", ["q", t("h_w", rng.uniform(-1, 1, (16, 4, 1, 1)))], ["h"],
                         name="h"),
        helper.make_node("Pad", ["h", ti("hp_pads", [0, 0, 1, 1, 0, 0, 1, 1])], ["hp"],
                         name="hp"),
        helper.make_node("GlobalAveragePool", ["hp"], ["g"], name="g"),
        helper.make_node("Flatten", ["g"], ["flat"], name="flat", axis=1),
        helper.make_node("Gemm", ["flat", t("fc_w", rng.uniform(-1, 1, (16, 3))),
                                  t("fc_b", rng.uniform(-1, 1, 3))], ["fc"], name="fc"),
    ]
    make_extract_tiny.save(nodes, inits, "extract_affine", out)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/extract_affine.onnx")
