#!/bin/sh
# tests/fuzz/run.sh [SECONDS] - build the libFuzzer target for the frame decoder and request
# dispatch (clang, -fsanitize=fuzzer,address,undefined) and run it for SECONDS (default 20).
# make fuzz runs it for 300 s; a test in make test runs it briefly. Exit 0 when no crash.
set -eu
cd "$(dirname "$0")/../.."
secs=${1:-20}
out=build/fuzz
mkdir -p "$out/corpus"
make -s build/gen/proto/h2tdb.pb-c.c build/gen/proto/h2tdb.pb-c.h build/gen/onnx/onnx.pb-c.c \
    build/gen/onnx/onnx.pb-c.h >/dev/null
# the server's classify requests reach the extraction's executor (classify/, extract/)
srcs="$(ls common/*.c proto/*.c storage/*.c extract/*.c solver/*.c classify/*.c server/*.c)
      build/gen/proto/h2tdb.pb-c.c build/gen/onnx/onnx.pb-c.c tests/fuzz/fuzz_frame.c"
bin=$out/fuzz_frame
rebuild=0
[ -x "$bin" ] || rebuild=1
for s in $srcs common/*.h proto/*.h storage/*.h extract/*.h solver/*.h classify/*.h server/*.h; do
    [ "$s" -nt "$bin" ] && rebuild=1
done
if [ $rebuild = 1 ]; then
    clang -std=c11 -D_GNU_SOURCE -g -O1 -I. -Ibuild/gen -pthread \
        -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
        -Wno-deprecated-declarations $srcs \
        -llmdb -lopenblas -lprotobuf-c -luv -lz -lpng -ljpeg -lm -o "$bin.tmp"
    mv "$bin.tmp" "$bin"
fi
# seeds: health, stats of extraction "1", list jobs, get job 1
printf '\000\000\000\004\010\001\052\000' >"$out/corpus/seed_health"
printf '\000\000\000\007\010\002\152\003\012\0011' >"$out/corpus/seed_stats"
printf '\000\000\000\004\010\003\312\001' >"$out/corpus/seed_jobs_short"
printf '\000\000\000\006\010\004\262\001\002\010\001' >"$out/corpus/seed_getjob"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rc=0
H2T_FUZZ_DIR="$work" OPENBLAS_NUM_THREADS=1 ASAN_OPTIONS=detect_leaks=1 "$bin" \
    -max_total_time="$secs" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$out/" "$out/corpus" >"$work/log" 2>&1 || rc=$?
tail -n 12 "$work/log"
[ $rc = 0 ] || echo "fuzz: FAILED (exit $rc); the crashing input is in $out/" >&2
exit $rc
