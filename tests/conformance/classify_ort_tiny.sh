#!/bin/sh
# tests/conformance/classify_ort_tiny.sh - tests/conformance/classify_ort.sh (the exported ONNX
# classifier under ONNX Runtime against h2tdb predict: every prediction equal, probabilities
# within 1e-4, every method) on the test fixtures, in seconds: tests/data/extract_tiny.onnx (a
# convolution map pooled in windows and globally, vectors) and the tiny torchvision ViT
# tests/data/vit_tiny-opset{13,17}.onnx with each class-token mode (--cls pool: 2-token windows
# over all 5 tokens, the last dropped, and token means; only: the class token; apart: the class
# token then windows over tokens 1..4; batch-first and sequence-first token tensors), at T = 32,
# over the first TRAIN (200) train and TEST (100) test images of Fashion-MNIST. extract_tiny
# gets every method; the ViT gets linear, all, head2toe, ncm and knn (layer and auto export the
# same linear graph as these, and their CV over the ViT's 44 layers takes minutes: METHODS=...
# overrides). Exit 1 on any mismatch. `make conformance-classify` runs it.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BASE=${H2T_CONF_DIR:-$ROOT/build/conformance/classify-tiny}
export TRAIN="${TRAIN:-200}" TEST="${TEST:-100}" T="${T:-32}" CHUNK=100
rc=0
H2T_CONF_DIR=$BASE/tiny MODEL=$ROOT/tests/data/extract_tiny.onnx NAME=fmnist-tiny \
    "$ROOT/tests/conformance/classify_ort.sh" || rc=1
for opset in 13 17; do
    for cls in pool only apart; do
        echo "vit_tiny-opset$opset, --cls $cls:"
        H2T_CONF_DIR=$BASE/vit$opset-$cls MODEL=$ROOT/tests/data/vit_tiny-opset$opset.onnx \
            NAME=fmnist-vit CLS=$cls METHODS=${METHODS:-linear all head2toe ncm knn} \
            "$ROOT/tests/conformance/classify_ort.sh" || rc=1
    done
done
exit $rc
