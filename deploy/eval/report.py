"""The evaluation suite's results: the table (markdown, CSV, text) and the SVG chart.

Pure Python (no server, no PIL), so tests/eval_report_test.py checks it in `make test`.
A result row is a dict: task, dataset, method, test_acc, cv_acc (the cross-validated accuracy
of the chosen hyperparameters), params (the CV-chosen hyperparameters, text), job, seconds.

The CV choice across methods: on each task, the method whose chosen head has the highest CV
accuracy (ties: the first in method order), among the methods that are not themselves a CV
choice over methods (META: auto). It is a hit when its test accuracy equals the task's best
test accuracy among those methods; the regret is the points it loses to that best.
"""
import csv
import io

META = {"auto"}
# Bar colours: cli/report.c's palette (the head2toe report), in method order.
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
          "#17becf", "#bcbd22", "#7f7f7f"]


class Rows(list):
    """Rows with a fixed task and method order (index keeps it instead of the first-seen
    order): for a table merged from several runs, where no one order of the rows gives both."""

    def __init__(self, rows, tasks, methods):
        super().__init__(rows)
        self.tasks, self.methods = list(tasks), list(methods)


def index(rows):
    """(tasks, methods, {(task, method): row}): the orders of a Rows, else first-seen; only
    tasks and methods that have a row."""
    tasks, methods, by = [], [], {}
    for r in rows:
        if r["task"] not in tasks:
            tasks.append(r["task"])
        if r["method"] not in methods:
            methods.append(r["method"])
        by[(r["task"], r["method"])] = r
    if isinstance(rows, Rows):
        tasks = [t for t in rows.tasks if t in tasks]
        methods = [m for m in rows.methods if m in methods]
    return tasks, methods, by


def means(rows):
    """{method: mean test accuracy over the tasks} for methods that ran on every task."""
    tasks, methods, by = index(rows)
    out = {}
    for m in methods:
        v = [by[(t, m)]["test_acc"] for t in tasks if (t, m) in by]
        if len(v) == len(tasks) and v:
            out[m] = sum(v) / len(v)
    return out


def cv_choice(rows):
    """Per task: (task, picked method, its test acc, best test acc, hit, regret in points)
    over the methods outside META that have a CV accuracy."""
    tasks, methods, by = index(rows)
    out = []
    for t in tasks:
        cand = [m for m in methods
                if m not in META and (t, m) in by and by[(t, m)].get("cv_acc") is not None]
        if not cand:
            continue
        pick = cand[0]
        for m in cand[1:]:
            if by[(t, m)]["cv_acc"] > by[(t, pick)]["cv_acc"]:
                pick = m
        best = max(by[(t, m)]["test_acc"] for m in cand)
        got = by[(t, pick)]["test_acc"]
        out.append((t, pick, got, best, got >= best - 1e-12, 100.0 * (best - got)))
    return out


def pct(v):
    return "-" if v is None else "%.2f" % (100.0 * v)


def markdown(rows):
    """The results table: test accuracy (%) per task and method, the CV pick per task, the
    suite mean; then the summary lines and the CV-chosen hyperparameters."""
    tasks, methods, by = index(rows)
    picks = {c[0]: c for c in cv_choice(rows)}
    mean = means(rows)
    best_mean = max(mean.values()) if mean else None
    out = io.StringIO()
    out.write("| task | " + " | ".join(methods) + " | CV pick |\n")
    out.write("|---|" + "---:|" * len(methods) + "---|\n")
    for t in tasks:
        accs = [by[(t, m)]["test_acc"] for m in methods if (t, m) in by]
        top = max(accs) if accs else None
        cells = []
        for m in methods:
            v = by[(t, m)]["test_acc"] if (t, m) in by else None
            s = pct(v)
            cells.append("**%s**" % s if v is not None and v >= top - 1e-12 else s)
        p = picks.get(t)
        pick = "-" if not p else "%s%s" % (p[1], "" if p[4] else " (-%.2f)" % p[5])
        out.write("| %s | %s | %s |\n" % (t, " | ".join(cells), pick))
    cells = []
    for m in methods:
        v = mean.get(m)
        cells.append("**%s**" % pct(v) if v is not None and v >= best_mean - 1e-12 else pct(v))
    out.write("| **suite mean** | %s | |\n" % " | ".join(cells))
    out.write("\n")
    for line in summary(rows):
        out.write("- %s\n" % line)
    out.write("\nCV-chosen hyperparameters (CV accuracy %):\n\n")
    out.write("| task | " + " | ".join(methods) + " |\n")
    out.write("|---|" + "---|" * len(methods) + "\n")
    for t in tasks:
        cells = []
        for m in methods:
            r = by.get((t, m))
            cells.append("-" if not r else "%s (%s)" % (r.get("params") or "-", pct(r.get("cv_acc"))))
        out.write("| %s | %s |\n" % (t, " | ".join(cells)))
    return out.getvalue()


def summary(rows):
    """The measured lines under the table: the CV choice against the test-best method, and
    Head2Toe against all layers on the suite mean."""
    lines = []
    ch = cv_choice(rows)
    if ch:
        hits = sum(1 for c in ch if c[4])
        worst = max(ch, key=lambda c: c[5])
        lines.append("CV choice among methods = test-best method on %d of %d tasks (%s)"
                     % (hits, len(ch), "no loss" if worst[5] <= 0 else
                        "mean loss %.2f points, worst %.2f on %s"
                        % (sum(c[5] for c in ch) / len(ch), worst[5], worst[0])))
    tasks, methods, by = index(rows)
    if "auto" in methods:
        n = close = below = 0
        for t in tasks:
            if (t, "auto") not in by:
                continue
            others = [by[(t, m)]["test_acc"] for m in methods
                      if m not in META and (t, m) in by]
            if not others:
                continue
            n += 1
            a = by[(t, "auto")]["test_acc"]
            close += a >= max(others) - 0.01 - 1e-12
            below += (t, "linear") in by and a < by[(t, "linear")]["test_acc"] - 1e-12
        lines.append("auto within 1 point of the test-best method on %d of %d tasks; below "
                     "linear on %d" % (close, n, below))
    picks = auto_rule(rows)
    if picks:
        close = sum(1 for p in picks if p["to_best"] <= 1.0 + 1e-9)
        below = sum(1 for p in picks if p["to_linear"] is not None and p["to_linear"] < -1e-9)
        lines.append("the CV pick (auto's rule over these jobs) within 1 point of the test-best "
                     "method on %d of %d tasks; below linear on %d" % (close, len(picks), below))
    mean = means(rows)
    if "head2toe" in mean and "all" in mean:
        d = 100.0 * (mean["head2toe"] - mean["all"])
        lines.append("suite mean: head2toe %s vs all layers %s (%+.2f points)"
                     % (pct(mean["head2toe"]), pct(mean["all"]), d))
    return lines


def auto_rule(rows):
    """Per task, what auto would return over these jobs: auto's candidates' CV accuracies are
    these methods' own (the same folds and defaults) and it keeps the best (ties: the first
    in method order, so list the methods in the wire's enum order, as run.py does), then
    refits it as that method's job does. A list of dicts: task, pick, test (its test
    accuracy), best and best_method (the test-best method outside META), to_best (points
    below the best, >= 0), to_linear (points above linear; None without linear), auto (the
    test accuracy of the auto job when one ran, else None)."""
    tasks, methods, by = index(rows)
    out = []
    for t, pick, got, best, _hit, loss in cv_choice(rows):
        cand = [m for m in methods if m not in META and (t, m) in by]
        best_m = next(m for m in cand if by[(t, m)]["test_acc"] >= best - 1e-12)
        lin = by.get((t, "linear"))
        out.append({"task": t, "pick": pick, "test": got, "best": best, "best_method": best_m,
                    "to_best": loss,
                    "to_linear": None if not lin else 100.0 * (got - lin["test_acc"]),
                    "auto": by[(t, "auto")]["test_acc"] if (t, "auto") in by else None})
    return out


def auto_markdown(rows):
    """The auto table: per task the test-best method, the CV pick (auto's rule) and its
    distance to the best and to linear, and the auto job's own test accuracy where it ran."""
    out = io.StringIO()
    out.write("| task | test-best method | CV pick (auto's rule) | pick - best | pick - linear "
              "| auto job |\n|---|---|---|---:|---:|---:|\n")
    for p in auto_rule(rows):
        out.write("| %s | %s %s | %s %s | %s | %s | %s |\n"
                  % (p["task"], p["best_method"], pct(p["best"]), p["pick"], pct(p["test"]),
                     "%.2f" % -p["to_best"] if p["to_best"] > 1e-9 else "0.00",
                     "-" if p["to_linear"] is None else "%+.2f" % p["to_linear"],
                     pct(p["auto"])))
    return out.getvalue()


def csv_text(rows):
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["dataset", "task", "method", "test_acc", "cv_acc", "params", "job", "seconds"])
    for r in rows:
        w.writerow([r.get("dataset", ""), r["task"], r["method"], "%.6f" % r["test_acc"],
                    "" if r.get("cv_acc") is None else "%.6f" % r["cv_acc"],
                    r.get("params", ""), r.get("job", ""),
                    "" if r.get("seconds") is None else "%.1f" % r["seconds"]])
    return out.getvalue()


def esc(s):
    return (str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("'", "&apos;"))


def svg(rows, title):
    """Grouped bars: test accuracy per task (one bar per method), then the suite mean."""
    tasks, methods, by = index(rows)
    mean = means(rows)
    groups = tasks + ["suite mean"]
    # group width: bars of 14 px and a gap, spread to at least 740 px in all (the title's)
    gw = max(14 * max(len(methods), 1) + 18, (740 - 70) // len(groups))
    x0, y0, ph = 70, 60, 360  # plot origin (left, top) and height
    w = x0 + gw * len(groups) + 40
    h = y0 + ph + 150
    f = io.StringIO()
    f.write("<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' "
            "viewBox='0 0 %d %d' font-family='sans-serif'>\n" % (w, h, w, h))
    f.write("<style>.t{font-size:18px;font-weight:bold}.yt{font-size:11px;text-anchor:end}"
            ".xc{font-size:11px;text-anchor:end}.ax{font-size:12px;text-anchor:middle}"
            ".lg{font-size:12px}.frame{fill:none;stroke:#444}.grid{stroke:#ddd}</style>\n"
            "<rect width='100%' height='100%' fill='white'/>\n")
    f.write("<text x='%d' y='28' class='t'>%s</text>\n" % (x0, esc(title)))
    for k in range(0, 11):
        y = y0 + ph - ph * k / 10.0
        f.write("<line class='grid' x1='%d' y1='%.1f' x2='%d' y2='%.1f'/>\n"
                % (x0, y, w - 40, y))
        f.write("<text x='%d' y='%.1f' class='yt'>%d</text>\n" % (x0 - 6, y + 4, 10 * k))
    f.write("<text x='18' y='%d' class='ax' transform='rotate(-90 18 %d)'>test accuracy (%%)"
            "</text>\n" % (y0 + ph // 2, y0 + ph // 2))
    for g, t in enumerate(groups):
        gx = x0 + g * gw + (gw - 14 * len(methods)) // 2
        if t == "suite mean":
            f.write("<line x1='%d' y1='%d' x2='%d' y2='%d' stroke='#444' "
                    "stroke-dasharray='4,3'/>\n" % (x0 + g * gw, y0, x0 + g * gw, y0 + ph))
        for i, m in enumerate(methods):
            v = mean.get(m) if t == "suite mean" else by.get((t, m), {}).get("test_acc")
            if v is None:
                continue
            bh = ph * v
            f.write("<rect x='%d' y='%.1f' width='13' height='%.1f' fill='%s'><title>%s, %s: "
                    "%.2f%%</title></rect>\n" % (gx + 14 * i, y0 + ph - bh, bh,
                                               COLORS[i % len(COLORS)], esc(t), esc(m),
                                               100 * v))
        cx = gx + 7 * len(methods)
        f.write("<text x='%d' y='%d' class='xc' transform='rotate(-40 %d %d)'>%s</text>\n"
                % (cx, y0 + ph + 16, cx, y0 + ph + 16, esc(t)))
    f.write("<rect class='frame' x='%d' y='%d' width='%d' height='%d'/>\n"
            % (x0, y0, w - 40 - x0, ph))
    lx = x0
    for i, m in enumerate(methods):
        f.write("<rect x='%d' y='38' width='12' height='12' fill='%s'/>"
                "<text x='%d' y='49' class='lg'>%s</text>\n"
                % (lx, COLORS[i % len(COLORS)], lx + 16, esc(m)))
        lx += 16 + 8 * len(m) + 20
    f.write("</svg>\n")
    return f.getvalue()
