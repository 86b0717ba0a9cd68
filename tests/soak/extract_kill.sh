#!/bin/bash
# tests/soak/extract_kill.sh - KILLS SIGKILLs of `h2tdb extract` at random moments (seeded by
# SEED), each followed by the same command again, which resumes; after each kill `h2tdb
# verify` must pass, and each finished extraction must hash (build/soak/storehash: every
# feature vector and statistics record) the same as an uninterrupted run. A round is one
# extraction from an empty store, killed until it finishes by itself; rounds repeat until
# KILLS kills. Kill moments are uniform in 0..MAXMS ms after the start (model load, store open
# and the first transaction included). Run by tests/soak/run.sh; prints its figures.
set -u
cd "$(dirname "$0")/../.." || exit 1
. tests/soak/lib.sh
KILLS=${KILLS:-100}
MAXMS=${MAXMS:-1500}
W=${SOAK_DIR:-$(mktemp -d /tmp/h2t-soak-extract.XXXXXX)}
mkdir -p "$W"
t0=$(date +%s)
soak_data "$W"
say "extract soak: $N samples, model $(basename "$MODEL"), $KILLS kills at 0..$MAXMS ms, seed $SEED, in $W"
rm -rf "$W/ref"
r0=$(date +%s.%N)
(soak_extract "$W/ref" "$W/ref.log") || die "the uninterrupted extraction: $(cat "$W/ref.log")"
r1=$(date +%s.%N)
"$HASH" "$W/ref" soak >"$W/ref.hash" || die "hashing the reference"
say "uninterrupted: $(awk -v a="$r0" -v b="$r1" 'BEGIN { printf "%.1f s", b - a }'), $(tail -n 1 "$W/ref.hash")"

kills=0 rounds=0 starts=0 empty=0
: >"$W/kills.txt"
while [ "$kills" -lt "$KILLS" ]; do
    rounds=$((rounds + 1))
    rm -rf "$W/st"
    while :; do
        starts=$((starts + 1))
        soak_extract "$W/st" "$W/run.log" &
        pid=$!
        if [ "$kills" -lt "$KILLS" ]; then
            rnd "$MAXMS"
            sleep "$(awk -v m="$R" 'BEGIN { printf "%.3f", m / 1000 }')"
        else
            R=-1 # the last round runs to its end
        fi
        if [ "$R" -ge 0 ] && kill -KILL "$pid" 2>/dev/null; then
            wait "$pid" 2>/dev/null
            kills=$((kills + 1))
            if [ -f "$W/st/data.mdb" ]; then
                "$H2T" verify --store "$W/st" >"$W/verify.log" 2>&1 ||
                    die "kill $kills (round $rounds, at $R ms): verify: $(cat "$W/verify.log")"
                done_at=$("$HASH" "$W/st" soak 2>/dev/null | sed -n 's/.* samples \([0-9]*\)\/.*/\1/p')
            else
                done_at=none
            fi
            [ -z "$done_at" ] && done_at=0 && empty=$((empty + 1))
            echo "kill $kills round $rounds at $R ms: samples_done $done_at" >>"$W/kills.txt"
        else
            wait "$pid" || die "round $rounds: the extraction failed: $(tail -n 5 "$W/run.log")"
            "$HASH" "$W/st" soak >"$W/st.hash" || die "round $rounds: hashing"
            cmp -s "$W/ref.hash" "$W/st.hash" ||
                die "round $rounds: the resumed store differs from the uninterrupted one: $(diff "$W/ref.hash" "$W/st.hash")"
            say "round $rounds: equal to the uninterrupted run after $kills kills in all"
            break
        fi
    done
done
t1=$(date +%s)
before=$(grep -c "samples_done none\|samples_done 0$" "$W/kills.txt")
mid=$(grep -vc "samples_done none\|samples_done 0$\|samples_done $N$" "$W/kills.txt")
after=$(grep -c "samples_done $N$" "$W/kills.txt")
say "extract soak: $kills kills, $starts starts ($((starts - rounds)) resumes), $rounds rounds, every round bitwise equal to the uninterrupted run, verify clean after every kill; kills before the first batch $before, mid-extraction $mid, after the last batch $after; $((t1 - t0)) s"
[ -n "${SOAK_KEEP:-}" ] || rm -rf "$W"
