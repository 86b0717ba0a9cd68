#!/usr/bin/python3
"""The suite's table from the jobs of several runs (their OUT/jobs.jsonl), without a server.

    /usr/bin/python3 deploy/eval/table.py --out DIR [--tasks t1,t2] [--methods m1,m2]
        [--title TEXT] RUN_DIR [RUN_DIR ...]

A suite that ran in pieces (one run.py per task or method, or an earlier run's jobs beside
new ones over the same store) has its jobs in several jobs.jsonl files; run.py's own
results.md holds only the jobs of its last invocation. This reads every RUN_DIR/jobs.jsonl,
a later RUN_DIR's job replacing an earlier one's for the same task and method, and writes
DIR/results.md (the table, the summary lines, the CV-chosen hyperparameters, then the auto
table: the CV pick as auto's rule and the auto jobs that ran), DIR/results.csv and
DIR/results.svg, as run.py does. Tasks and methods keep the --tasks / --methods order
(default: the tasks in first-seen order, the methods in the wire's enum order, which is the
order auto breaks CV ties in).
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report  # noqa: E402
import run  # noqa: E402

# the wire's Method enum order (proto/h2tdb.proto); run.all_methods reads it from the client
ENUM_ORDER = ["linear", "all", "head2toe", "knn", "ncm", "layer", "auto"]


def load(dirs):
    """{(task, method): job record}, later dirs replacing earlier ones; and the task order."""
    jobs, tasks = {}, []
    for d in dirs:
        path = os.path.join(d, "jobs.jsonl")
        if not os.path.exists(path):
            sys.exit("table: no %s (deploy/eval/run.py --out %s writes it)" % (path, d))
        with open(path) as f:
            for line in f:
                if line.strip():
                    r = json.loads(line)
                    jobs[(r["task"], r["method"])] = r
                    if r["task"] not in tasks:
                        tasks.append(r["task"])
    return jobs, tasks


def rows_of(jobs, tasks, methods):
    out = []
    for t in tasks:
        for m in methods:
            r = jobs.get((t, m))
            if r:
                info = r.get("info") or {}
                out.append({"dataset": r.get("dataset", ""), "task": t, "method": m,
                            "test_acc": r["test_acc"], "cv_acc": r.get("cv_acc"),
                            "params": run.params_text(info), "job": r.get("job"),
                            "seconds": (info.get("timings_s") or {}).get("total")})
    return report.Rows(out, tasks, methods)


def main(argv):
    opts = {"--out": None, "--tasks": "", "--methods": "",
            "--title": "h2tdb eval: test accuracy per task and method"}
    dirs = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in opts:
            if i + 1 >= len(argv):
                sys.exit("table: %s needs a value" % a)
            opts[a] = argv[i + 1]
            i += 2
        elif a.startswith("--"):
            sys.exit("table: unknown option %s" % a)
        else:
            dirs.append(a)
            i += 1
    if not opts["--out"] or not dirs:
        sys.exit(__doc__)
    jobs, seen = load(dirs)
    tasks = [t for t in opts["--tasks"].split(",") if t] or seen
    present = {m for _, m in jobs}
    methods = ([m for m in opts["--methods"].split(",") if m]
               or [m for m in ENUM_ORDER if m in present]
               + sorted(present - set(ENUM_ORDER)))
    rows = rows_of(jobs, tasks, methods)
    os.makedirs(opts["--out"], exist_ok=True)
    md = report.markdown(rows) + "\nThe CV pick as auto's rule, and the auto jobs:\n\n" + \
        report.auto_markdown(rows)
    for name, text in (("results.md", md), ("results.csv", report.csv_text(rows)),
                       ("results.svg", report.svg(rows, opts["--title"]))):
        path = os.path.join(opts["--out"], name)
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
