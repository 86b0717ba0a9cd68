#!/bin/bash
# tests/soak/server_kill.sh - KILLS SIGKILLs of `h2tdb serve` (one worker) with queued and
# running train jobs. Each incarnation starts on the same store, gets 0..3 new jobs (linear,
# ncm, all, knn in turn, each with a seed of its own) and is killed at a random moment
# (seeded by SEED, 0..MAXMS ms after it listens). Then a last server runs every job to the end
# and the jobs are checked:
#   none lost: every job the client was told was queued is in the store, done;
#   none run twice: no job is started again after the server logged it done, none starts
#   twice in one server's life, and a job's attempts are its logged starts (+1 when a kill
#   fell between the record's update and the log line);
#   results identical: each job's exported head (weights, bias, features, cv_acc .npy) is
#   bitwise the one an uninterrupted server trains from the same store for the same request.
# Run by tests/soak/run.sh; prints its figures.
set -u
cd "$(dirname "$0")/../.." || exit 1
. tests/soak/lib.sh
KILLS=${KILLS:-100}
MAXMS=${MAXMS:-1500}
W=${SOAK_DIR:-$(mktemp -d /tmp/h2t-soak-server.XXXXXX)}
mkdir -p "$W"
t0=$(date +%s)
methods=(linear ncm all knn)
spid=
trap '[ -n "$spid" ] && kill -KILL "$spid" 2>/dev/null' EXIT

# start a server on store $1, log $2; sets $spid and $addr
serve() {
    rm -f "$W/port"
    "$H2T" serve --store "$1" --listen 127.0.0.1:0 --port-file "$W/port" --workers 1 \
        --job-priority normal >"$2" 2>&1 &
    spid=$!
    for _ in $(seq 1 200); do
        [ -s "$W/port" ] && break
        kill -0 "$spid" 2>/dev/null || die "the server did not start: $(tail -n 3 "$2")"
        sleep 0.05
    done
    [ -s "$W/port" ] || die "the server did not listen within 10 s"
    addr=127.0.0.1:$(cat "$W/port")
}
stop() {
    kill -TERM "$spid" && wait "$spid"
    spid=
}
# submit job number $1 (method and seed from it): its id into $jid
submit() {
    local m=${methods[$(($1 % 4))]} out
    out=$("$H2T" train --task t --method "$m" --seed "$1" --server "$addr" 2>&1) ||
        die "submitting job $1: $out"
    jid=$(echo "$out" | sed -n 's/^job \([0-9]*\) queued.*/\1/p')
    [ -n "$jid" ] || die "submitting job $1: $out"
}
# wait until no job is queued or running (at most 30 min)
drain() {
    for _ in $(seq 1 3600); do
        "$H2T" jobs --server "$addr" --json >"$W/jobs.json" 2>&1 || die "jobs: $(cat "$W/jobs.json")"
        grep -q '"state": "queued"\|"state": "running"' "$W/jobs.json" || return 0
        sleep 0.5
    done
    die "jobs still running after 30 min"
}
# export job $1's head from $addr and print the digest of its arrays
head_hash() {
    rm -rf "$W/exp"
    "$H2T" result "$1" --export "$W/exp" --server "$addr" >/dev/null 2>&1 || die "result $1"
    cat "$W/exp/weights.npy" "$W/exp/bias.npy" "$W/exp/features.npy" "$W/exp/cv_acc.npy" |
        sha256sum | cut -c1-64
}

soak_data "$W"
rm -rf "$W/base" "$W/st" "$W/ref"
(soak_extract "$W/base" "$W/extract.log") || die "extraction: $(cat "$W/extract.log")"
serve "$W/base" "$W/base.log"
"$H2T" task create t --extraction soak --train ids:0-3999 --test ids:4000-4999 \
    --server "$addr" >"$W/task.log" 2>&1 || die "task create: $(cat "$W/task.log")"
stop
cp -a "$W/base" "$W/st"
cp -a "$W/base" "$W/ref"
say "server soak: $KILLS kills at 0..$MAXMS ms, seed $SEED, in $W"

submitted=0 kills=0
: >"$W/ids.txt"
while [ "$kills" -lt "$KILLS" ]; do
    serve "$W/st" "$W/srv-$(printf %03d "$kills").log"
    rnd 4
    for _ in $(seq 1 "$R"); do
        submit "$submitted"
        echo "$submitted $jid" >>"$W/ids.txt"
        submitted=$((submitted + 1))
    done
    rnd "$MAXMS"
    sleep "$(awk -v m="$R" 'BEGIN { printf "%.3f", m / 1000 }')"
    kill -KILL "$spid" 2>/dev/null || die "the server died by itself: $(tail -n 3 "$W/srv-$(printf %03d "$kills").log")"
    wait "$spid" 2>/dev/null
    spid=
    kills=$((kills + 1))
    "$H2T" verify --store "$W/st" >"$W/verify.log" 2>&1 || die "kill $kills: verify: $(cat "$W/verify.log")"
done
t1=$(date +%s)
serve "$W/st" "$W/srv-final.log"
drain
cp "$W/jobs.json" "$W/final.json"
# none lost
while read -r n id; do
    grep -q "\"id\": $id, \"state\": \"done\"" "$W/final.json" ||
        die "job $id (request $n) is not done: $(grep "\"id\": $id," "$W/final.json")"
done <"$W/ids.txt"
njobs=$(grep -c '"id": ' "$W/final.json")
[ "$njobs" -eq "$submitted" ] || die "$submitted jobs submitted, $njobs in the store"
# none run twice
logs=$(ls "$W"/srv-*.log | sort)
reruns=0 unlogged=0
while read -r n id; do
    started=0 done_in='' seen_done=0
    for f in $logs; do
        s=$(grep -c "jobs: job $id: started" "$f")
        d=$(grep -c "jobs: job $id: done" "$f")
        [ "$s" -le 1 ] || die "job $id started $s times in one server's life ($f)"
        [ "$seen_done" -eq 1 ] && [ "$s" -gt 0 ] && die "job $id started again in $f after it was done in $done_in"
        started=$((started + s))
        [ "$d" -gt 0 ] && seen_done=1 && done_in=$f
    done
    att=$(grep "\"id\": $id," "$W/final.json" | sed -n 's/.*"attempts": \([0-9]*\).*/\1/p')
    [ "$att" -eq "$started" ] || [ "$att" -eq $((started + 1)) ] ||
        die "job $id: attempts $att in its record, $started starts logged"
    [ "$att" -gt "$started" ] && unlogged=$((unlogged + 1))
    reruns=$((reruns + att - 1))
done <"$W/ids.txt"
maxatt=$(sed -n 's/.*"attempts": \([0-9]*\).*/\1/p' "$W/final.json" | sort -n | tail -n 1)
# results identical to an uninterrupted server's
while read -r n id; do head_hash "$id"; done <"$W/ids.txt" >"$W/soak.heads"
stop
serve "$W/ref" "$W/ref.log"
: >"$W/ref.ids"
for n in $(seq 0 $((submitted - 1))); do
    submit "$n"
    echo "$n $jid" >>"$W/ref.ids"
done
drain
while read -r n id; do head_hash "$id"; done <"$W/ref.ids" >"$W/ref.heads"
stop
cmp -s "$W/soak.heads" "$W/ref.heads" ||
    die "heads differ from the uninterrupted server's: $(diff "$W/soak.heads" "$W/ref.heads" | head)"
t2=$(date +%s)
say "server soak: $kills kills, $submitted jobs, all done, none lost, none started again after done; $reruns re-runs of interrupted jobs (most attempts $maxatt; $unlogged kills between a job's record and its log line); every head bitwise equal to an uninterrupted server's; soak $((t1 - t0)) s, check $((t2 - t1)) s"
[ -n "${SOAK_KEEP:-}" ] || rm -rf "$W"
