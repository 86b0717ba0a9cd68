#!/bin/sh
# Install the Debian packages h2tdb needs. Idempotent: quiet when everything is there.
#   deploy/deps.sh            build + test dependencies (what `make test` needs, OpenMPI too)
#   deploy/deps.sh --demo     also the real data set (Fashion-MNIST) and npm (model fetch)
#   deploy/deps.sh --bench    also the peers used by `make bench` and conformance scripts
#   deploy/deps.sh --eval     also what `make eval` needs: --demo's, PIL, the glyph fonts
#   deploy/deps.sh --slurm    also Slurm and munge for `make slurm-check` (one-machine cluster)
# Run as root, or as a user with sudo.
set -eu

BUILD="build-essential pkg-config liblmdb-dev lmdb-utils libopenblas-dev libprotobuf-c-dev
protobuf-c-compiler libuv1-dev libonnx-dev zlib1g-dev libpng-dev libjpeg62-turbo-dev
clang libclang-rt-14-dev libonnx-testdata clang-format
protobuf-compiler python3-protobuf python3-numpy python3-pip python3-venv python3-yaml
libdnnl2"
# MPI is optional at build time (without mpicc the Makefile builds without it and `--mpi`
# says so); it is in the default set so that CI builds with it and runs the mpirun tests.
MPI="libopenmpi-dev openmpi-bin"
SLURM="munge slurmctld slurmd slurm-client"
DEMO="dataset-fashion-mnist nodejs"
EVAL="python3-pil fonts-dejavu-core fonts-liberation fonts-freefont-ttf"
BENCH="r-cran-glmnet python3-sklearn python3-numpy python3-torch python3-torchvision python3-onnx nodejs
libblis-dev libdnnl-dev"

want="$BUILD $MPI"
for a in "$@"; do
    case "$a" in
    --demo) want="$want $DEMO" ;;
    --bench) want="$want $DEMO $BENCH" ;;
    --eval) want="$want $DEMO $EVAL" ;;
    --slurm) want="$want $SLURM" ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "deps.sh: unknown option '$a' (try --help)" >&2; exit 2 ;;
    esac
done

missing=""
for p in $want; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing="$missing $p"
    fi
done
# Debian's nodejs ships npm separately; NodeSource's nodejs bundles it (and conflicts with it).
case "$want" in *nodejs*) command -v npm >/dev/null 2>&1 || missing="$missing npm" ;; esac
[ -z "$missing" ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "deps.sh: installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
