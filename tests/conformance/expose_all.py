#!/usr/bin/python3
"""expose_all.py IN.onnx OUT.onnx [--only NAMES]: a copy of the model whose graph outputs are
every node output (in node order, the original outputs first), so a runtime returns every
tensor. With --only, NAMES is a file of tensor names (one per line, the first tab-separated
field; bench/extract_full writes the layer rule's tensors so) and only those become outputs,
in the file's order after the original outputs; a name no node produces is an error."""
import argparse
import sys

import onnx
from onnx import TensorProto, helper


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--only")
    a = ap.parse_args()
    m = onnx.load(a.model)
    inferred = onnx.shape_inference.infer_shapes(m)
    elem = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    have = {o.name for o in m.graph.output}
    produced = [name for node in m.graph.node for name in node.output if name]
    if a.only:
        with open(a.only) as f:
            want = [line.rstrip("\n").split("\t")[0] for line in f if line.strip()]
        unknown = sorted(set(want) - set(produced))
        if unknown:
            sys.stderr.write("expose_all: %s: no node produces %s\n" %
                             (a.model, ", ".join(unknown[:5])))
            return 1
    else:
        want = produced
    for name in want:
        if name not in have:
            t = elem.get(name, TensorProto.FLOAT)
            m.graph.output.append(helper.make_tensor_value_info(name, t, None))
            have.add(name)
    onnx.save(m, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
