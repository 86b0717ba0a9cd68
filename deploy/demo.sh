#!/bin/sh
# make demo: the main job end to end on real data, as a new user would run it.
#
#  1. installs what it needs (deploy/deps.sh --demo), builds h2tdb
#  2. fetches the backbone: the Keras MobileNetV2 (ImageNet weights) shipped in the npm package
#     nsfwjs 4.4.0, converted to ONNX by deploy/fetch_model.sh
#  3. one extraction pass over Fashion-MNIST (Debian dataset-fashion-mnist): the first
#     $TRAIN train images and the first $TEST test images, every layer pooled to T=$T
#  4. starts `h2tdb serve` on that store, defines three tasks on the one extraction (the 10
#     classes; footwear / tops / other; a 100-image 10-class task), trains linear, all and
#     head2toe heads through the client, prints the results table, draws the head2toe head
#     (demo/head2toe.svg), stops the server
#
# A second run reuses the stored extraction (no backbone pass) and the finished jobs: the server
# answers a submit whose spec (task and its samples, extraction, method, every option) equals a
# finished job's with that job, so the run only prints; RETRAIN=1 submits with --retrain and
# trains every head again.
# Environment: H2T_DEMO_DIR (default ./demo), TRAIN (1000), TEST (2000), T (512),
# THREADS (2), KEEP_STORE=0 to start from an empty store, RETRAIN=1.
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DIR=${H2T_DEMO_DIR:-$ROOT/demo}
TRAIN=${TRAIN:-1000}
TEST=${TEST:-2000}
T=${T:-512}
THREADS=${THREADS:-2}
H2T=$ROOT/build/h2tdb
DATA=/usr/share/datasets/fashion-mnist

say() { printf '\n== %s\n' "$*"; }
t_start=$(date +%s)

say "dependencies and build"
./deploy/deps.sh --demo
make -s all

say "backbone: MobileNetV2 (nsfwjs 4.4.0) -> ONNX"
./deploy/fetch_model.sh
MODEL=$ROOT/models/mobilenet_v2.onnx

mkdir -p "$DIR"
STORE=$DIR/store-$TRAIN-$TEST-$T # one store per protocol, so its tasks and jobs stay comparable
[ "${KEEP_STORE:-1}" = 0 ] && rm -rf "$STORE"

say "extraction: every layer of MobileNetV2 over Fashion-MNIST ($TRAIN train + $TEST test images, T=$T)"
t0=$(date +%s)
"$H2T" extract --store "$STORE" --model "$MODEL" --data "idx:$DATA" --name fmnist-mnv2 \
    --source-name fashion-mnist --train "$TRAIN" --test "$TEST" --target-size "$T" \
    --threads "$THREADS"
t_extract=$(( $(date +%s) - t0 ))
"$H2T" ls --store "$STORE"

say "server"
PORTFILE=$DIR/port
rm -f "$PORTFILE"
"$H2T" serve --store "$STORE" --listen 127.0.0.1:0 --port-file "$PORTFILE" --workers 1 \
    2>"$DIR/server.log" &
SERVER_PID=$!
trap 'kill $SERVER_PID 2>/dev/null || true' EXIT INT TERM
i=0
while [ ! -s "$PORTFILE" ]; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! kill -0 $SERVER_PID 2>/dev/null; then
        echo "demo: the server did not start; its log:" >&2
        cat "$DIR/server.log" >&2
        exit 1
    fi
    sleep 0.1
done
export H2T_SERVER=127.0.0.1:$(cat "$PORTFILE")
echo "h2tdb serve listening on $H2T_SERVER (log: $DIR/server.log)"

say "tasks: three downstream tasks on the one extraction"
cat >"$DIR/coarse.map" <<'MAP'
# Fashion-MNIST regrouped: footwear / tops / other
Sandal = footwear
Sneaker = footwear
Ankle boot = footwear
T-shirt/top = tops
Pullover = tops
Coat = tops
Shirt = tops
* = other
MAP
"$H2T" task create fmnist10 --extraction fmnist-mnv2 --train "train:$TRAIN" --test test --replace
"$H2T" task create fmnist-coarse --extraction fmnist-mnv2 --train "train:$TRAIN" --test test \
    --map "$DIR/coarse.map" --replace
"$H2T" task create fmnist10-100 --extraction fmnist-mnv2 --train "train:$TRAIN" --test test \
    --shots 10 --replace
"$H2T" tasks

say "training (5-fold cross-validation on the training samples; then the test split)"
RETRAIN_FLAG=""
[ "${RETRAIN:-0}" = 1 ] && RETRAIN_FLAG=--retrain
submit() { # task method -> "ID queued" or "ID reused" (the server's answer) on stdout
    # shellcheck disable=SC2086
    "$H2T" train --task "$1" --method "$2" --threads "$THREADS" $RETRAIN_FLAG |
        sed -n 's/^job \([0-9][0-9]*\) \(queued\|reused\).*/\1 \2/p'
}
JOBS=""
for tm in fmnist10:linear fmnist10:all fmnist10:head2toe fmnist-coarse:linear \
          fmnist-coarse:head2toe fmnist10-100:linear fmnist10-100:head2toe; do
    out=$(submit "${tm%%:*}" "${tm#*:}")
    id=${out%% *}
    if [ -z "$id" ]; then
        echo "demo: submitting ${tm#*:} on ${tm%%:*} failed; server log: $DIR/server.log" >&2
        exit 1
    fi
    if [ "${out#* }" = reused ]; then
        echo "job $id: ${tm#*:} on ${tm%%:*} finished earlier with the same spec: reused"
    else
        echo "job $id: ${tm#*:} on ${tm%%:*} queued"
    fi
    JOBS="$JOBS $id"
    [ "$tm" = fmnist10:head2toe ] && H2T_JOB=$id
done
for id in $JOBS; do
    if ! "$H2T" job "$id" --watch; then
        echo "demo: job $id did not finish; server log: $DIR/server.log" >&2
        exit 1
    fi
done

say "results (test split: $TEST images)"
# shellcheck disable=SC2086
"$H2T" compare $JOBS | tee "$DIR/results.txt"

"$H2T" report "$H2T_JOB" --out "$DIR/head2toe.svg" \
    --title "Head2Toe on Fashion-MNIST ($TRAIN train images), MobileNetV2 features"

kill $SERVER_PID
wait $SERVER_PID 2>/dev/null || true
trap - EXIT INT TERM
say "done in $(( $(date +%s) - t_start ))s (extraction step: ${t_extract}s); store: $STORE"
