#!/bin/sh
# make eval / make eval-full: the evaluation suite (docs/eval.md).
#
#  1. installs what it needs (deploy/deps.sh --eval: Fashion-MNIST, PIL, the font packages,
#     npm for the model), builds h2tdb
#  2. fetches the backbone (deploy/fetch_model.sh: MobileNetV2, 224x224 input)
#  3. generates the data sets with fixed seeds (deploy/eval/gen.py; skipped when up to date)
#  4. deploy/eval/run.py: one extraction per data set, h2tdb serve, every method on every
#     task through the Python client, the table printed and written to
#     $DIR/results.{md,csv,svg}
#
# EVAL=full (make eval-full) runs every task; the default runs the subset in QUICK_TASKS
# below (docs/eval.md gives both times). A rerun reuses the data, the extractions and every
# finished job whose spec is unchanged; RETRAIN=1 trains every head again.
# Environment: H2T_EVAL_DIR (default ./eval-out), EVAL (quick|full), METHODS (comma list,
# default every method the server has), TASKS (comma list, overrides EVAL), T (512),
# THREADS (2), TRAIN_OPTS (space-separated FIELD=VALUE TrainRequest fields for every job,
# e.g. "fold_kind=2" or "one_se=1"; give such a run its own H2T_EVAL_OUT).
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DIR=${H2T_EVAL_DIR:-$ROOT/eval-out}
EVAL=${EVAL:-quick}
# Four tasks (few-shot natural images, position, count, typeface) over all four
# data sets, so that the quick suite still has one extraction per data set.
QUICK_TASKS=fmnist10-10shot,shapes-posx,count-count,glyphs-font

case "$EVAL" in
quick) tasks=${TASKS:-$QUICK_TASKS} ;;
full) tasks=${TASKS:-} ;;
*) echo "eval.sh: EVAL is quick or full, not '$EVAL'" >&2; exit 2 ;;
esac

say() { printf '\n== %s\n' "$*"; }
t_start=$(date +%s)

say "dependencies and build"
./deploy/deps.sh --eval
make -s all

say "backbone: MobileNetV2 (nsfwjs 4.4.0) -> ONNX"
./deploy/fetch_model.sh

say "data: the suite's data sets (fixed seeds)"
/usr/bin/python3 deploy/eval/gen.py "$DIR/data"

say "suite ($EVAL): extraction, tasks and jobs through h2tdb serve"
set -- --data "$DIR/data" --out "$DIR" --model "$ROOT/models/mobilenet_v2.onnx" \
    --h2tdb "$ROOT/build/h2tdb" --target-size "${T:-512}" --threads "${THREADS:-2}"
[ -n "$tasks" ] && set -- "$@" --tasks "$tasks"
[ -n "${METHODS:-}" ] && set -- "$@" --methods "$METHODS"
[ "${RETRAIN:-0}" = 1 ] && set -- "$@" --retrain
for o in ${TRAIN_OPTS:-}; do set -- "$@" --train-opt "$o"; done
# the results of a run with other train options go to their own folder, over the same store
[ -n "${H2T_EVAL_OUT:-}" ] && set -- "$@" --out "$H2T_EVAL_OUT" --store "$DIR/store"
PYTHONPATH=$ROOT/python /usr/bin/python3 deploy/eval/run.py "$@"

say "done in $(( $(date +%s) - t_start ))s ($EVAL); results: $DIR/results.md, results.csv, results.svg"
