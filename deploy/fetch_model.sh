#!/bin/sh
# Fetch the models h2tdb's demo, conformance checks and benchmarks use. Idempotent: a model
# whose file already has the expected sha256 is left alone.
#   deploy/fetch_model.sh              models/mobilenet_v2.onnx (from npm nsfwjs 4.4.0)
#   deploy/fetch_model.sh --resnet     also models/resnet18.onnx, models/resnet50.onnx
#   deploy/fetch_model.sh --ort        also onnxruntime-node (the conformance/bench peer)
#   deploy/fetch_model.sh --all        all of the above
# Models go to $H2T_MODELS_DIR (default models/, git-ignored), npm packages to
# $H2T_NPM_CACHE (default models/.npm). Needs nodejs + npm and /usr/bin/python3 with
# python3-onnx + numpy (deploy/deps.sh --demo/--bench); --resnet needs python3-torch +
# python3-torchvision. onnxruntime-node 1.30.0 loads under Debian's node 20 without its
# install script (the CPU binding ships in the tarball). npm warns that nsfwjs 4.4.0 wants
# node 22.13: harmless, only its model files are used here (tfjs runs them under node 20).
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MODELS="${H2T_MODELS_DIR:-$ROOT/models}"
NPM_DIR="${H2T_NPM_CACHE:-$MODELS/.npm}"
NSFWJS_VERSION=4.4.0
ORT_VERSION=1.30.0
# sha256 of the converted file: the conversion is deterministic (same npm tarball, same
# numpy/onnx code path); a mismatch means the source or the converter changed.
MOBILENET_SHA256=9d3b4d51325c873df5c94ddd66e80bbad7ae074444b00b37ff23972716eb882c

want_resnet=0
want_ort=0
for a in "$@"; do
    case "$a" in
    --resnet) want_resnet=1 ;;
    --ort) want_ort=1 ;;
    --all) want_resnet=1; want_ort=1 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "fetch_model.sh: unknown option '$a' (try --help)" >&2; exit 2 ;;
    esac
done

sha() { sha256sum "$1" | cut -d' ' -f1; }

npm_add() { # npm_add PKG@VERSION: install into the cache folder unless already there
    pkg=${1%@*}
    ver=${1##*@}
    mkdir -p "$NPM_DIR"
    [ -f "$NPM_DIR/package.json" ] || echo '{"name":"h2tdb-models","private":true}' >"$NPM_DIR/package.json"
    if [ -f "$NPM_DIR/node_modules/$pkg/package.json" ] &&
        node -e "process.exit(require('$NPM_DIR/node_modules/$pkg/package.json').version==='$ver'?0:1)"; then
        return 0
    fi
    echo "fetch_model.sh: npm install $1 into $NPM_DIR" >&2
    # --ignore-scripts: install scripts reach outside (onnxruntime-node downloads CUDA bits);
    # the prebuilt CPU binding ships in the tarball.
    (cd "$NPM_DIR" && npm install --no-audit --no-fund --ignore-scripts --save-exact "$1" >&2)
}

mobilenet() {
    out="$MODELS/mobilenet_v2.onnx"
    if [ -f "$out" ] && [ "$(sha "$out")" = "$MOBILENET_SHA256" ]; then
        return 0
    fi
    npm_add "nsfwjs@$NSFWJS_VERSION"
    src="$NPM_DIR/node_modules/nsfwjs/dist/models/mobilenet_v2"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    # The bundles are browserify modules: model.min.js exports {modelTopology,
    # weightsManifest}, each group1-shardKofN.min.js a base64 string of the shard's bytes.
    node - "$src" "$tmp" <<'EOF'
const fs = require("fs"), path = require("path");
const [src, dst] = process.argv.slice(2);
const j = require(path.join(src, "model.min.js"));
const model = j.default || j;
const bufs = [];
for (const group of model.weightsManifest)
    for (const p of group.paths) {
        const b64 = require(path.join(src, p + ".min.js"));
        bufs.push(Buffer.from(typeof b64 === "string" ? b64 : b64.default, "base64"));
    }
fs.writeFileSync(path.join(dst, "model.json"), JSON.stringify(model));
fs.writeFileSync(path.join(dst, "weights.bin"), Buffer.concat(bufs));
EOF
    mkdir -p "$MODELS"
    /usr/bin/python3 "$ROOT/deploy/convert_mobilenet.py" "$tmp/model.json" "$tmp/weights.bin" \
        "$out" "npm:nsfwjs@$NSFWJS_VERSION/dist/models/mobilenet_v2"
    got=$(sha "$out")
    if [ "$got" != "$MOBILENET_SHA256" ]; then
        echo "fetch_model.sh: warning: $out has sha256 $got, expected $MOBILENET_SHA256" >&2
        echo "  (source or converter changed; check it with tests/conformance/ort_compare.sh)" >&2
    fi
    rm -rf "$tmp"
    trap - EXIT
}

mobilenet
if [ $want_resnet = 1 ]; then
    /usr/bin/python3 "$ROOT/deploy/export_resnet.py" "$MODELS"
fi
if [ $want_ort = 1 ]; then
    npm_add "onnxruntime-node@$ORT_VERSION"
    (cd "$NPM_DIR" && node -e "require('onnxruntime-node')") || {
        echo "fetch_model.sh: onnxruntime-node does not load under $(node --version)" >&2
        exit 1
    }
fi
echo "$MODELS/mobilenet_v2.onnx sha256 $(sha "$MODELS/mobilenet_v2.onnx")"
