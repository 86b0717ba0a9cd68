#!/bin/sh
# bench/dist.sh - row-sharded training and the spilled design matrix, measured with h2tdb fit.
#
#   bench/dist.sh [STORE [TASK]]     (defaults: $H2T_EVAL_DIR/store or
#                                     /work/assets/eval-out/store, task fmnist10)
#
# Prints two markdown tables (docs/benchmarks.md keeps the measured ones):
#  1. one process (h2tdb fit: the server's solver, kernel form where n <= D/2), then
#     mpirun -np 1, 2, 4 h2tdb fit --mpi: wall time, speed-up over 1 rank, each rank's time
#     and peak RSS, objective and its distance to the one process's;
#  2. one process with the matrix in memory against --mem-limit below it (the matrix spilled
#     to a file-backed mapping in $H2T_SPILL_DIR, default a fresh directory under /var/tmp),
#     and under a data-segment limit below the matrix (prlimit --data=DATA_LIMIT, default
#     450000000: the heap, not the spilled file mapping; a stand-in for a memory cgroup where
#     none can be made) without --mem-limit: the budget takes the limit and the matrix spills.
# The job: METHOD (default all) at one lambda without CV (FIT_OPTS), so a row is one fit.
# Every process runs one OpenBLAS thread. The store is opened read only.
# FIT_OPTS is a list of options: split on purpose
# shellcheck disable=SC2086
set -eu
cd "$(dirname "$0")/.."
STORE=${1:-${H2T_EVAL_DIR:-/work/assets/eval-out}/store}
TASK=${2:-fmnist10}
METHOD=${METHOD:-all}
FIT_OPTS=${FIT_OPTS:---lambdas 1e-2 --folds 1}
RANKS=${RANKS-1 2 4} # RANKS= (empty): no mpirun rows
BIN=build/h2tdb
if [ ! -f "$STORE/data.mdb" ]; then
    echo "bench/dist.sh: no store at $STORE (make eval or make demo builds one): skipped" >&2
    exit 0
fi
[ -x "$BIN" ] || make -s build/h2tdb
command -v mpirun >/dev/null || { echo "bench/dist.sh: mpirun missing (deploy/deps.sh)" >&2; exit 1; }
export OPENBLAS_NUM_THREADS=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
CORES=$(nproc)

echo "# bench/dist.sh: $TASK ($METHOD $FIT_OPTS), $(lscpu | sed -n 's/^Model name: *//p'), $CORES cores"
echo "# load before: $(uptime | sed 's/.*load average: //')"

# run LABEL CMD...: wall seconds, the fit line, the ranks' --stats lines
BASE1= # wall of mpirun -np 1
OBJ1=  # objective of one process
run() {
    label=$1
    shift
    t0=$(date +%s.%N)
    "$@" >"$OUT/out" 2>"$OUT/err" || { cat "$OUT/out" "$OUT/err" >&2; exit 1; }
    t1=$(date +%s.%N)
    wall=$(echo "$t1 - $t0" | bc)
    obj=$(sed -n 's/.*objective \([^,]*\),.*/\1/p' "$OUT/out")
    per=$(sed -n 's/h2tdb fit: rank \([0-9]*\) of [0-9]*: \([0-9.]*\) s, peak RSS \([0-9.]*\) MiB.*/r\1 \2 s \3 MiB/p' \
        "$OUT/err" | sort | paste -sd ';' -)
    [ -n "$OBJ1" ] || OBJ1=$obj
    case $label in "mpirun -np 1 "*) BASE1=$wall ;; esac
    speed=-
    case $label in mpirun*) speed=$(echo "scale=2; $BASE1 / $wall" | bc) ;; esac
    rel=$(echo "$obj $OBJ1" | awk '{d = $1 - $2; if (d < 0) d = -d; printf "%.1e", d / $2}')
    printf '| %s | %.1f | %s | %s | %s | %s |\n' "$label" "$wall" "$speed" "${per:--}" "$obj" "$rel"
}

echo
echo "| run | wall s | speed-up over 1 rank | per rank: time, peak RSS | objective | rel. to 1 process |"
echo "|---|---|---|---|---|---|"
run "1 process (h2tdb fit)" "$BIN" fit --store "$STORE" --task "$TASK" --method "$METHOD" \
    $FIT_OPTS --threads 1 --stats
for n in $RANKS; do
    over=""
    [ "$n" -gt "$CORES" ] && over=" (oversubscribed: $n ranks on $CORES cores)"
    run "mpirun -np $n fit --mpi$over" mpirun --oversubscribe -np "$n" "$BIN" fit --mpi \
        --store "$STORE" --task "$TASK" --method "$METHOD" $FIT_OPTS --threads 1 --stats
done

SPILL=${H2T_SPILL_DIR:-$(mktemp -d /var/tmp/h2tdb-spill.XXXXXX)}
echo
echo "| design matrix | wall s | - | peak RSS | objective | rel. to 1 process |"
echo "|---|---|---|---|---|---|"
run "in memory" "$BIN" fit --store "$STORE" --task "$TASK" --method "$METHOD" $FIT_OPTS \
    --threads 1 --stats
H2T_SPILL_DIR=$SPILL run "spilled (--mem-limit 100000000, $SPILL)" "$BIN" fit --store "$STORE" \
    --task "$TASK" --method "$METHOD" $FIT_OPTS --threads 1 --stats --mem-limit 100000000
DATA_LIMIT=${DATA_LIMIT:-450000000}
if command -v prlimit >/dev/null; then
    H2T_SPILL_DIR=$SPILL run "prlimit --data=$DATA_LIMIT, no --mem-limit (spilled on its own)" \
        prlimit --data="$DATA_LIMIT" "$BIN" fit --store "$STORE" --task "$TASK" \
        --method "$METHOD" $FIT_OPTS --threads 1 --stats
fi
[ -n "${H2T_SPILL_DIR:-}" ] || rmdir "$SPILL"
echo
echo "# load after: $(uptime | sed 's/.*load average: //')"
