#!/bin/sh
# tests/fuzz/run.sh [SECONDS] [TARGET...] - build libFuzzer targets (clang,
# -fsanitize=fuzzer,address,undefined) and run each for SECONDS (default 20); SECONDS 0
# replays every seed of tests/fuzz/seeds/TARGET once (make test does). Targets:
#   frame  the frame reader, Envelope decoder and request dispatch (fuzz_frame.c; the default)
#   onnx   the ONNX loader and shape inference (fuzz_onnx.c)
#   data   the npy, IDX and PNG/JPEG folder readers (fuzz_data.c)
#   sel    the task selection parser with its cap (fuzz_sel.c)
#   store  the store's record decoders over LMDB values (fuzz_store.c)
# Seeds: tests/fuzz/seeds/TARGET/ (in the repository; regression-* are inputs that once failed,
# docs/robustness.md) and what earlier runs kept (build/fuzz/corpus-TARGET/). make test runs frame briefly, make fuzz each target for 60 s,
# make fuzz-long each for an hour. Exit 0 when no target crashed.
set -eu
cd "$(dirname "$0")/../.."
secs=${1:-20}
[ $# -gt 0 ] && shift
[ $# -gt 0 ] || set -- frame
out=build/fuzz
mkdir -p "$out/lib"
make -s build/gen/proto/h2tdb.pb-c.c build/gen/proto/h2tdb.pb-c.h build/gen/onnx/onnx.pb-c.c \
    build/gen/onnx/onnx.pb-c.h >/dev/null
CFLAGS="-std=c11 -D_GNU_SOURCE -g -O1 -I. -Ibuild/gen -pthread -fno-sanitize-recover=undefined \
-Wno-deprecated-declarations"
LIBS="-llmdb -lopenblas -lprotobuf-c -luv -lz -lpng -ljpeg -lm"
MODS="common proto storage extract solver classify server"

# the library (every module the targets reach; the server's classify requests reach the
# executor), compiled once with the sanitizers and fuzzer coverage; a file is recompiled when
# it or any module header is newer than its object
objs=""
for s in $(for m in $MODS; do ls $m/*.c; done) build/gen/proto/h2tdb.pb-c.c \
    build/gen/onnx/onnx.pb-c.c; do
    o="$out/lib/$(echo "$s" | tr / _ | sed 's/\.c$/.o/')"
    # shellcheck disable=SC2086
    if [ ! -f "$o" ] || [ "$s" -nt "$o" ] ||
        [ -n "$(find $MODS tests/fixture.h -name '*.h' -newer "$o" 2>/dev/null | head -n 1)" ]; then
        # shellcheck disable=SC2086
        clang $CFLAGS -fsanitize=fuzzer-no-link,address,undefined -c "$s" -o "$o"
    fi
    objs="$objs $o"
done

rc=0
for t in "$@"; do
    bin=$out/fuzz_$t
    src=tests/fuzz/fuzz_$t.c
    [ -f "$src" ] || { echo "fuzz: no target '$t' ($src)" >&2; exit 2; }
    # shellcheck disable=SC2086
    clang $CFLAGS -fsanitize=fuzzer,address,undefined "$src" $objs $LIBS -o "$bin.tmp"
    mv "$bin.tmp" "$bin"
    corpus=$out/corpus-$t
    mkdir -p "$corpus"
    maxlen=65536
    if [ "$t" = frame ]; then
        maxlen=4096
        # seeds: health, stats of extraction "1", list jobs, get job 1
        printf '\000\000\000\004\010\001\052\000' >"$corpus/seed_health"
        printf '\000\000\000\007\010\002\152\003\012\0011' >"$corpus/seed_stats"
        printf '\000\000\000\004\010\003\312\001' >"$corpus/seed_jobs_short"
        printf '\000\000\000\006\010\004\262\001\002\010\001' >"$corpus/seed_getjob"
    fi
    seeds=""
    [ -d "tests/fuzz/seeds/$t" ] && seeds="tests/fuzz/seeds/$t"
    work=$(mktemp -d)
    r=0
    if [ "$secs" = 0 ]; then
        # replay: every seed once (the regression inputs among them), nothing mutated; frame's
        # seeds are the ones written above
        if [ "$t" = frame ]; then
            inputs=$(find "$corpus" -name 'seed_*' | sort)
        else
            inputs=$(find "tests/fuzz/seeds/$t" -type f 2>/dev/null | sort)
        fi
        if [ -z "$inputs" ]; then # without inputs libFuzzer would fuzz without end
            echo "fuzz $t: no seeds to replay" >&2
            rm -rf "$work"
            rc=2
            continue
        fi
        # shellcheck disable=SC2086
        H2T_FUZZ_DIR="$work" OPENBLAS_NUM_THREADS=1 ASAN_OPTIONS=detect_leaks=1 "$bin" \
            -timeout=60 -rss_limit_mb=2048 -runs=0 $inputs >"$work/log" 2>&1 || r=$?
        echo "== fuzz $t: $(grep -c '^Executed' "$work/log") seeds replayed"
        if [ $r != 0 ]; then
            tail -n 40 "$work/log"
            echo "fuzz $t: a seed FAILED (exit $r)" >&2
            rc=$r
        fi
        rm -rf "$work"
        continue
    fi
    # shellcheck disable=SC2086
    H2T_FUZZ_DIR="$work" OPENBLAS_NUM_THREADS=1 ASAN_OPTIONS=detect_leaks=1 "$bin" \
        -max_total_time="$secs" -max_len=$maxlen -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$out/$t-" "$corpus" $seeds >"$work/log" 2>&1 || r=$?
    echo "== fuzz $t: $secs s"
    grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' "$work/log" || true
    if [ $r != 0 ]; then
        tail -n 40 "$work/log"
        echo "fuzz $t: FAILED (exit $r); the crashing input is in $out/$t-*" >&2
        rc=$r
    fi
    rm -rf "$work"
done
exit $rc
