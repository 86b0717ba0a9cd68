#!/usr/bin/python3
"""Write tests/data/extract_tiny.onnx, the model of the extraction tests (tests/test_extract.c).

    /usr/bin/python3 tests/data/make_extract_tiny.py tests/data/extract_tiny.onnx

input x: N x 1 x 8 x 8 (dynamic batch)
  conv = Conv(x, W = [[[[1]]], [[[-1]]]], B = [0.5, 0])   N x 2 x 8 x 8: (x + 0.5, -x)
  relu = Relu(conv)                                      N x 2 x 8 x 8
  gap  = GlobalAveragePool(relu)                         N x 2 x 1 x 1
  flat = Flatten(gap)                                    N x 2 (a pure reshape: not a layer)
  fc   = Gemm(flat, [[1, 2, 0], [-1, 0, 3]], [0.25, -0.5, 1])   N x 3
metadata_props h2tdb.preprocess = "scale=0,1". Deterministic: the same bytes every run.
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def main(out):
    inits = [
        numpy_helper.from_array(np.array([1, -1], np.float32).reshape(2, 1, 1, 1), "conv_w"),
        numpy_helper.from_array(np.array([0.5, 0], np.float32), "conv_b"),
        numpy_helper.from_array(np.array([[1, 2, 0], [-1, 0, 3]], np.float32), "fc_w"),
        numpy_helper.from_array(np.array([0.25, -0.5, 1], np.float32), "fc_b"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "conv_w", "conv_b"], ["conv"], name="conv"),
        helper.make_node("Relu", ["conv"], ["relu"], name="relu"),
        helper.make_node("GlobalAveragePool", ["relu"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flat", axis=1),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["fc"], name="fc"),
    ]
    save(nodes, inits, "extract_tiny", out)


def save(nodes, inits, name, out):
    """The graph x (N x 1 x 8 x 8) -> fc (N x 3) at opset 13 with h2tdb.preprocess scale=0,1,
    checked and written to out (also used by make_extract_affine.py)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])
    y = helper.make_tensor_value_info("fc", TensorProto.FLOAT, ["N", 3])
    g = helper.make_graph(nodes, name, [x], [y], inits)
    m = helper.make_model(g, producer_name="h2tdb-tests",
                          opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    helper.set_model_props(m, {"h2tdb.preprocess": "scale=0,1"})
    onnx.checker.check_model(m)
    with open(out, "wb") as f:
        f.write(m.SerializeToString())


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/data/extract_tiny.onnx")
