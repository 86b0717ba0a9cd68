#!/usr/bin/python3
"""Peer for bench/solver (a): scikit-learn LogisticRegression (lbfgs, multinomial) on the matrix
bench/solver wrote. argv: DIR n_train n_test d K C. Prints 'sklearn fit_s ACC acc N_ITER it'."""
import sys, time
import numpy as np
from sklearn.linear_model import LogisticRegression

d, ntr, nte, D, K, C = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
Xtr = np.fromfile(d + "/Xtr.f32", dtype=np.float32).reshape(ntr, D)
Xte = np.fromfile(d + "/Xte.f32", dtype=np.float32).reshape(nte, D)
ytr = np.fromfile(d + "/ytr.i32", dtype=np.int32)
yte = np.fromfile(d + "/yte.i32", dtype=np.int32)
clf = LogisticRegression(C=C, solver="lbfgs", max_iter=10000, tol=1e-4)
t = time.perf_counter()
clf.fit(Xtr, ytr)
t = time.perf_counter() - t
acc = float((clf.predict(Xte) == yte).mean())
print("sklearn %.4f %.6f %d" % (t, acc, int(np.max(clf.n_iter_))))
