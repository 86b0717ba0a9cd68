"""Shared helpers of the conformance scripts: the tensor dump format and deterministic inputs.

A dump is a folder: index.tsv (one line per tensor: name TAB shape as d0,d1,... TAB file) and
one raw little-endian float32 file per tensor, in C order. bench/onnx_dump (h2tdb's executor),
ort_run.js (ONNX Runtime) and tfjs_run.js (tfjs) all write it.
"""
import os

import numpy as np


def read_dump(folder):
    out = {}
    with open(os.path.join(folder, "index.tsv")) as f:
        for line in f:
            name, shape, fname = line.rstrip("\n").split("\t")
            dims = tuple(int(d) for d in shape.split(",")) if shape else ()
            arr = np.fromfile(os.path.join(folder, fname), dtype="<f4")
            if arr.size != int(np.prod(dims)):
                raise SystemExit("%s: %s holds %d floats, shape %s" % (folder, name, arr.size, dims))
            out[name] = arr.reshape(dims)
    return out


def write_dump(folder, tensors):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "index.tsv"), "w") as idx:
        for i, (name, arr) in enumerate(tensors):
            fname = "t%04d.f32" % i
            np.ascontiguousarray(arr, dtype="<f4").tofile(os.path.join(folder, fname))
            idx.write("%s\t%s\t%s\n" % (name, ",".join(str(d) for d in arr.shape), fname))
