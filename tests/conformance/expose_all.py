#!/usr/bin/python3
"""expose_all.py IN.onnx OUT.onnx: a copy of the model whose graph outputs are every node
output (in node order, the original outputs first), so a runtime returns every tensor."""
import sys

import onnx
from onnx import TensorProto, helper


def main(argv):
    if len(argv) != 3:
        sys.stderr.write("usage: expose_all.py IN.onnx OUT.onnx\n")
        return 2
    m = onnx.load(argv[1])
    inferred = onnx.shape_inference.infer_shapes(m)
    elem = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    have = {o.name for o in m.graph.output}
    for node in m.graph.node:
        for name in node.output:
            if name and name not in have:
                t = elem.get(name, TensorProto.FLOAT)
                m.graph.output.append(helper.make_tensor_value_info(name, t, None))
                have.add(name)
    onnx.save(m, argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
