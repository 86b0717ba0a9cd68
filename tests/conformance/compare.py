#!/usr/bin/python3
"""compare.py REF_DIR GOT_DIR [--tol 1e-3] [--ref-name R] [--got-name G] [--require-all]

Compares two tensor dumps (common.py) tensor by tensor: error = max |got - ref| divided by
max |ref| (the tensor's largest magnitude; absolute when that is 0). One line per tensor in
REF order, then a summary. Exit 1 on any mismatch, on a shape difference, or (with
--require-all) when GOT lacks a tensor REF has."""
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
    a = ap.parse_args()
    ref, got = read_dump(a.ref), read_dump(a.got)
    bad = missing = ok = 0
    worst = (0.0, "")
    for name, r in ref.items():
        g = got.get(name)
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
        print("%-8s %-40s %-18s max|ref| %-11.4g rel.err %.3g" %
              (status, name, "x".join(str(d) for d in r.shape), scale, rel))
    failed = bad or (missing and a.require_all)
    print("summary: %d tensors compared, %d ok, %d mismatched, %d missing in %s; "
          "worst rel.err %.3g (%s); tolerance %g: %s" %
          (ok + bad, ok, bad, missing, a.got_name, worst[0], worst[1], a.tol,
           "FAIL" if failed else "PASS"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
