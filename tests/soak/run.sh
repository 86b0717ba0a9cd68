#!/bin/bash
# tests/soak/run.sh - make soak: the three soaks in turn (KILLS, SEED, MAXMS, SOAK_N as in each
# script), each one's last line the figures; exit 1 on the first failure. Not part of make
# test: about 20 minutes on a shared 2-CPU machine (docs/robustness.md).
set -u
cd "$(dirname "$0")/../.." || exit 1
echo "soak: $(date -u '+%Y-%m-%d %H:%M') UTC, $(lscpu | sed -n 's/^Model name: *//p'), load $(cut -d' ' -f1-3 /proc/loadavg)"
./tests/soak/extract_kill.sh || exit 1
./tests/soak/server_kill.sh || exit 1
./tests/soak/disk_full.sh || exit 1
echo "soak: all passed, load $(cut -d' ' -f1-3 /proc/loadavg)"
