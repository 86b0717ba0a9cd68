#!/usr/bin/python3
"""How often cross-validation chooses what the test set would have chosen (docs/eval.md).

    /usr/bin/python3 deploy/eval/cvchoice.py --cells DIR NAME=DIR [NAME=DIR ...]
        [--methods m1,m2] [--tasks t1,t2]

Each NAME=DIR is a suite run (deploy/eval/run.py --out DIR, its jobs.jsonl) under one CV
setting (e.g. before=... with fold_kind=2 cv_repeats=1, after=... with the defaults). --cells
DIR is a run whose jobs had cell_test=1: every grid cell's test accuracy, which does not
depend on the folds, so it serves every setting with the same grids.

Two measures per setting, over the tasks and methods that setting ran:
 - among methods: per task, the method with the best CV accuracy (ties: the first in
   --methods order; auto is left out, being that very choice) against the test-best method;
   counted over the tasks where every --methods method ran.
 - among hyperparameters: per (task, method) with a grid of more than one cell, the cell the
   job chose against the test-best cell of the --cells run (the same task and method).
A choice is a hit when its test accuracy equals the best one (ties are hits); the loss is the
test accuracy given up, in points. Prints a markdown table.
"""
import json
import os
import sys

ORDER = ["linear", "ncm", "knn", "all", "head2toe", "layer"]


def load(d):
    path = os.path.join(d, "jobs.jsonl")
    if not os.path.exists(path):
        sys.exit("cvchoice: no %s (deploy/eval/run.py --out %s writes it)" % (path, d))
    out = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                out[(r["task"], r["method"])] = r
    return out


def chosen_cell(info):
    """(lambda row, keep column) of the cell a result chose, or None without a grid."""
    lams, keeps = info.get("lambdas") or [], info.get("keeps") or []
    if len(lams) * max(len(keeps), 1) <= 1:
        return None
    want = info.get("knn_k") if info.get("knn_k") else info.get("lambda")
    li = next((i for i, v in enumerate(lams) if v == want), None)
    fl = info.get("final_l2s")
    ki = next((i for i, v in enumerate(keeps) if v == info.get("keep")
               and (not fl or fl[i] == info.get("final_l2"))), None)
    if li is None or ki is None:
        return None
    return li, ki


def same_grid(a, b):
    return all(a.get(k) == b.get(k) for k in ("lambdas", "keeps", "final_l2s"))


def methods_measure(jobs, methods, tasks):
    hits = n = 0
    losses = []
    for t in tasks:
        rs = [jobs.get((t, m)) for m in methods]
        if any(r is None for r in rs):
            continue
        pick = max(range(len(rs)), key=lambda i: (rs[i]["cv_acc"], -i))
        best = max(r["test_acc"] for r in rs)
        loss = 100 * (best - rs[pick]["test_acc"])
        n += 1
        hits += loss <= 1e-9
        losses.append((loss, t))
    return hits, n, losses


def cells_measure(jobs, cells, methods, tasks):
    per = {}
    for t in tasks:
        for m in methods:
            r, c = jobs.get((t, m)), cells.get((t, m))
            if r is None or c is None or "cell_test" not in c["info"]:
                continue
            if not same_grid(r["info"], c["info"]):
                continue
            at = chosen_cell(r["info"])
            if at is None:
                continue
            ct = c["info"]["cell_test"]
            best = max(max(row) for row in ct)
            loss = 100 * (best - ct[at[0]][at[1]])
            h, k, ls = per.get(m, (0, 0, []))
            per[m] = (h + (loss <= 1e-9), k + 1, ls + [(loss, t)])
    return per


def fmt_loss(losses):
    if not losses:
        return "-"
    worst = max(losses)
    if worst[0] <= 1e-9:
        return "0.00 / 0.00"
    return "%.2f / %.2f (%s)" % (sum(x for x, _ in losses) / len(losses), worst[0], worst[1])


def main(argv):
    cells_dir, runs, methods, tasks = None, [], ORDER, None
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-h", "--help"):
            sys.stdout.write(__doc__)
            return 0
        if a in ("--cells", "--methods", "--tasks") and i + 1 < len(argv):
            v = argv[i + 1]
            if a == "--cells":
                cells_dir = v
            elif a == "--methods":
                methods = [m for m in v.split(",") if m]
            else:
                tasks = [t for t in v.split(",") if t]
            i += 2
            continue
        name, eq, d = a.partition("=")
        if not eq:
            sys.exit("cvchoice: want NAME=DIR, got '%s' (try --help)" % a)
        runs.append((name, d))
        i += 1
    if not runs:
        sys.exit("cvchoice: no runs given (try --help)")
    cells = load(cells_dir) if cells_dir else {}
    print("| setting | CV's method = test-best (tasks) | points lost: mean / worst "
          "| CV's cell = test-best cell (jobs) | points lost: mean / worst |")
    print("|---|---:|---|---:|---|")
    detail = []
    for name, d in runs:
        jobs = load(d)
        ts = tasks or sorted({t for t, _ in jobs})
        h, n, ls = methods_measure(jobs, methods, ts)
        per = cells_measure(jobs, cells, methods, ts)
        ch = sum(v[0] for v in per.values())
        cn = sum(v[1] for v in per.values())
        cl = [x for v in per.values() for x in v[2]]
        print("| %s | %d of %d | %s | %d of %d | %s |" % (name, h, n, fmt_loss(ls), ch, cn,
                                                      fmt_loss(cl)))
        for m in methods:
            if m in per:
                detail.append("| %s | %s | %d of %d | %s |" % (name, m, per[m][0], per[m][1],
                                                             fmt_loss(per[m][2])))
    if detail:
        print()
        print("| setting | method | CV's cell = test-best cell | points lost: mean / worst |")
        print("|---|---|---:|---|")
        print("\n".join(detail))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
