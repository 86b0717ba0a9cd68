#!/bin/sh
# tests/conformance/tfjs_compare.sh: the converted MobileNetV2 (models/mobilenet_v2.onnx)
# against the Keras model it came from, run by tfjs itself (nsfwjs's own runtime, CPU
# backend): every Keras layer's output on the same input (a photo when one is found, plus
# seeded noise) must agree within 1e-3 of the tensor's largest magnitude. The ONNX side runs
# in ONNX Runtime. Exit 1 on any mismatch. Needs deploy/fetch_model.sh --ort.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
C="$ROOT/tests/conformance"
NPM_DIR="${H2T_NPM_CACHE:-$ROOT/models/.npm}"
MODEL="$ROOT/models/mobilenet_v2.onnx"
"$ROOT/deploy/fetch_model.sh" --ort >/dev/null
export NODE_PATH="$NPM_DIR/node_modules"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
img=/usr/lib/python3/dist-packages/sklearn/datasets/images/china.jpg
[ -f "$img" ] && set -- --image "$img"
shape=$(/usr/bin/python3 "$C/make_input.py" "$MODEL" "$tmp/in.f32" --batch 2 "$@")
/usr/bin/python3 "$C/expose_all.py" "$MODEL" "$tmp/all.onnx"
node "$C/ort_run.js" "$tmp/all.onnx" "$tmp/in.f32" "$shape" "$tmp/ort"
node "$C/tfjs_run.js" "$NPM_DIR/node_modules/nsfwjs/dist/models/mobilenet_v2" "$tmp/in.f32" \
    "$shape" "$tmp/tfjs" 2>&1 | grep -v -e '^$' -e 'tfjs-node' -e '^====' >&2 || true
# Dropout layers have no ONNX node (identity at inference): the only tensors allowed missing.
/usr/bin/python3 "$C/compare.py" "$tmp/tfjs" "$tmp/ort" --ref-name tfjs --got-name onnx |
    tee "$tmp/report"
grep -q '^summary: .*: PASS$' "$tmp/report"
missing=$(grep '^MISSING' "$tmp/report" | awk '{print $2}' | grep -v '^dropout_' || true)
[ -z "$missing" ] || { echo "tfjs_compare: layers missing from the ONNX file: $missing" >&2; exit 1; }
