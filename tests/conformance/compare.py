#!/usr/bin/python3
"""compare.py REF_DIR GOT_DIR [--tol 1e-3] [--ref-name R] [--got-name G] [--require-all]
                  [--got-only] [--quiet] [--row FILE]

Compares two tensor dumps (common.py) tensor by tensor: error = max |got - ref| divided by
max |ref| (the tensor's largest magnitude; absolute when that is 0). One line per tensor in
REF order, then a summary. Exit 1 on any mismatch, on a shape difference, or (with
--require-all) when GOT lacks a tensor REF has.

--got-only compares the tensors GOT holds (a dump of the layer rule's tensors against a
reference that computed every tensor); each of them must be in REF. When GOT_DIR has a
layers.tsv (onnx_dump writes it: the layer rule's tensors), every tensor listed there must be
in GOT and in REF, and the summary counts them. --quiet prints only the lines that are not
ok and the summary; --row appends "compared TAB layers compared TAB layers TAB worst rel.err
TAB worst tensor TAB PASS|FAIL" to FILE (ort_compare.sh --table builds its table from it)."""
import argparse
import os
import sys

import numpy as np

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import read_dump  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ref")
    ap.add_argument("got")
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--ref-name", default="ref")
    ap.add_argument("--got-name", default="got")
    ap.add_argument("--require-all", action="store_true")
    ap.add_argument("--got-only", action="store_true")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--row")
    a = ap.parse_args()
    ref, got = read_dump(a.ref), read_dump(a.got)
    layers = []
    lpath = os.path.join(a.got, "layers.tsv")
    if os.path.exists(lpath):
        with open(lpath) as f:
            layers = [line.split("\t")[0] for line in f if line.strip()]
    bad = missing = ok = 0
    worst = (0.0, "")
    for name in layers:
        for side, dump in ((a.got_name, got), (a.ref_name, ref)):
            if name not in dump:
                bad += 1
                print("MISSING  %-40s layer tensor not in %s" % (name, side))
    names = list(got) if a.got_only else list(ref)
    for name in names:
        r, g = ref.get(name), got.get(name)
        if a.got_only and r is None:
            bad += 1
            print("NOREF    %-40s %s has it, %s does not" % (name, a.got_name, a.ref_name))
            continue
        if g is None:
            missing += 1
            print("MISSING  %-40s %s has it, %s does not" % (name, a.ref_name, a.got_name))
            continue
        if g.shape != r.shape:
            bad += 1
            print("SHAPE    %-40s %s %s vs %s %s" % (name, a.ref_name, r.shape, a.got_name, g.shape))
            continue
        if not np.all(np.isfinite(g)) or not np.all(np.isfinite(r)):
            bad += 1
            print("NONFINITE %-39s" % name)
            continue
        scale = float(np.max(np.abs(r))) if r.size else 0.0
        err = float(np.max(np.abs(g.astype(np.float64) - r))) if r.size else 0.0
        rel = err / scale if scale > 0 else err
        status = "ok" if rel <= a.tol else "MISMATCH"
        if rel > a.tol:
            bad += 1
        else:
            ok += 1
        if rel >= worst[0]:
            worst = (rel, name)
        if not a.quiet or rel > a.tol:
            print("%-8s %-40s %-18s max|ref| %-11.4g rel.err %.3g" %
                  (status, name, "x".join(str(d) for d in r.shape), scale, rel))
    failed = bad or (missing and a.require_all)
    n_layers_ok = sum(1 for n in layers if n in got and n in ref)
    print("summary: %d tensors compared, %d ok, %d mismatched, %d missing in %s; "
          "worst rel.err %.3g (%s); tolerance %g: %s" %
          (ok + bad, ok, bad, missing, a.got_name, worst[0], worst[1], a.tol,
           "FAIL" if failed else "PASS"))
    if layers:
        print("summary: %d of the %d layer-rule tensors compared" % (n_layers_ok, len(layers)))
    if a.row:
        with open(a.row, "a") as f:
            f.write("%d\t%d\t%d\t%.3g\t%s\t%s\n" % (ok + bad, n_layers_ok, len(layers), worst[0],
                                                   worst[1], "FAIL" if failed else "PASS"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
