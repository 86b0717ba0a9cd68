#!/bin/sh
# glmnet conformance: h2tdb's group-lasso multinomial solutions vs glmnet's
# (type.multinomial = "grouped", Debian r-cran-glmnet) on a shared matrix; the penalised
# objectives must agree within 1e-3 relative at every lambda.
#   tests/conformance/glmnet_check.sh [n layers dim classes seed]
# Needs: make (build/libh2tdb.a), Rscript with glmnet (apt-get install r-cran-glmnet).
set -eu
cd "$(dirname "$0")/../.."
N=${1:-300}; L=${2:-4}; DL=${3:-50}; K=${4:-4}; SEED=${5:-1}
command -v Rscript >/dev/null || { echo "glmnet_check: Rscript missing (apt-get install r-cran-glmnet)"; exit 2; }
Rscript -e 'suppressMessages(library(glmnet))' || { echo "glmnet_check: R package glmnet missing"; exit 2; }
make -s build/libh2tdb.a
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
cc -std=c11 -O2 -D_GNU_SOURCE -I. tests/conformance/glmnet_fit.c build/libh2tdb.a \
   -llmdb -lopenblas -lprotobuf-c -luv -lz -lpng -ljpeg -lm -pthread -o "$TMP/glmnet_fit"
OPENBLAS_NUM_THREADS=1 "$TMP/glmnet_fit" "$TMP" "$N" "$L" "$DL" "$K" "$SEED"
Rscript tests/conformance/glmnet_check.R "$TMP" "$N" $((L * DL)) "$K"
