#!/bin/sh
# make bench: every benchmark under bench/, each printing its own ratios against a peer
# measured in the same run. Peers come from deploy/deps.sh --bench.
set -eu
cd "$(dirname "$0")/.."
./deploy/deps.sh --bench
for b in build/bench/*; do
    [ -x "$b" ] || continue
    echo "== $b"
    "$b"
done
for s in bench/*.sh; do
    [ "$s" = bench/run.sh ] && continue
    echo "== $s"
    sh "$s"
done
