#!/usr/bin/python3
"""classify_compare.py PREDICT.json ORT.f32 METHOD [COUNT]: the exported classifier's
probabilities (ONNX Runtime, N x classes float32) against `h2tdb predict --json` on the same
samples (the first COUNT of predict's, default all): every
predicted class must be equal and every probability within 1e-4. The predicted class is the
classifier's "label" output where it has one (ORT.f32.label, N int64: a knn head's vote, whose
ties the vote shares alone do not decide), else the arg max of the probabilities (the first on
ties, as predict takes it). Prints one line; exit 1 when either fails."""
import json
import os
import sys

import numpy as np


def main(pred_path, ort_path, method, count=None):
    with open(pred_path) as f:
        pred = json.load(f)["predictions"]
    if count is not None:
        pred = pred[:int(count)]
    want = np.array([p["probs"] for p in pred], dtype=np.float64)
    classes = np.array([p["class"] for p in pred])
    got = np.fromfile(ort_path, dtype="<f4").astype(np.float64)
    if got.size != want.size:
        print(f"{method}: ORT gave {got.size} probabilities, predict {want.size}")
        return 1
    got = got.reshape(want.shape)
    diff = float(np.max(np.abs(got - want)))
    if os.path.exists(ort_path + ".label"):
        label = np.fromfile(ort_path + ".label", dtype="<i8")
        src = "label output"
    else:
        label = np.argmax(got, axis=1)
        src = "arg max"
    same = int(np.sum(label == classes)) if label.size == classes.size else 0
    ok = diff <= 1e-4 and same == len(classes)
    note = ""
    if label.size == classes.size and same < len(classes):
        # a knn label that differs where predict's class has the largest vote share too: a tie
        # of votes, decided by summed cosines that may differ only by rounding
        idx = np.nonzero(label != classes)[0]
        ties = int(np.sum(got[idx, classes[idx]] == got[idx].max(axis=1)))
        note = f" ({ties} of the {len(idx)} differing are ties of the largest probability)"
    print(f"{method}: {len(classes)} samples, predictions ({src}) equal {same}/{len(classes)}, "
          f"max |p_ort - p_predict| {diff:.2e} {'PASS' if ok else 'FAIL'}{note}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
