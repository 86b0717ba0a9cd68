#!/usr/bin/python3
"""Write the tiny vision transformer of tests/test_vit_tiny.c and its expected tensors.

    /usr/bin/python3 tests/data/make_vit_tiny.py [OUT_DIR]     (default tests/data/)

torchvision's VisionTransformer(image_size=16, patch_size=8, num_layers=2, num_heads=2,
hidden_dim=16, mlp_dim=32, num_classes=10): the graph torch.onnx.export writes for
vit_b_16 (class token concatenated through Expand, MultiheadAttention with its sequence-first
transposes, the Erf form of GELU, LayerNorm decomposed at opset 13 and LayerNormalization at
17, the shape arithmetic of a dynamic batch), at a size that fits in the repository: 4 patches
+ the class token = 5 tokens of 16 values, two heads of 8. Exported at opsets 13 and 17 with
a dynamic batch axis, weights drawn as deploy/export_zoo.py draws them (torchvision's
initialisation under a fixed seed, constant parameters redrawn so that no LayerNorm is an
identity and the zero-initialised classifier and class token are not zero).

Files, for K in 13 and 17:
  vit_tiny-opsetK.onnx     the model (input "input" N x 3 x 16 x 16, output "logits" N x 10)
  vit_tiny-opsetK.expect   the input (batch 2, seeded) and, as ONNX Runtime computes them,
                           every float32 node output of rank 2 or more that is not the output
                           of an operator that only moves or copies values (Reshape,
                           Transpose, Squeeze, Unsqueeze, Flatten, Identity, Dropout, Expand,
                           Cast: their values are in the tensors they come from); every one of
                           them is compared by the test.
The .expect format: a line "h2tdb-expect 1 COUNT", then COUNT lines "NAME<TAB>d0,d1,...", then
the tensors' float32 values (little-endian, C order) one after the other in the same order;
the first tensor is the graph input.

Needs python3-torch, python3-torchvision, python3-onnx, numpy, and onnxruntime-node
(deploy/fetch_model.sh --ort) for the expected values; the test itself needs none of them.
ONNX Runtime runs with one thread and graph optimisations off (tests/conformance/ort_run.js),
every node output exposed (tests/conformance/expose_all.py).
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "deploy"))
sys.path.insert(0, os.path.join(ROOT, "tests", "conformance"))

SEED = 20240601
BATCH = 2
SIZE = 16
MOVES = {"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Dropout",
         "Expand", "Cast"}


def build():
    import torch
    from torchvision.models.vision_transformer import VisionTransformer
    from export_zoo import redraw_constants

    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED + 1)
    model = VisionTransformer(image_size=SIZE, patch_size=8, num_layers=2, num_heads=2,
                              hidden_dim=16, mlp_dim=32, num_classes=10)
    redraw_constants(model, gen)
    return model.eval()


def export(model, opset, path):
    import onnx
    import torch

    tmp = path + ".tmp"
    torch.onnx.export(model, torch.zeros(1, 3, SIZE, SIZE), tmp, opset_version=opset,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    m = onnx.load(tmp)
    # the exporter names the file's graph after the module; keep only what the test needs
    onnx.helper.set_model_props(m, {
        "h2tdb.preprocess": "scale=-1,1",
        "h2tdb.export": "tests/data/make_vit_tiny.py opset=%d seed=%d" % (opset, SEED),
    })
    onnx.checker.check_model(m)
    onnx.save(m, path)
    os.unlink(tmp)
    return m


def expected(model_path, m, x, tmp):
    """ONNX Runtime's value of every compared tensor: [(name, array)] in graph order."""
    from common import read_dump

    conf = os.path.join(ROOT, "tests", "conformance")
    npm = os.environ.get("H2T_NPM_CACHE", os.path.join(ROOT, "models", ".npm"))
    x.astype("<f4").tofile(os.path.join(tmp, "in.f32"))
    subprocess.run([sys.executable, os.path.join(conf, "expose_all.py"), model_path,
                    os.path.join(tmp, "all.onnx")], check=True)
    env = dict(os.environ, NODE_PATH=os.path.join(npm, "node_modules"))
    subprocess.run(["node", os.path.join(conf, "ort_run.js"), os.path.join(tmp, "all.onnx"),
                    os.path.join(tmp, "in.f32"), ",".join(str(d) for d in x.shape),
                    os.path.join(tmp, "ort")], check=True, env=env)
    got = read_dump(os.path.join(tmp, "ort"))
    out = [("input", x)]
    for node in m.graph.node:
        if node.op_type in MOVES:
            continue
        for name in node.output:
            t = got.get(name)
            if t is not None and t.ndim >= 2:
                out.append((name, t))
    return out


def write_expect(path, tensors):
    with open(path, "wb") as f:
        f.write(b"h2tdb-expect 1 %d\n" % len(tensors))
        for name, t in tensors:
            f.write(("%s\t%s\n" % (name, ",".join(str(d) for d in t.shape))).encode())
        for _, t in tensors:
            f.write(np.ascontiguousarray(t, dtype="<f4").tobytes())


def main():
    import torch

    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "data")
    torch.set_num_threads(1)
    model = build()
    # sample 0 smooth (an image-like gradient), sample 1 seeded uniform noise, both in [-1, 1]
    rng = np.random.default_rng(SEED)
    yy, xx = np.meshgrid(np.linspace(-1, 1, SIZE), np.linspace(-1, 1, SIZE), indexing="ij")
    x = np.empty((BATCH, 3, SIZE, SIZE), np.float32)
    x[0] = np.stack([xx, yy, xx * yy])
    x[1] = rng.uniform(-1, 1, size=(3, SIZE, SIZE))
    with torch.no_grad():
        want_logits = model(torch.from_numpy(x)).numpy()
    for opset in (13, 17):
        path = os.path.join(out_dir, "vit_tiny-opset%d.onnx" % opset)
        m = export(model, opset, path)
        with tempfile.TemporaryDirectory() as tmp:
            tensors = expected(path, m, x, tmp)
        logits = dict(tensors)["logits"]
        err = float(np.abs(logits - want_logits).max())
        if err > 1e-5 * max(1.0, float(np.abs(want_logits).max())):
            raise SystemExit("make_vit_tiny: opset %d: ONNX Runtime's logits differ from "
                             "torch's by %g" % (opset, err))
        write_expect(os.path.join(out_dir, "vit_tiny-opset%d.expect" % opset), tensors)
        ops = sorted({n.op_type for n in m.graph.node})
        print("make_vit_tiny: %s: %d nodes, %d tensors expected (%d bytes); ops: %s" %
              (path, len(m.graph.node), len(tensors) - 1,
               os.path.getsize(path[:-5] + ".expect"), " ".join(ops)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
