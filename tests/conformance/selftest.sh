#!/bin/sh
# tests/conformance/selftest.sh: the comparison itself can fail. Builds small dumps with
# common.py and checks compare.py's verdicts: equal -> PASS, an error of 0.9e-3 of the
# largest magnitude -> PASS, 2e-3 -> FAIL, a shape change -> FAIL, a missing tensor -> FAIL
# with --require-all, a NaN -> FAIL; with --got-only (a dump of the layer rule's tensors
# against a full reference): a subset -> PASS, a tensor the reference lacks -> FAIL, a
# layer listed in layers.tsv but not dumped -> FAIL. Fast, no models needed.
set -eu
C=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 - "$tmp" "$C" <<'PY'
import sys
import numpy as np
sys.dont_write_bytecode = True
sys.path.insert(0, sys.argv[2])
from common import write_dump
t = sys.argv[1]
rng = np.random.default_rng(0)
a = rng.normal(size=(2, 3, 4, 4)).astype(np.float32)
b = rng.normal(size=(2, 5)).astype(np.float32)
big = float(np.abs(a).max())
def w(name, x, y):
    write_dump(t + "/" + name, [("conv", x), ("fc", y)])
w("ref", a, b)
w("same", a, b)
ok = a.copy(); ok[1, 2, 3, 3] += 0.9e-3 * big; w("small", ok, b)
bad = a.copy(); bad[0, 0, 0, 0] += 2e-3 * big; w("big", bad, b)
w("shape", a.reshape(2, 3, 16), b)
nan = b.copy(); nan[1, 1] = np.nan; w("nan", a, nan)
write_dump(t + "/missing", [("conv", a)])
write_dump(t + "/subset", [("fc", b)])
write_dump(t + "/extra", [("fc", b), ("other", b)])
write_dump(t + "/nolayer", [("fc", b)])
for name, layers in (("subset", "fc"), ("extra", "fc"), ("nolayer", "fc conv")):
    with open(t + "/" + name + "/layers.tsv", "w") as f:
        f.writelines("%s\tGemm\t2\n" % n for n in layers.split())
PY
check() { # check EXPECTED_RC NAME [ARGS]
    want=$1; name=$2; shift 2
    rc=0
    /usr/bin/python3 "$C/compare.py" "$tmp/ref" "$tmp/$name" "$@" >"$tmp/out" || rc=$?
    if [ "$rc" != "$want" ]; then
        echo "selftest: $name: exit $rc, expected $want" >&2
        cat "$tmp/out" >&2
        exit 1
    fi
    echo "selftest: $name${*:+ $*}: $(grep "tolerance" "$tmp/out" | sed "s/.*: //") as expected"
}
check 0 same
check 0 small
check 1 big
check 1 shape
check 1 nan
check 0 missing
check 1 missing --require-all
check 0 subset --got-only
check 1 extra --got-only
check 1 nolayer --got-only
echo "selftest: ok"
