#!/bin/sh
# make slurm-check: a one-machine Slurm cluster (munged, slurmctld, slurmd from Debian's
# munge, slurmctld, slurmd, slurm-client; all in a temporary folder, on ports 16817/16818 or
# $H2T_SLURM_PORT and the one after), then both batch scripts of deploy/slurm/ submitted on the
# tiny test model: the array job's three shards merged must equal one unsharded extraction, and
# the MPI job must write a manifest of three shards. The daemons are stopped by their pids.
#
#   make slurm-check            (needs root for munged/slurmd; deploy/deps.sh --slurm installs)
set -eu
cd "$(dirname "$0")/../.."
SRC=$(pwd)
H2TDB=${H2TDB:-$SRC/build/h2tdb}
PORT=${H2T_SLURM_PORT:-16817}
for t in munged slurmctld slurmd sbatch squeue; do
    command -v "$t" >/dev/null 2>&1 || {
        echo "slurm-check: $t not found (deploy/deps.sh --slurm installs Slurm and munge)" >&2
        exit 2
    }
done
T=$(mktemp -d /tmp/h2t-slurm.XXXXXX)
chmod 755 "$T"
stop() {
    for p in slurmd slurmctld munged; do
        if [ -f "$T/$p.pid" ]; then kill "$(cat "$T/$p.pid")" 2>/dev/null || true; fi
    done
    sleep 1
    rm -rf "$T"
}
trap stop EXIT
mkdir -p "$T/state" "$T/spool" "$T/log" "$T/work"
dd if=/dev/urandom of="$T/munge.key" bs=1024 count=1 2>/dev/null
chmod 400 "$T/munge.key"
munged --force --socket="$T/munge.sock" --key-file="$T/munge.key" --pid-file="$T/munged.pid" \
    --log-file="$T/log/munged.log" --seed-file="$T/munged.seed"
H=$(hostname -s)
cat >"$T/slurm.conf" <<EOC
ClusterName=h2tcheck
SlurmctldHost=$H
AuthType=auth/munge
AuthInfo=socket=$T/munge.sock
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
SlurmctldLogFile=$T/log/slurmctld.log
SlurmdLogFile=$T/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
NodeName=$H CPUs=$(nproc) State=UNKNOWN
PartitionName=check Nodes=$H Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOC
export SLURM_CONF="$T/slurm.conf"
slurmctld -c
slurmd
i=0
until sinfo -h -o %T 2>/dev/null | grep -q idle; do
    i=$((i + 1))
    [ $i -lt 30 ] || { echo "slurm-check: the node never became idle" >&2; cat "$T/log/"*.log >&2; exit 1; }
    sleep 1
done

# tiny data: 11 samples of 1x8x8 float32 and their labels
W="$T/work"
/usr/bin/python3 - "$W" <<'EOP'
import sys, numpy as np
w = sys.argv[1]
rs = np.random.RandomState(7)
np.save(w + "/x.npy", (rs.rand(11, 1, 8, 8) * 2 - 1).astype("<f4"))
np.save(w + "/y.npy", (np.arange(11) % 3).astype("<i4"))
EOP
MODEL="$SRC/tests/data/extract_tiny.onnx"
DATA="npy:$W/x.npy,$W/y.npy"
OPTS="--target-size 8 --batch 2 --no-progress"

wait_job() { # jobid: until it leaves the queue, then its logs must not hold an error
    i=0
    while squeue -h -j "$1" 2>/dev/null | grep -q .; do
        i=$((i + 1))
        [ $i -lt 120 ] || { echo "slurm-check: job $1 still queued after 120 s" >&2; exit 1; }
        sleep 1
    done
}

# 1. the array script: three shards, merged, equal to one unsharded extraction
# shellcheck disable=SC2086
jid=$(cd "$W" && H2TDB="$H2TDB" sbatch --parsable --array=0-2 --cpus-per-task=1 \
    "$SRC/deploy/slurm/extract_shard.sbatch" "$MODEL" "$DATA" "$W/arr" $OPTS)
wait_job "$jid"
for k in 0 1 2; do
    grep -q "computed now" "$W/h2tdb-extract-${jid}_$k.log" || {
        echo "slurm-check: array task $k did not extract:" >&2
        cat "$W/h2tdb-extract-${jid}_$k.log" >&2
        exit 1
    }
done
"$H2TDB" merge --store "$W/merged" --batch 2 "$W/arr/shard.0" "$W/arr/shard.1" "$W/arr/shard.2" >/dev/null
# shellcheck disable=SC2086
out=$("$H2TDB" extract --store "$W/merged" --model "$MODEL" --data "$DATA" $OPTS)
case "$out" in *"already complete (11 samples"*) ;; *)
    echo "slurm-check: the merged shards are not the unsharded extraction: $out" >&2
    exit 1 ;;
esac
"$H2TDB" set-manifest "$W/arr" --batch 2 >/dev/null
"$H2TDB" ls --store "$W/arr" | grep -q "11/11  done" || {
    echo "slurm-check: the array's shard stores do not read as one store set" >&2
    exit 1
}
echo "slurm-check: array job $jid: 3 shards extracted under Slurm, merged = unsharded, read as a set"

# 2. the MPI script: one job of three tasks, a manifest of three shards
if command -v mpirun >/dev/null 2>&1; then
    # shellcheck disable=SC2086
    jid=$(cd "$W" && H2TDB="$H2TDB" OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
        OMPI_MCA_btl_vader_single_copy_mechanism=none MPIRUN="mpirun --oversubscribe" \
        sbatch --parsable --ntasks=3 --cpus-per-task=1 --overcommit \
        "$SRC/deploy/slurm/extract_mpi.sbatch" "$MODEL" "$DATA" "$W/set" $OPTS)
    wait_job "$jid"
    grep -q "^shards 3$" "$W/set/store-set.txt" 2>/dev/null || {
        echo "slurm-check: the MPI job wrote no manifest of 3 shards:" >&2
        cat "$W/h2tdb-extract-mpi-$jid.log" >&2
        exit 1
    }
    echo "slurm-check: MPI job $jid: 3 ranks under Slurm, manifest $W/set/store-set.txt"
else
    echo "slurm-check: mpirun not found: the MPI script was not submitted" >&2
    exit 1
fi
echo "slurm-check: ok"
