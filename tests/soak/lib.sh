# shellcheck shell=bash disable=SC2034
# tests/soak/lib.sh - shared by the soak scripts (sourced): the binaries, a seeded random
# number stream, the data set and the reference extraction.
H2T=${H2T_BIN:-$PWD/build/h2tdb}
HASH=${H2T_STOREHASH:-$PWD/build/soak/storehash}
MODEL=${SOAK_MODEL:-$PWD/tests/data/extract_tiny.onnx}
N=${SOAK_N:-20000}
SEED=${SEED:-1}
export OPENBLAS_NUM_THREADS=1

say() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*"; }
die() {
    say "FAILED: $*" >&2
    exit 1
}

# the next number of a seeded stream (xorshift32 in bash arithmetic: the same numbers on
# every machine)
rnd_state=$(((SEED * 2654435761) % 4294967296 | 1))
rnd() { # rnd MAX: 0..MAX-1 into $R
    local s=$rnd_state
    s=$(((s ^ (s << 13)) & 0xffffffff))
    s=$((s ^ (s >> 17)))
    s=$(((s ^ (s << 5)) & 0xffffffff))
    rnd_state=$s
    R=$((s % $1))
}

# data.npy (N x 8 x 8 uint8) and labels.npy (N int64 < 4) in $1, seeded by SEED
soak_data() {
    /usr/bin/python3 - "$1" "$N" "$SEED" <<'PY' || die "writing the data set (numpy)"
import sys
import numpy as np
out, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
r = np.random.RandomState(seed)
np.save(out + "/data.npy", r.randint(0, 256, size=(n, 8, 8), dtype=np.uint8))
np.save(out + "/labels.npy", r.randint(0, 4, size=n).astype(np.int64))
PY
}

# the extraction command on store $1 (all output to $2); it replaces the calling (sub)shell,
# so that `soak_extract ... &` gives the pid of h2tdb itself
soak_extract() {
    exec "$H2T" extract --store "$1" --model "$MODEL" --data "npy:$W/data.npy,$W/labels.npy" \
        --name soak --threads 1 >"$2" 2>&1
}
