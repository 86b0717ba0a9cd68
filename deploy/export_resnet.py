#!/usr/bin/python3
"""Export torchvision ResNet-18 and ResNet-50 with seeded random weights to ONNX.

    /usr/bin/python3 deploy/export_resnet.py [MODELS_DIR] [--force] [--only resnet18]

Writes MODELS_DIR/resnet18.onnx and resnet50.onnx (default MODELS_DIR: models/): opset 13,
input "input" float32 N x 3 x 224 x 224 with a dynamic batch, output "logits" N x 1000.
Skips a model whose file exists and carries this script's h2tdb.export metadata (same seed
and version); --force re-exports. Debian python3-torch + python3-torchvision only.

Weights: torchvision's own initialisation under torch.manual_seed(SEED). BatchNorm would
otherwise hold running mean 0 / variance 1 and gamma 1 / beta 0, which lets activations
drift towards zero or blow up through 50 layers; instead every BatchNorm gets a random
affine part (gamma in [0.5, 1.5], beta ~ N(0, 0.25)) and running statistics measured on
seeded random images (train-mode passes with a cumulative average), then jittered (mean +
N(0, 0.05), var x U[0.8, 1.25]) so they are not exactly the batch statistics. The result:
every tensor has magnitudes of order one (printed per model as a check).

BatchNormalization nodes are kept (not folded into the convolutions: TrainingMode.PRESERVE
with the model in eval mode), so every BN output is a tensor of its own, like in the
converted MobileNetV2. No constant folding beyond what the exporter does for shapes.
"""
import argparse
import os
import sys

import numpy as np
import onnx
import torch
import torchvision

SEED = 20240601
VERSION = "1"
CALIB_BATCHES = 2
CALIB_BATCH = 8


PHOTOS = ("/usr/lib/python3/dist-packages/sklearn/datasets/images/china.jpg",
          "/usr/lib/python3/dist-packages/sklearn/datasets/images/flower.jpg")


def calibration_images(n, gen, natural):
    """n seeded images in [-1, 1]: uniform noise, or with natural=True half of them random
    crops (a third to all of the side, random aspect, mirrored half of the time) of the two
    photos python3-sklearn ships, bilinearly resized to 224 x 224, so the statistics hold for
    photos as well as for noise."""
    x = torch.rand(n, 3, 224, 224, generator=gen) * 2 - 1
    if natural:
        import numpy as np
        from PIL import Image

        photos = []
        for p in PHOTOS:
            img = np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) / 127.5 - 1
            photos.append(torch.from_numpy(img.transpose(2, 0, 1).copy()))
        for i in range(n // 2):
            img = photos[i % len(photos)]
            h, w = img.shape[1:]
            r = torch.rand(5, generator=gen).tolist()
            ch, cw = int(h * (r[0] * 2 + 1) / 3), int(w * (r[1] * 2 + 1) / 3)
            y0, x0 = int((h - ch) * r[2]), int((w - cw) * r[3])
            crop = img[:, y0:y0 + ch, x0:x0 + cw]
            if r[4] < 0.5:
                crop = crop.flip(2)
            x[i] = torch.nn.functional.interpolate(crop[None], size=(224, 224), mode="bilinear",
                                                   align_corners=False)[0]
    return x


def randomise_bn(model, gen, relative_jitter=False, natural=False):
    """Random BatchNorm affine parts and running statistics measured on seeded random images
    (see the module text). Only the BatchNorm modules run in training mode during the
    calibration passes, so dropout and stochastic depth stay off (deploy/export_zoo.py uses
    this for every architecture). relative_jitter: the mean's jitter is N(0, 0.05) times the
    channel's measured standard deviation instead of absolute, so a channel of small variance
    is not shifted by many of its deviations (its activations would grow layer after layer,
    into the thousands in EfficientNet-B0). natural: calibrate on
    calibration_images(natural=True), so that a photo's activations stay of the order of
    noise's (with noise alone they grow tens of times larger in EfficientNet-B0). Returns the number of BatchNorm2d modules."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    if not bns:
        return 0
    with torch.no_grad():
        for bn in bns:
            bn.weight.copy_(torch.rand(bn.num_features, generator=gen) + 0.5)
            bn.bias.copy_(torch.randn(bn.num_features, generator=gen) * 0.25)
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the calibration batches
        model.eval()
        for bn in bns:
            bn.train()
        for _ in range(CALIB_BATCHES):
            model(calibration_images(CALIB_BATCH, gen, natural))
        for bn in bns:
            shift = torch.randn(bn.num_features, generator=gen) * 0.05
            if relative_jitter:
                shift *= bn.running_var.sqrt()
            bn.running_mean.add_(shift)
            bn.running_var.mul_(torch.rand(bn.num_features, generator=gen) * 0.45 + 0.8)
    model.eval()
    return len(bns)


def magnitudes(model, gen):
    """Largest |x| of the smallest-magnitude block output, as a sanity figure."""
    seen = []
    hooks = [m.register_forward_hook(lambda _m, _i, o: seen.append(float(o.abs().max())))
             for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        out = model(torch.rand(2, 3, 224, 224, generator=gen) * 2 - 1)
    for h in hooks:
        h.remove()
    return min(seen), max(seen), float(out.abs().max())


def export(name, path):
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED + 1)
    model = getattr(torchvision.models, name)(weights=None)
    n_bn = randomise_bn(model, gen)
    lo, hi, out_max = magnitudes(model, gen)
    tmp = path + ".tmp"
    torch.onnx.export(model, torch.zeros(1, 3, 224, 224), tmp, opset_version=13,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                      training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
    m = onnx.load(tmp)
    ops = {}
    for node in m.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    if ops.get("BatchNormalization", 0) != n_bn:
        raise SystemExit("%s: %d BatchNormalization nodes exported, the model has %d" %
                         (name, ops.get("BatchNormalization", 0), n_bn))
    onnx.helper.set_model_props(m, {
        # torchvision expects ImageNet mean/std normalisation; with random weights any
        # zero-centred range serves, and h2t_prep_parse reads only scale=lo,hi.
        "h2tdb.preprocess": "scale=-1,1",
        "h2tdb.preprocess.reference": "random weights; torchvision would use ImageNet "
                                      "mean/std normalisation, approximated by [-1,1]",
        "h2tdb.export": "torchvision.models.%s seed=%d version=%s" % (name, SEED, VERSION),
    })
    onnx.checker.check_model(m)
    onnx.save(m, tmp)
    os.replace(tmp, path)
    print("export_resnet: %s: %d nodes (%s); BN outputs max|x| %.3g..%.3g, logits max|x| %.3g" %
          (path, len(m.graph.node), ", ".join("%s %d" % kv for kv in sorted(ops.items())),
           lo, hi, out_max))


def up_to_date(name, path):
    if not os.path.exists(path):
        return False
    try:
        m = onnx.load(path, load_external_data=False)
    except Exception:
        return False
    props = {p.key: p.value for p in m.metadata_props}
    return props.get("h2tdb.export") == "torchvision.models.%s seed=%d version=%s" % (
        name, SEED, VERSION)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser()
    ap.add_argument("models_dir", nargs="?", default=os.path.join(root, "models"))
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--only", choices=["resnet18", "resnet50"])
    a = ap.parse_args()
    os.makedirs(a.models_dir, exist_ok=True)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    np.random.seed(SEED)
    for name in ("resnet18", "resnet50"):
        if a.only and name != a.only:
            continue
        path = os.path.join(a.models_dir, name + ".onnx")
        if not a.force and up_to_date(name, path):
            continue
        export(name, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
