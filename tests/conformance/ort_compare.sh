#!/bin/sh
# tests/conformance/ort_compare.sh [--batch N] [--ort-only] MODEL.onnx|mobilenet_v2|resnet18|resnet50 ...
# h2tdb's executor against ONNX Runtime, tensor by tensor. For each model: a deterministic
# input (make_input.py: a photo as sample 0 when one is found, seeded noise after), ONNX
# Runtime on a copy of the model whose graph outputs are every node output (expose_all.py,
# ort_run.js: 1 thread, graph optimisations off), h2tdb on the same input observing every
# tensor (build/conformance/onnx_dump), then compare.py: max |h2tdb - ort| must be within
# 1e-3 of the tensor's largest |ort|, and every tensor ORT computed must be there.
# One line per tensor, a summary per model; exit 1 on any mismatch.
#   --ort-only   skip h2tdb (checks the model and the ORT side alone)
#   H2T_ONNX_DUMP=PATH   use that onnx_dump binary instead of building it
# `make conformance` runs it on the three models. Needs deploy/fetch_model.sh --all.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
C="$ROOT/tests/conformance"
NPM_DIR="${H2T_NPM_CACHE:-$ROOT/models/.npm}"
batch=2
ort_only=0
while [ $# -gt 0 ]; do
    case "$1" in
    --batch) batch=$2; shift 2 ;;
    --ort-only) ort_only=1; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) break ;;
    esac
done
[ $# -gt 0 ] || { sed -n '2,14p' "$0" >&2; exit 2; }

"$ROOT/deploy/fetch_model.sh" --ort >/dev/null
export NODE_PATH="$NPM_DIR/node_modules"
DUMP="${H2T_ONNX_DUMP:-$ROOT/build/conformance/onnx_dump}"
if [ $ort_only = 0 ] && [ -z "${H2T_ONNX_DUMP:-}" ]; then
    make -C "$ROOT" --no-print-directory -s build/conformance/onnx_dump
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
img=/usr/lib/python3/dist-packages/sklearn/datasets/images/china.jpg
fail=0
for arg in "$@"; do
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
    echo "== $model (batch $batch)"
    rm -rf "${tmp:?}"/*
    if [ -f "$img" ]; then
        shape=$(/usr/bin/python3 "$C/make_input.py" "$model" "$tmp/in.f32" --batch "$batch" --image "$img")
    else
        shape=$(/usr/bin/python3 "$C/make_input.py" "$model" "$tmp/in.f32" --batch "$batch")
    fi
    /usr/bin/python3 "$C/expose_all.py" "$model" "$tmp/all.onnx"
    node "$C/ort_run.js" "$tmp/all.onnx" "$tmp/in.f32" "$shape" "$tmp/ort"
    if [ $ort_only = 1 ]; then
        /usr/bin/python3 "$C/compare.py" "$tmp/ort" "$tmp/ort" | tail -1
        continue
    fi
    if ! "$DUMP" "$model" "$tmp/in.f32" "$batch" "$tmp/h2tdb"; then
        echo "summary: h2tdb could not run $model: FAIL"
        fail=1
        continue
    fi
    /usr/bin/python3 "$C/compare.py" "$tmp/ort" "$tmp/h2tdb" --ref-name ort --got-name h2tdb \
        --require-all || fail=1
done
exit $fail
