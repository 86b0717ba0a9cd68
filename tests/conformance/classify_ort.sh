#!/bin/sh
# tests/conformance/classify_ort.sh - the exported ONNX classifier (h2tdb result J
# --export-onnx) against h2tdb predict, with ONNX Runtime, on the demo's protocol: MobileNetV2
# over Fashion-MNIST, the first TRAIN train and TEST test images at T (the demo's defaults
# 1000, 2000, 512), the task fmnist10, one job per method (linear, all, head2toe, ncm, knn,
# layer, auto). For each:
# `h2tdb predict J --json` (the stored features through the head) on the test split, the job
# exported as ONNX, ONNX Runtime on the test images preprocessed as the extraction did
# (build/conformance/classify_input; 20 images per run: with its optimisations off ONNX Runtime
# keeps every intermediate, about 90 MB per MobileNetV2 image), then classify_compare.py: every
# predicted class equal and every probability within 1e-4. Also prints each classifier's
# compute fraction (the MACs of the backbone part the head needs over the whole backbone's).
# Exit 1 on any mismatch. `make conformance` runs it; `make conformance-classify` runs it on
# the test fixtures (tests/conformance/classify_ort_tiny.sh) and then on the demo.
# Environment: TRAIN, TEST, T, THREADS (2), H2T_CONF_DIR (default build/conformance/classify:
# the store is kept there, so a second run reuses the extraction and the jobs); METHODS (default
# "linear all head2toe ncm knn layer auto"); MODEL (default mobilenet_v2.onnx of the models
# folder) and NAME (the extraction's name, default fmnist-mnv2); CLS (extract --cls: pool, only,
# apart; default the extraction's default); CHUNK (images per ONNX Runtime run, default 20);
# CHECK (the first CHECK test images go through ONNX Runtime and are compared; default all TEST:
# ONNX Runtime with its optimisations off takes about a second per MobileNetV2 image on a
# shared 2-core machine); ARGS_<method> (more `h2tdb train` options for that method's job, e.g.
# ARGS_layer="--folds 2 --lambdas 1e-3": layer's CV fits every layer at every grid cell, and
# ARGS_auto="--auto-methods linear,ncm,knn": auto's costs the sum of its candidates').
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
C="$ROOT/tests/conformance"
cd "$ROOT"
TRAIN=${TRAIN:-1000}
TEST=${TEST:-2000}
T=${T:-512}
THREADS=${THREADS:-2}
DIR=${H2T_CONF_DIR:-$ROOT/build/conformance/classify}
DATA=/usr/share/datasets/fashion-mnist
NPM_DIR="${H2T_NPM_CACHE:-$ROOT/models/.npm}"
MODEL=${MODEL:-"${H2T_MODELS_DIR:-$ROOT/models}/mobilenet_v2.onnx"}
NAME=${NAME:-fmnist-mnv2}
METHODS=${METHODS:-linear all head2toe ncm knn layer auto}
CHUNK=${CHUNK:-20}
CHECK=${CHECK:-$TEST}
CLS_ARG=${CLS:+--cls $CLS}
H2T=$ROOT/build/h2tdb

./deploy/fetch_model.sh >/dev/null
./deploy/fetch_model.sh --ort >/dev/null
export NODE_PATH="$NPM_DIR/node_modules"
make --no-print-directory -s build/h2tdb build/conformance/classify_input
mkdir -p "$DIR"
STORE=$DIR/store-$TRAIN-$TEST-$T
# shellcheck disable=SC2086 # CLS_ARG is empty or two words
"$H2T" extract --store "$STORE" --model "$MODEL" --data "idx:$DATA" --name "$NAME" \
    --source-name fashion-mnist --train "$TRAIN" --test "$TEST" --target-size "$T" \
    --threads "$THREADS" $CLS_ARG >/dev/null

PORTFILE=$DIR/port
rm -f "$PORTFILE"
"$H2T" serve --store "$STORE" --listen 127.0.0.1:0 --port-file "$PORTFILE" --workers 1 \
    2>"$DIR/server.log" &
SERVER_PID=$!
tmp=$(mktemp -d)
trap 'kill $SERVER_PID 2>/dev/null || true; rm -rf "$tmp"' EXIT INT TERM
i=0
while [ ! -s "$PORTFILE" ]; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! kill -0 $SERVER_PID 2>/dev/null; then
        echo "classify_ort: the server did not start; its log:" >&2
        cat "$DIR/server.log" >&2
        exit 1
    fi
    sleep 0.1
done
export H2T_SERVER="127.0.0.1:$(cat "$PORTFILE")"
"$H2T" task create fmnist10 --extraction "$NAME" --train "train:$TRAIN" --test test \
    --replace >/dev/null

# the test split (its first CHECK images), preprocessed as the extraction did, once for all heads
shape=$(build/conformance/classify_input "$MODEL" "idx:$DATA" "$TRAIN" "$TEST" "$TRAIN" "$CHECK" \
    "$tmp/in.f32")
rc=0
for method in $METHODS; do
    extra=$(eval "printf '%s' \"\${ARGS_$method:-}\"")
    # shellcheck disable=SC2086 # extra: options, split into words
    id=$("$H2T" train --task fmnist10 --method "$method" --threads "$THREADS" $extra |
        sed -n 's/^job \([0-9][0-9]*\) \(queued\|reused\).*/\1/p')
    [ -n "$id" ] || { echo "classify_ort: submitting $method failed" >&2; exit 1; }
    "$H2T" job "$id" --watch >/dev/null
    "$H2T" predict "$id" --json >"$DIR/predict-$method.json"
    "$H2T" result "$id" --export-onnx "$DIR/$method.onnx" --store "$STORE" --model "$MODEL" \
        --json >"$DIR/export-$method.json"
    rm -f "$DIR/ort-$method.f32.label"
    node "$C/classify_ort.js" "$DIR/$method.onnx" "$tmp/in.f32" "$shape" "$DIR/ort-$method.f32" \
        "$CHUNK"
    printf 'job %s, exported: %s\n' "$id" "$(cat "$DIR/export-$method.json")"
    /usr/bin/python3 "$C/classify_compare.py" "$DIR/predict-$method.json" \
        "$DIR/ort-$method.f32" "$method" "$CHECK" || rc=1
done
exit $rc
