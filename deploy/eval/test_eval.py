#!/usr/bin/python3
"""Checks of the evaluation suite's pure parts (tests/test_eval.c runs this in make test):
the generators' sample-id selections and class maps, and the results table, CV-choice
count, CSV and SVG. Needs only the standard library (gen.py imports PIL when it renders)."""
import csv
import io
import json
import os
import sys
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen  # noqa: E402
import report  # noqa: E402

FAILS = []


def check(cond, what):
    if not cond:
        FAILS.append(what)
        print("FAIL: " + what)


def ids_of(sel):
    """Sample ids of an 'ids:' selection (the server's syntax: parts joined by '+', ranges
    inclusive)."""
    out = []
    for part in sel.split("+"):
        assert part.startswith("ids:") and len(part) < 256, part
        for r in part[4:].split(","):
            a, _, b = r.partition("-")
            out.extend(range(int(a), int(b or a) + 1))
    return out


def test_id_list():
    check(gen.id_list([5, 0, 1, 2, 7, 8]) == "ids:0-2,5,7-8", "id_list runs")
    check(gen.id_list([3]) == "ids:3", "id_list single")
    check(ids_of(gen.id_list([9, 4, 5, 6])) == [4, 5, 6, 9], "id_list round trip")
    many = list(range(0, 6000, 2))  # no runs: 3000 single ids, far over one part's limit
    sel = gen.id_list(many)
    check(sel.count("+ids:") > 10 and ids_of(sel) == many, "id_list split into parts")
    check(all(len(p) <= gen.PART_MAX + 4 for p in sel.split("+")), "parts under the limit")


def test_folder_order():
    # bytewise: upper case before lower case, '-' (0x2d) before digits, "p10" before "p2"
    classes = ["p2-a", "p10-a", "b", "B", "p2-a", "p-z", "b"]
    sid = gen.folder_order(classes)
    names = sorted(set(classes), key=lambda s: s.encode())
    check(names == ["B", "b", "p-z", "p10-a", "p2-a"], "bytewise class order %s" % names)
    # sample numbers within a class keep their order (NNNNN.png sorts numerically)
    check(sid[3] == 0, "B is the first class: sample 3 -> id 0: %s" % sid)
    check(sid[2] == 1 and sid[6] == 2, "b's samples 2, 6 -> ids 1, 2: %s" % sid)
    check(sid[5] == 3 and sid[1] == 4, "p-z then p10-a: %s" % sid)
    check(sid[0] == 5 and sid[4] == 6, "p2-a last, in sample order: %s" % sid)
    check(sorted(sid) == list(range(len(classes))), "a permutation: %s" % sid)


def test_attr_tasks():
    classes = ["p1-o0", "p0-o1", "p1-o1", "p0-o0", "p1-o0"]
    tasks = gen.attr_tasks("toy", classes, 3, [("pos", 0, lambda v: "x" + v[1:], "pos"),
                                                ("ori", 1, lambda v: "o" + v[1:], "ori")])
    check([t["name"] for t in tasks] == ["toy-pos", "toy-ori"], "task names")
    sid = gen.folder_order(classes)
    check(ids_of(tasks[0]["train"]) == sorted(sid[:3]), "train = the first 3 sample numbers")
    check(ids_of(tasks[0]["test"]) == sorted(sid[3:]), "test = the rest")
    check(tasks[0]["map"] == {"p0-o0": "x0", "p0-o1": "x0", "p1-o0": "x1", "p1-o1": "x1"},
          "map onto the first part: %s" % tasks[0]["map"])
    check(tasks[1]["map"]["p1-o1"] == "o1" and tasks[1]["n_classes"] == 2, "map onto the second")


ROWS = [
    {"task": "a", "method": "linear", "test_acc": 0.50, "cv_acc": 0.60, "params": "lambda 0.1"},
    {"task": "a", "method": "all", "test_acc": 0.70, "cv_acc": 0.65, "params": "lambda 0.01"},
    {"task": "a", "method": "head2toe", "test_acc": 0.60, "cv_acc": 0.62, "params": "keep 0.1"},
    {"task": "a", "method": "auto", "test_acc": 0.70, "cv_acc": 0.99, "params": "winner all"},
    {"task": "b", "method": "linear", "test_acc": 0.80, "cv_acc": 0.90, "params": ""},
    {"task": "b", "method": "all", "test_acc": 0.90, "cv_acc": 0.85, "params": ""},
    {"task": "b", "method": "head2toe", "test_acc": 0.85, "cv_acc": 0.80, "params": ""},
    {"task": "b", "method": "auto", "test_acc": 0.80, "cv_acc": 0.90, "params": ""},
]


def test_cv_choice():
    ch = report.cv_choice(ROWS)
    # a: CV picks all (0.65; auto is a CV choice itself and not a candidate) = test-best
    # b: CV picks linear (0.90), test-best is all (0.90): a miss losing 10 points
    check([(c[0], c[1], c[4]) for c in ch] == [("a", "all", True), ("b", "linear", False)],
          "cv choice %s" % ch)
    check(abs(ch[1][5] - 10.0) < 1e-9, "regret in points %s" % ch[1][5])
    tie = [{"task": "t", "method": "x", "test_acc": 0.5, "cv_acc": 0.7},
           {"task": "t", "method": "y", "test_acc": 0.9, "cv_acc": 0.7}]
    check(report.cv_choice(tie)[0][1] == "x", "CV ties go to the first method")


def test_means_and_summary():
    m = report.means(ROWS)
    check(abs(m["all"] - 0.80) < 1e-12 and abs(m["head2toe"] - 0.725) < 1e-12, "means %s" % m)
    part = ROWS + [{"task": "c", "method": "linear", "test_acc": 1.0, "cv_acc": 1.0}]
    check("all" not in report.means(part), "no mean for a method missing a task")
    s = report.summary(ROWS)
    check(s[0] == "CV choice among methods = test-best method on 1 of 2 tasks (mean loss "
          "5.00 points, worst 10.00 on b)", "summary line %s" % s[0])
    # auto: a 70 = best 70 (close); b 80 vs best 90 (not close) and = linear 80 (not below)
    check(s[1] == "auto within 1 point of the test-best method on 1 of 2 tasks; below linear "
          "on 0", "auto line %s" % s[1])
    # the CV pick as auto's rule: a picks all (= best); b picks linear, 10 below all, = linear
    check(s[2] == "the CV pick (auto's rule over these jobs) within 1 point of the test-best "
          "method on 1 of 2 tasks; below linear on 0", "auto rule line %s" % s[2])
    check("head2toe 72.50 vs all layers 80.00 (-7.50 points)" in s[3], "h2t vs all %s" % s[3])


def test_auto_rule():
    p = report.auto_rule(ROWS)
    check([(x["task"], x["pick"], x["best_method"], x["auto"]) for x in p] ==
          [("a", "all", "all", 0.70), ("b", "linear", "all", 0.80)], "auto rule %s" % p)
    check(abs(p[0]["to_linear"] - 20.0) < 1e-9 and abs(p[1]["to_best"] - 10.0) < 1e-9,
          "auto rule distances %s" % p)
    # a pick below linear is counted: CV prefers head2toe (test 0.4) over linear (0.5)
    low = [{"task": "c", "method": "linear", "test_acc": 0.5, "cv_acc": 0.6},
           {"task": "c", "method": "head2toe", "test_acc": 0.4, "cv_acc": 0.7}]
    check(report.summary(low)[1].endswith("on 0 of 1 tasks; below linear on 1"),
          "below linear %s" % report.summary(low))
    md = report.auto_markdown(ROWS).splitlines()
    check(md[2] == "| a | all 70.00 | all 70.00 | 0.00 | +20.00 | 70.00 |", md[2])
    check(md[3] == "| b | all 90.00 | linear 80.00 | -10.00 | +0.00 | 80.00 |", md[3])


def test_markdown_csv():
    md = report.markdown(ROWS)
    lines = md.splitlines()
    check(lines[0] == "| task | linear | all | head2toe | auto | CV pick |", lines[0])
    check(lines[2] == "| a | 50.00 | **70.00** | 60.00 | **70.00** | all |", lines[2])
    check(lines[3] == "| b | 80.00 | **90.00** | 85.00 | 80.00 | linear (-10.00) |", lines[3])
    check(lines[4].startswith("| **suite mean** | 65.00 | **80.00** | 72.50 | 75.00 |"), lines[4])
    check("| a | lambda 0.1 (60.00) | lambda 0.01 (65.00) | keep 0.1 (62.00) |" in md,
          "hyperparameter table")
    rows = list(csv.reader(io.StringIO(report.csv_text(ROWS))))
    check(rows[0][:4] == ["dataset", "task", "method", "test_acc"] and len(rows) == 9,
          "csv %s" % rows[:2])
    check(rows[2][2] == "all" and rows[2][3] == "0.700000", "csv row %s" % rows[2])


def test_svg():
    s = report.svg(ROWS, "t <&> 'x'")
    root = ET.fromstring(s)  # well-formed, the title escaped
    ns = "{http://www.w3.org/2000/svg}"
    bars = [r for r in root.iter(ns + "rect") if r.find(ns + "title") is not None]
    # 2 tasks + the suite mean, 4 methods each
    check(len(bars) == 12, "bars %d" % len(bars))
    hs = {b.find(ns + "title").text: float(b.get("height")) for b in bars}
    check(abs(hs["a, all: 70.00%"] - 0.7 * 360) < 0.06, "bar height %s" % hs)
    check(abs(hs["suite mean, head2toe: 72.50%"] - 0.725 * 360) < 0.06, "mean bar %s" % hs)



def test_table_merge():
    import tempfile
    import table
    with tempfile.TemporaryDirectory() as d:
        def run_dir(name, recs):
            os.makedirs(os.path.join(d, name))
            with open(os.path.join(d, name, "jobs.jsonl"), "w") as f:
                f.write("".join(json.dumps(r) + "\n" for r in recs))
            return os.path.join(d, name)

        def job(t, m, test, cv):
            return {"task": t, "method": m, "test_acc": test, "cv_acc": cv,
                    "info": {"method": m, "timings_s": {"total": 2.0}}}
        # an earlier run: linear on b; a later one: head2toe on a, and linear on b again
        one = run_dir("one", [job("b", "linear", 0.5, 0.5)])
        two = run_dir("two", [job("a", "head2toe", 0.7, 0.7), job("b", "linear", 0.6, 0.6)])
        out = os.path.join(d, "out")
        import contextlib
        with contextlib.redirect_stdout(io.StringIO()):
            table.main(["--out", out, "--tasks", "a,b", two, one, two])
        md = open(os.path.join(out, "results.md")).read().splitlines()
        # the methods in enum order (linear before head2toe though the first task's first
        # row is head2toe's), the tasks as asked, the later run's linear on b
        check(md[0] == "| task | linear | head2toe | CV pick |", md[0])
        check(md[2] == "| a | - | **70.00** | head2toe |", md[2])
        check(md[3] == "| b | **60.00** | - | linear |", md[3])
        check(os.path.exists(os.path.join(out, "results.svg")), "table svg")


def test_train_opts():
    import run
    check(run.opt_value("2") == 2 and run.opt_value("1e-4") == 1e-4, "opt_value numbers")
    check(run.opt_value("0.01,0.1,1") == [0.01, 0.1, 1], "opt_value list")
    check(run.opt_value("abc") == "abc", "opt_value text")
    info = {"method": "head2toe", "lambdas": [1e-4, 1e-5], "lambda": 1e-4,
            "keeps": [0.01, 0.01, 1.0, 1.0], "keep": 1.0, "final_l2s": [1e-3, 1e-6, 1e-3, 1e-6],
            "final_l2": 1e-3, "select_group": "layer"}
    t = run.params_text(info)
    check(t == "lambda 0.0001, keep 1, final L2 0.001, whole layers", "params_text: %s" % t)


def test_resolve_source():
    import tempfile
    import run
    with tempfile.TemporaryDirectory() as d:
        ds = os.path.join(d, "shapes")
        os.makedirs(os.path.join(ds, "images"))
        check(run.resolve_source(ds, "folder:images") == "folder:" + os.path.join(ds, "images"),
              "relative folder source")
        check(run.resolve_source(ds, "folder:/no/such/dir/images") ==
              "folder:" + os.path.join(ds, "images"), "moved folder source")
        check(run.resolve_source(ds, "folder:" + d) == "folder:" + d, "existing absolute source")
        check(run.resolve_source(ds, "idx:/usr/share/x") == "idx:/usr/share/x", "idx source")
        # a data set written by gen.py, then moved: load_datasets finds its images
        with open(os.path.join(ds, "tasks.json"), "w") as f:
            json.dump({"name": "shapes", "source": "folder:/gone/shapes/images", "tasks": []}, f)
        got = run.load_datasets(d, [])
        check(got[0]["source"] == "folder:" + os.path.join(ds, "images"),
              "load_datasets resolves: %s" % got[0]["source"])


def test_cvchoice():
    import contextlib
    import tempfile
    import cvchoice

    def job(t, m, cv, test, info):
        return {"task": t, "method": m, "cv_acc": cv, "test_acc": test, "info": info}

    lin = {"lambdas": [1e-2, 1e-4], "keeps": [1.0], "lambda": 1e-4, "keep": 1.0}
    # task a: CV picks all (0.8), test-best is linear: 2 points lost; task b: a hit
    after = [job("a", "linear", 0.7, 0.62, dict(lin)), job("a", "all", 0.8, 0.60, dict(lin)),
             job("b", "linear", 0.9, 0.91, dict(lin)), job("b", "all", 0.8, 0.85, dict(lin))]
    cells = [job(j["task"], j["method"], 0, 0, dict(lin, cell_test=[[0.9], [0.8]]))
             for j in after]
    with tempfile.TemporaryDirectory() as d:
        for name, recs in (("after", after), ("cells", cells)):
            os.makedirs(os.path.join(d, name))
            with open(os.path.join(d, name, "jobs.jsonl"), "w") as f:
                f.write("".join(json.dumps(r) + "\n" for r in recs))
        h, n, ls = cvchoice.methods_measure(cvchoice.load(os.path.join(d, "after")),
                                           ["linear", "all"], ["a", "b"])
        check((h, n) == (1, 2) and abs(max(ls)[0] - 2.0) < 1e-9, "cv methods %s" % ((h, n, ls),))
        per = cvchoice.cells_measure(cvchoice.load(os.path.join(d, "after")),
                                     cvchoice.load(os.path.join(d, "cells")), ["linear", "all"],
                                     ["a", "b"])
        # every job chose lambda 1e-4 (row 1, test 0.8) where row 0 tests 0.9: 10 points lost
        check(per["linear"][:2] == (0, 2) and abs(per["linear"][2][0][0] - 10) < 1e-9,
              "cv cells %s" % per)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            cvchoice.main(["--cells", os.path.join(d, "cells"), "--methods", "linear,all",
                           "after=" + os.path.join(d, "after")])
        check("| after | 1 of 2 | 1.00 / 2.00 (a) | 0 of 4 | 10.00 / 10.00" in out.getvalue(),
              "cvchoice table: %s" % out.getvalue())


if __name__ == "__main__":
    for name, fn in sorted(globals().items()):
        if name.startswith("test_") and callable(fn):
            fn()
    print("eval tests: %s" % ("%d failed" % len(FAILS) if FAILS else "ok"))
    sys.exit(1 if FAILS else 0)
