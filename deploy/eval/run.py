#!/usr/bin/python3
"""The evaluation suite's driver (make eval; deploy/eval.sh runs it after the data).

    PYTHONPATH=python /usr/bin/python3 deploy/eval/run.py --data DIR --out DIR
        [--datasets a,b] [--tasks t1,t2] [--methods m1,m2] [--h2tdb BIN] [--model FILE]
        [--target-size T] [--threads N] [--retrain] [--store DIR] [--train-opt F=V ...]

For each data set under --data (deploy/eval/gen.py's OUT: NAME/tasks.json): one extraction
into the store OUT/store (`h2tdb extract`, which does nothing when the same extraction is
complete), then `h2tdb serve` on that store, every task created through the Python client,
every method trained on every task (the server answers a job whose spec equals a finished
job's with that job, so a rerun trains only what changed), and the results written:
OUT/results.md (table + summary + CV-chosen hyperparameters), OUT/results.csv,
OUT/results.svg (chart), rewritten after each job; the table is printed at the end. Jobs
are submitted method by method (every task's linear job first), and a job left queued or
running in the store by an interrupted run is cancelled first.

--store DIR (default OUT/store) lets runs with other train options share the extractions;
--train-opt FIELD=VALUE sets a TrainRequest field of every job (fold_kind=2, one_se=1,
cv_repeats=3, folds=10: the CV variants whose choice the table's CV-pick line measures; a
comma list sets a repeated field: keep_fractions=0.01,0.1,1, final_l2s=1e-6,1e-4).

The methods are every value of the wire's Method enum (proto/h2tdb.proto, which lists every
method the server runs), in enum order, unless --methods names some.
"""
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report  # noqa: E402


def die(msg):
    sys.stderr.write("eval: %s\n" % msg)
    sys.exit(1)


def all_methods():
    import h2tdb
    vals = sorted(h2tdb.pb.Method.DESCRIPTOR.values, key=lambda v: v.number)
    return [v.name.split("_", 1)[1].lower() for v in vals]


def params_text(info):
    """The CV-chosen hyperparameters of a result's JSON: lambda and keep when their grids had
    a choice, knn's k, the layer probe's layer, and for auto the method it chose (then that
    method's own choices)."""
    out = []
    if info.get("auto"):
        out.append("chose %s" % info["auto"].get("chosen"))
    # knn's grid of k travels in the lambda grid: its k is reported once, as k
    if (len(info.get("lambdas") or []) > 1 and info.get("lambda") is not None
            and not info.get("knn_k")):
        out.append("lambda %g" % info["lambda"])
    if len(set(info.get("keeps") or [])) > 1 and info.get("keep") is not None:
        out.append("keep %g" % info["keep"])
    if len(set(info.get("final_l2s") or [])) > 1:
        out.append("final L2 %g" % info["final_l2"])
    if info.get("select_group") == "layer":
        out.append("whole layers")
    if info.get("knn_k"):
        out.append("k %d" % info["knn_k"])
    if info.get("method") == "layer":
        kept = [ly.get("name") for ly in info.get("layers") or [] if ly.get("kept")]
        if len(kept) == 1:
            out.append("layer %s" % kept[0])
    return ", ".join(out)


def parse_args(argv):
    opts = {"--data": None, "--out": None, "--datasets": "", "--tasks": "", "--methods": "",
            "--h2tdb": "build/h2tdb", "--model": "models/mobilenet_v2.onnx",
            "--target-size": "512", "--threads": "2", "--store": None}
    train_opts = {}
    flags = {"--retrain": False}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-h", "--help"):
            sys.stdout.write(__doc__)
            sys.exit(0)
        if a in flags:
            flags[a] = True
            i += 1
        elif a == "--train-opt":
            k, eq, v = (argv[i + 1] if i + 1 < len(argv) else "").partition("=")
            if not eq or not k:
                die("--train-opt wants FIELD=VALUE (a TrainRequest field), got '%s'"
                    % (argv[i + 1] if i + 1 < len(argv) else ""))
            train_opts[k] = v
            i += 2
        elif a in opts:
            if i + 1 >= len(argv):
                die("%s needs a value" % a)
            opts[a] = argv[i + 1]
            i += 2
        else:
            die("unknown argument '%s' (try --help)" % a)
    if not opts["--data"] or not opts["--out"]:
        die("--data DIR and --out DIR are required")
    for k, v in train_opts.items():
        train_opts[k] = opt_value(v)
    return opts, flags, train_opts


def opt_value(v):
    """A --train-opt value: an int, a float, a comma list of numbers (a repeated field such
    as keep_fractions=0.01,0.1,1 or final_l2s=1e-6,1e-4), else the text."""
    if "," in v:
        return [opt_value(x) for x in v.split(",") if x]
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return v


def resolve_source(ds_dir, source):
    """The extraction source of the data set in ds_dir: a relative `folder:` path is relative
    to ds_dir; an absolute one that no longer exists (data written by an older gen.py, then
    moved) is ds_dir/images, where gen.py writes a data set's images. The folder's path is
    not part of the extraction's identity (its content is), so moved data keeps its
    extraction."""
    if not source.startswith("folder:"):
        return source
    path = source[len("folder:"):]
    if not os.path.isabs(path):
        return "folder:" + os.path.join(ds_dir, path)
    own = os.path.join(ds_dir, "images")
    if not os.path.exists(path) and os.path.isdir(own):
        return "folder:" + own
    return source


def load_datasets(data, want):
    out = []
    names = sorted(os.listdir(data)) if os.path.isdir(data) else []
    for nm in names:
        tj = os.path.join(data, nm, "tasks.json")
        if not os.path.isfile(tj) or (want and nm not in want):
            continue
        with open(tj) as f:
            ds = json.load(f)
        ds["source"] = resolve_source(os.path.abspath(os.path.join(data, nm)), ds["source"])
        out.append(ds)
    missing = [w for w in want if w not in [d["name"] for d in out]]
    if missing:
        die("no data set %s under %s (deploy/eval/gen.py writes them)" % (", ".join(missing), data))
    if not out:
        die("no data sets under %s (deploy/eval/gen.py writes them)" % data)
    return out


def extract(opts, ds, store):
    cmd = [opts["--h2tdb"], "extract", "--store", store, "--model", opts["--model"],
           "--data", ds["source"], "--name", "eval-" + ds["name"], "--source-name", ds["name"],
           "--target-size", opts["--target-size"], "--threads", opts["--threads"]]
    if "split" in ds:
        cmd += ["--train", str(ds["split"][0]), "--test", str(ds["split"][1])]
    t0 = time.time()
    print("extract %s: %s" % (ds["name"], ds["source"]), flush=True)
    rc = subprocess.call(cmd)
    if rc != 0:
        die("extraction of %s failed (exit %d): %s" % (ds["name"], rc, " ".join(cmd)))
    return time.time() - t0


def start_server(opts, store, out):
    portfile = os.path.join(out, "port")
    if os.path.exists(portfile):
        os.unlink(portfile)
    log = open(os.path.join(out, "server.log"), "w")
    p = subprocess.Popen([opts["--h2tdb"], "serve", "--store", store, "--listen", "127.0.0.1:0",
                          "--port-file", portfile, "--workers", "1"], stderr=log, stdout=log)
    for _ in range(300):
        if os.path.exists(portfile) and os.path.getsize(portfile) > 0:
            with open(portfile) as f:
                return p, "127.0.0.1:" + f.read().strip()
        if p.poll() is not None:
            break
        time.sleep(0.1)
    p.kill()
    die("the server did not start; its log: %s" % log.name)


def write_results(out, rows, opts):
    """OUT/results.{md,csv,svg} from the rows so far (each written whole, then renamed)."""
    title = "h2tdb eval: test accuracy per task and method, %s" % os.path.basename(
        opts["--model"])
    for name, text in (("results.md", report.markdown(rows)), ("results.csv",
                       report.csv_text(rows)), ("results.svg", report.svg(rows, title))):
        path = os.path.join(out, name)
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)


def save_jobs(out, recs):
    """OUT/jobs.jsonl: one JSON line per (task, method) with the job's whole result info (the
    CV table, cell_test when asked, the choices), merged with the lines of earlier runs into
    the same OUT (a (task, method) run again replaces its line). deploy/eval/cvchoice.py
    reads it."""
    path = os.path.join(out, "jobs.jsonl")
    keep = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                if line.strip():
                    r = json.loads(line)
                    keep[(r["task"], r["method"])] = r
    for r in recs:
        keep[(r["task"], r["method"])] = r
    with open(path + ".tmp", "w") as f:
        for k in sorted(keep):
            f.write(json.dumps(keep[k], sort_keys=True) + "\n")
    os.replace(path + ".tmp", path)


def main(argv):
    opts, flags, train_opts = parse_args(argv)
    import h2tdb
    out = os.path.abspath(opts["--out"])
    os.makedirs(out, exist_ok=True)
    store = os.path.abspath(opts["--store"]) if opts["--store"] else os.path.join(out, "store")
    want_ds = [s for s in opts["--datasets"].split(",") if s]
    want_tasks = [s for s in opts["--tasks"].split(",") if s]
    methods = [s for s in opts["--methods"].split(",") if s] or all_methods()
    datasets = load_datasets(opts["--data"], want_ds)
    t_start = time.time()
    t_extract = 0.0
    for ds in datasets:
        if want_tasks and not any(t["name"] in want_tasks for t in ds["tasks"]):
            continue
        t_extract += extract(opts, ds, store)
    server, addr = start_server(opts, store, out)
    # SIGTERM stops the server too (through the finally below)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rows = []
    recs = []
    try:
        with h2tdb.Client(addr, timeout=600) as c:
            # the store is the suite's own: a job still queued or running was left by an
            # interrupted run, and would otherwise train beside its resubmitted twin
            for j in c.jobs():
                if j.state in (h2tdb.pb.JOB_QUEUED, h2tdb.pb.JOB_RUNNING):
                    c.cancel(j.id)
                    print("job %d: left by an earlier run, cancelled" % j.id)
            tasks = []
            for ds in datasets:
                for t in ds["tasks"]:
                    if want_tasks and t["name"] not in want_tasks:
                        continue
                    spec = {"replace": True}
                    if t.get("map"):
                        spec["map"] = t["map"]
                    if t.get("shots"):
                        spec["shots"] = t["shots"]
                    c.create_task(t["name"], "eval-" + ds["name"], train=t["train"],
                                  test=t["test"], **spec)
                    tasks.append((ds["name"], t["name"]))
            # method by method, so that the quicker methods' columns are complete first
            submitted = []
            for m in methods:
                for dsn, tn in tasks:
                    job = c.train(tn, method=m, threads=int(opts["--threads"]),
                                  retrain=flags["--retrain"], **train_opts)
                    submitted.append((dsn, tn, m, job))
                    print("job %d: %s on %s %s" % (job.id, m, tn,
                                                   "reused" if job.reused else "queued"),
                          flush=True)
            for dsn, tn, m, job in submitted:
                t0 = time.time()
                final = c.watch(job.id)
                if final.state != h2tdb.pb.JOB_DONE:
                    die("job %d (%s on %s) ended %s: %s; server log: %s/server.log"
                        % (job.id, m, tn, h2tdb.pb.JobState.Name(final.state), final.error, out))
                res = c.result(job.id, head=False)
                info = res.info
                secs = (info.get("timings_s") or {}).get("total")
                rows.append({"dataset": dsn, "task": tn, "method": m,
                             "test_acc": res.test_accuracy, "cv_acc": res.val_accuracy,
                             "params": params_text(info), "job": job.id, "seconds": secs})
                print("job %d: %s on %s: test %.2f%% (CV %.2f%%, %s)%s"
                      % (job.id, m, tn, 100 * res.test_accuracy, 100 * res.val_accuracy,
                         params_text(info) or "no grid",
                         "" if secs is None else " in %.1f s" % secs), flush=True)
                recs.append({"dataset": dsn, "task": tn, "method": m, "job": job.id,
                             "test_acc": res.test_accuracy, "cv_acc": res.val_accuracy,
                             "train_opts": train_opts, "info": info})
                write_results(out, rows, opts)
                save_jobs(out, recs)
    finally:
        server.terminate()
        server.wait()
    print()
    print(report.markdown(rows))
    train_s = sum(r["seconds"] or 0 for r in rows)
    print("eval: %d tasks x %d methods in %.0f s (extraction %.0f s; training time of the jobs "
          "%.0f s, reused jobs included); results in %s/results.{md,csv,svg}"
          % (len(set(r["task"] for r in rows)), len(methods), time.time() - t_start, t_extract,
             train_s, out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
