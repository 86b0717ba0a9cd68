#!/usr/bin/python3
"""Deterministic input for a model: make_input.py MODEL.onnx OUT.f32 [--batch N] [--image P].

Writes N x C x H x W float32 (C order, little-endian) and prints the shape as N,C,H,W.
Sample 0 is IMAGE (bilinear-resized, scaled per the model's h2tdb.preprocess metadata) when
given, the others seeded uniform noise over the same range, so the run is reproducible.
"""
import argparse
import sys

import numpy as np
import onnx


def preprocess_of(model):
    props = {p.key: p.value for p in model.metadata_props}
    spec = {"scale": "0,1"}
    for item in props.get("h2tdb.preprocess", "").split():
        k, _, v = item.partition("=")
        spec[k] = v
    lo, hi = (float(x) for x in spec["scale"].split(","))
    mean = [float(x) for x in spec["mean"].split(",")] if "mean" in spec else None
    std = [float(x) for x in spec["std"].split(",")] if "std" in spec else None
    return lo, hi, mean, std


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--image")
    ap.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args()
    model = onnx.load(a.model, load_external_data=False)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    c, h, w = (d.dim_value for d in dims[1:])
    lo, hi, mean, std = preprocess_of(model)
    rng = np.random.default_rng(a.seed)
    x = rng.uniform(0.0, 1.0, size=(a.batch, c, h, w))
    if a.image:
        from PIL import Image
        img = Image.open(a.image).convert("RGB").resize((w, h), Image.BILINEAR)
        x[0] = np.asarray(img, dtype=np.float64).transpose(2, 0, 1) / 255.0
    x = lo + x * (hi - lo)
    if mean is not None:
        x = (x - np.array(mean).reshape(1, c, 1, 1)) / np.array(std).reshape(1, c, 1, 1)
    x.astype("<f4").tofile(a.out)
    print("%d,%d,%d,%d" % (a.batch, c, h, w))
    return 0


if __name__ == "__main__":
    sys.exit(main())
