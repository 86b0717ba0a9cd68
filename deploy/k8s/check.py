#!/usr/bin/python3
"""Check deploy/k8s/*.yaml without a cluster (kubectl's own validation needs an API server):
parse every document with PyYAML, check the fields each kind must have and the links between
them (selectors and labels, probe and service ports, the Indexed Job's shard count), and check
every h2tdb option the containers use against `h2tdb COMMAND --help` of the binary given.
When kubectl is installed, `kubectl kustomize` must also build the folder.

    deploy/k8s/check.py [H2TDB_BINARY]     (default: build/h2tdb; prints "k8s check: ok")
"""
import os
import re
import shutil
import subprocess
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
errors = []


def need(cond, what):
    if not cond:
        errors.append(what)
    return cond


def get(doc, path):
    for key in path.split("."):
        if not isinstance(doc, dict) or key not in doc:
            return None
        doc = doc[key]
    return doc


def h2tdb_options(binary, cmd):
    out = subprocess.run([binary, cmd, "--help"], capture_output=True, text=True, timeout=30)
    return set(re.findall(r"--[a-z][a-z0-9-]*", out.stdout + out.stderr))


def check_h2tdb_argv(binary, where, argv):
    """argv: the words of an h2tdb command line (after 'h2tdb')."""
    if not need(argv and not argv[0].startswith("-"), f"{where}: no h2tdb command in {argv}"):
        return
    known = h2tdb_options(binary, argv[0])
    common = {"--server", "--token-file", "--json", "--help", "--timeout"}
    for w in argv[1:]:
        if w.startswith("--"):
            opt = w.split("=", 1)[0]
            need(opt in known or opt in common,
                 f"{where}: h2tdb {argv[0]} has no option {opt} (h2tdb {argv[0]} --help)")


def check_pod(binary, where, spec, kind):
    cs = spec.get("containers") or []
    need(cs, f"{where}: no containers")
    ports = set()
    for c in cs:
        need(c.get("name") and c.get("image"), f"{where}: a container without name or image")
        for p in c.get("ports") or []:
            need(isinstance(p.get("containerPort"), int), f"{where}: containerPort not a number")
            ports.add(p.get("name"))
            ports.add(p.get("containerPort"))
        cmd = (c.get("command") or []) + (c.get("args") or [])
        if cmd[:1] == ["h2tdb"]:
            check_h2tdb_argv(binary, f"{where} container {c['name']}", cmd[1:])
        elif cmd[:2] == ["/bin/sh", "-c"]:
            script = " ".join(cmd[2:])
            m = re.search(r"exec h2tdb (.*)", script, re.S)
            if need(m, f"{where}: the shell command does not exec h2tdb"):
                words = [w.strip('"') for w in m.group(1).split()]
                check_h2tdb_argv(binary, f"{where} container {c['name']}", words)
        probe = c.get("readinessProbe")
        if kind == "Deployment":
            need(probe, f"{where}: no readinessProbe")
        for name in ("readinessProbe", "livenessProbe"):
            pr = c.get(name) or {}
            if "exec" in pr:
                ex = pr["exec"]["command"]
                if need(ex[:1] == ["h2tdb"], f"{where} {name}: not an h2tdb call"):
                    check_h2tdb_argv(binary, f"{where} {name}", ex[1:])
            if "tcpSocket" in pr:
                need(pr["tcpSocket"].get("port") in ports,
                     f"{where} {name}: port {pr['tcpSocket'].get('port')} is not a container port")
        mounts = {m["name"] for m in c.get("volumeMounts") or []}
        vols = {v["name"] for v in spec.get("volumes") or []}
        need(mounts <= vols, f"{where}: mounts {sorted(mounts - vols)} have no volume")
    return ports


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "build/h2tdb"
    docs = []
    for name in sorted(os.listdir(HERE)):
        if name.endswith(".yaml") and name != "kustomization.yaml":
            with open(os.path.join(HERE, name)) as f:
                for d in yaml.safe_load_all(f):
                    if d is not None:
                        docs.append((name, d))
    kinds = {}
    pod_labels, pod_ports = {}, {}
    for name, d in docs:
        where = f"{name} {d.get('kind')}/{get(d, 'metadata.name')}"
        need(d.get("apiVersion") and d.get("kind") and get(d, "metadata.name"),
             f"{name}: a document without apiVersion, kind or metadata.name")
        kind = d.get("kind")
        kinds.setdefault(kind, []).append(d)
        if kind == "Job":
            spec = d["spec"]
            need(spec.get("completionMode") == "Indexed", f"{where}: not an Indexed Job")
            n = spec.get("completions")
            need(isinstance(n, int) and n >= 1, f"{where}: completions")
            pod = get(spec, "template.spec")
            need(pod.get("restartPolicy") in ("Never", "OnFailure"), f"{where}: restartPolicy")
            for c in pod["containers"]:
                env = {e["name"]: e.get("value") for e in c.get("env") or []}
                text = " ".join((c.get("command") or []) + (c.get("args") or []))
                need("JOB_COMPLETION_INDEX" in text and "--shard" in text,
                     f"{where}: --shard does not come from JOB_COMPLETION_INDEX")
                need(env.get("SHARDS") == str(n),
                     f"{where}: SHARDS={env.get('SHARDS')} but completions={n}")
            check_pod(binary, where, pod, kind)
        elif kind == "Deployment":
            spec = d["spec"]
            sel = get(spec, "selector.matchLabels") or {}
            labels = get(spec, "template.metadata.labels") or {}
            need(sel and all(labels.get(k) == v for k, v in sel.items()),
                 f"{where}: selector {sel} does not match the pod labels {labels}")
            need(spec.get("replicas") == 1, f"{where}: a store is served by one process")
            need(get(spec, "strategy.type") == "Recreate", f"{where}: strategy must be Recreate")
            pod_labels[get(d, "metadata.name")] = labels
            pod_ports[get(d, "metadata.name")] = check_pod(binary, where, get(spec, "template.spec"), kind)
        elif kind == "Service":
            sel = get(d, "spec.selector") or {}
            match = [n for n, lab in pod_labels.items() if all(lab.get(k) == v for k, v in sel.items())]
            if need(match, f"{where}: selector {sel} matches no Deployment's pods"):
                for p in get(d, "spec.ports") or []:
                    need(p.get("targetPort", p.get("port")) in pod_ports[match[0]],
                         f"{where}: targetPort {p.get('targetPort')} is not a container port")
    for k in ("Job", "Deployment", "Service"):
        need(k in kinds, f"no {k} in deploy/k8s")
    if shutil.which("kubectl"):
        r = subprocess.run(["kubectl", "kustomize", HERE], capture_output=True, text=True,
                           timeout=60)
        need(r.returncode == 0, f"kubectl kustomize {HERE}: {r.stderr.strip()}")
    for e in errors:
        print("k8s check:", e, file=sys.stderr)
    if errors:
        return 1
    print(f"k8s check: ok ({len(docs)} objects{', kubectl kustomize builds them' if shutil.which('kubectl') else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
