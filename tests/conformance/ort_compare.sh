#!/bin/sh
# tests/conformance/ort_compare.sh [--batch N] [--ort-only] [--layers | --outputs] [--table]
#                                  MODEL.onnx|mobilenet_v2|resnet18|resnet50|zoo|zoo:NAME ...
# h2tdb's executor against ONNX Runtime, tensor by tensor. For each model: a deterministic
# input (make_input.py: a photo as sample 0 when one is found, seeded noise after), ONNX
# Runtime on a copy of the model whose graph outputs are every node output (expose_all.py,
# ort_run.js: 1 thread, graph optimisations off), h2tdb on the same input observing every
# tensor (build/conformance/onnx_dump), then compare.py: max |h2tdb - ort| must be within
# 1e-3 of the tensor's largest |ort|, and every tensor ORT computed must be there.
# One line per tensor, a summary per model; exit 1 on any mismatch.
#   --ort-only   skip h2tdb (checks the model and the ORT side alone)
#   --layers     h2tdb observes only the layer rule's tensors, as `h2tdb extract` runs it;
#                each of them is compared (compare.py --got-only)
#   --blocked    as --layers, with the 4-D layers observed in blocked pieces and each sample
#                run alone, as `h2tdb extract` runs the executor at forward batch 1 (the conv
#                chains on oneDNN's primitive without post-ops, where it is in use)
#   --outputs    h2tdb observes nothing and only the graph outputs are compared: the forward
#                pass with every conv chain fused whole (oneDNN's convolution primitive where
#                it is in use), as a classifier runs it
#   --table      keep going after a failing model; per-tensor lines go to
#                build/conformance/logs/MODEL.log, and a table at the end gives per model
#                the tensors compared, the layer-rule tensors among them, the worst relative
#                error and PASS/FAIL, or why h2tdb could not run it (its error text)
#   zoo          every model of deploy/export_zoo.py (models/zoo/NAME-opsetK.onnx, the ones
#                exported; zoo:NAME selects one architecture at both opsets)
#   H2T_ONNX_DUMP=PATH   use that onnx_dump binary instead of building it
# `make conformance` runs it on the three models (every tensor, then --outputs, --blocked) and with
# --layers --table and --outputs --table on the zoo.
# Needs deploy/fetch_model.sh --all (and deploy/export_zoo.py for the zoo).
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
C="$ROOT/tests/conformance"
NPM_DIR="${H2T_NPM_CACHE:-$ROOT/models/.npm}"
batch=2
ort_only=0
layers=0
table=0
while [ $# -gt 0 ]; do
    case "$1" in
    --batch) batch=$2; shift 2 ;;
    --ort-only) ort_only=1; shift ;;
    --layers) layers=1; shift ;;
    --blocked) layers=3; shift ;;
    --outputs) layers=2; shift ;;
    --table) table=1; shift ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    *) break ;;
    esac
done
[ $# -gt 0 ] || { sed -n '2,29p' "$0" >&2; exit 2; }

"$ROOT/deploy/fetch_model.sh" --ort >/dev/null
export NODE_PATH="$NPM_DIR/node_modules"
DUMP="${H2T_ONNX_DUMP:-$ROOT/build/conformance/onnx_dump}"
if [ $ort_only = 0 ] && [ -z "${H2T_ONNX_DUMP:-}" ]; then
    make -C "$ROOT" --no-print-directory -s build/conformance/onnx_dump
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
img=/usr/lib/python3/dist-packages/sklearn/datasets/images/china.jpg
LOGS="$ROOT/build/conformance/logs"
[ $table = 0 ] || mkdir -p "$LOGS"
: >"$tmp.rows"
trap 'rm -rf "$tmp" "$tmp.rows"' EXIT
# the zoo's file names, in export_zoo.py's order (exported ones only)
zoo_models() { # zoo_models [NAME]
    /usr/bin/python3 "$ROOT/deploy/export_zoo.py" --list ${1:+"$1"} |
        awk '$4 == "exported" { print $5 }'
}
models=""
for arg in "$@"; do
    case "$arg" in
    zoo) models="$models $(zoo_models)" ;;
    zoo:*) models="$models $(zoo_models "${arg#zoo:}")" ;;
    *) models="$models $arg" ;;
    esac
done
[ -n "$models" ] || { echo "ort_compare: no model (is the zoo exported? deploy/export_zoo.py)" >&2; exit 2; }
row() { # row MODEL CELLS...: one table row (tab-separated)
    printf '%s' "$1" >>"$tmp.rows"
    shift
    printf '\t%s' "$@" >>"$tmp.rows"
    printf '\n' >>"$tmp.rows"
}
fail=0
for arg in $models; do
    case "$arg" in
    *.onnx) model=$arg ;;
    *) model="$ROOT/models/$arg.onnx" ;;
    esac
    if [ ! -f "$model" ]; then
        case "$arg" in
        resnet18|resnet50) "$ROOT/deploy/fetch_model.sh" --resnet >/dev/null ;;
        esac
    fi
    [ -f "$model" ] || { echo "ort_compare: $model: no such file" >&2; exit 2; }
    mname=$(basename "$model" .onnx)
    echo "== $model (batch $batch)"
    rm -rf "${tmp:?}"/*
    if [ -f "$img" ]; then
        shape=$(/usr/bin/python3 "$C/make_input.py" "$model" "$tmp/in.f32" --batch "$batch" --image "$img")
    else
        shape=$(/usr/bin/python3 "$C/make_input.py" "$model" "$tmp/in.f32" --batch "$batch")
    fi
    /usr/bin/python3 "$C/expose_all.py" "$model" "$tmp/all.onnx"
    if ! node "$C/ort_run.js" "$tmp/all.onnx" "$tmp/in.f32" "$shape" "$tmp/ort"; then
        [ $table = 1 ] || exit 1
        row "$mname" - - - - "ONNX Runtime could not run it" FAIL
        fail=1
        continue
    fi
    if [ $ort_only = 1 ]; then
        /usr/bin/python3 "$C/compare.py" "$tmp/ort" "$tmp/ort" | tail -1
        continue
    fi
    dflag=""
    [ $layers != 1 ] || dflag=--layers
    [ $layers != 2 ] || dflag=--outputs
    [ $layers != 3 ] || dflag=--blocked
    if ! "$DUMP" "$model" "$tmp/in.f32" "$batch" "$tmp/h2tdb" $dflag 2>"$tmp/dump.err"; then
        cat "$tmp/dump.err" >&2
        echo "summary: h2tdb could not run $model: FAIL"
        row "$mname" - - - - "$(grep -v '^onnx_dump: [0-9]* tensors' "$tmp/dump.err" |
            sed -e "s|onnx_dump: ||" -e "s|$model: ||g" | tr '\n\t' '  ')" FAIL
        fail=1
        continue
    fi
    cat "$tmp/dump.err" >&2
    cflags="--require-all"
    [ $layers = 0 ] || cflags="--got-only"
    if [ $table = 1 ]; then
        /usr/bin/python3 "$C/compare.py" "$tmp/ort" "$tmp/h2tdb" --ref-name ort --got-name h2tdb \
            $cflags --row "$tmp/row" >"$LOGS/$mname.log" || fail=1
        grep -v '^ok ' "$LOGS/$mname.log" | tail -20
        row "$mname" "$(cut -f1-6 "$tmp/row")"
        rm -f "$tmp/row"
    else
        /usr/bin/python3 "$C/compare.py" "$tmp/ort" "$tmp/h2tdb" --ref-name ort --got-name h2tdb \
            $cflags || fail=1
    fi
done
if [ $table = 1 ]; then
    echo
    echo "conformance against ONNX Runtime (batch $batch; tolerance 1e-3 of each tensor's largest |value|):"
    printf '%-28s %8s %14s %12s  %s\n' model compared "layer tensors" "worst rel." verdict
    while IFS="$(printf '\t')" read -r m compared lc ln worst wname verdict; do
        if [ "$compared" = - ]; then
            printf '%-28s %8s %14s %12s  FAIL: %s\n' "$m" - - - "$wname"
        else
            printf '%-28s %8s %14s %12s  %s\n' "$m" "$compared" "$lc/$ln" "$worst" "$verdict"
        fi
    done <"$tmp.rows"
    [ $layers != 1 ] || echo "(h2tdb observed only the layer rule's tensors; logs: $LOGS)"
fi
exit $fail
