#!/usr/bin/python3
"""Export the conformance zoo: torchvision classification architectures with seeded random
weights, at ONNX opsets 13 and 17, with a dynamic batch axis.

    /usr/bin/python3 deploy/export_zoo.py [NAME ...] [--opset 13|17] [--force] [--dir DIR]
    /usr/bin/python3 deploy/export_zoo.py --list
    /usr/bin/python3 deploy/export_zoo.py --inventory docs/zoo_inventory.md

Writes DIR/NAME-opsetK.onnx (default DIR: models/zoo/, git-ignored) for every NAME given
(default: the whole zoo, --list names it) and every opset (default 13 and 17). Input "input"
float32 N x 3 x 224 x 224 (N dynamic), output "logits" N x 1000. A file that exists and
carries this script's h2tdb.export metadata (same architecture, opset, seed, version) is
left alone; --force re-exports. Needs Debian's python3-torch, python3-torchvision (0.14:
every architecture of the zoo is there) and python3-onnx; no network, no pretrained weights.

Weights: torchvision's own initialisation under torch.manual_seed(SEED), the same seed for
every architecture, so one model's file does not depend on which others were exported.
Parameters torchvision initialises to a constant would make parts of the network trivial
(an identity LayerNorm, ConvNeXt's layer scale of 1e-6 that hides each block's branch, the
zero classifier of ViT and Swin, a zero class token), so each of them is redrawn: constants
other than zero become U[0.5, 1.5], zero vectors N(0, 0.1), zero matrices N(0, 1/fan_in).
BatchNorm then gets deploy/export_resnet.py's treatment (random affine part, running
statistics measured on seeded images and jittered), here with the statistics measured on
noise and on crops of python3-sklearn's two photos and a jitter relative to each channel's
deviation (randomise_bn's natural and relative_jitter), so that no BatchNorm is an identity
and a photo's activations stay of the order of noise's.
BatchNormalization nodes are kept (TrainingMode.PRESERVE, model in eval mode); otherwise
the exporter's defaults (constant folding on), as a user's own export would have them.

--inventory reads the exported files and writes a Markdown table of every model's operator
types and counts (what the executor must implement), then per operator the models using it,
the element types it sees (inputs->outputs, from ONNX's type inference) and the attribute
values that occur.
"""
import argparse
import hashlib
import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

SEED = 20240601
VERSION = "1"
OPSETS = (13, 17)
# torchvision.models builder names, in the order the table lists them
ZOO = (
    "resnet50",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "regnet_y_400mf",
    "shufflenet_v2_x1_0",
    "densenet121",
    "convnext_tiny",
    "vit_b_16",
    "swin_t",
    "maxvit_t",
)


def redraw_constants(model, gen):
    """Redraws every parameter (outside BatchNorm) whose values are all equal; returns the
    names redrawn."""
    import torch

    bn_params = set()
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            bn_params.update(id(p) for p in m.parameters(recurse=False))
    names = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            if id(p) in bn_params or p.numel() < 2:
                continue
            first = p.reshape(-1)[0]
            if not bool((p == first).all()):
                continue
            if float(first) != 0.0:
                p.copy_(torch.rand(p.shape, generator=gen) + 0.5)
            elif p.dim() <= 1 or p.shape[-1] == p.numel():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
            else:
                fan_in = p.numel() // p.shape[0]
                p.copy_(torch.randn(p.shape, generator=gen) / fan_in ** 0.5)
            names.append(name)
    return names


def magnitudes(model, gen):
    """Smallest and largest max|x| over the normalisation layers' outputs, and the logits'."""
    import torch

    kinds = (torch.nn.modules.batchnorm._BatchNorm, torch.nn.LayerNorm)
    seen = []
    hooks = [m.register_forward_hook(lambda _m, _i, o: seen.append(float(o.abs().max())))
             for m in model.modules() if isinstance(m, kinds)]
    with torch.no_grad():
        out = model(torch.rand(2, 3, 224, 224, generator=gen) * 2 - 1)
    for h in hooks:
        h.remove()
    lo, hi = (min(seen), max(seen)) if seen else (0.0, 0.0)
    return lo, hi, float(out.abs().max())


def export_tag(name, opset):
    return "torchvision.models.%s opset=%d seed=%d version=%s" % (name, opset, SEED, VERSION)


def up_to_date(name, opset, path):
    import onnx

    if not os.path.exists(path):
        return False
    try:
        m = onnx.load(path, load_external_data=False)
    except Exception:
        return False
    props = {p.key: p.value for p in m.metadata_props}
    return props.get("h2tdb.export") == export_tag(name, opset)


def build(name):
    """The architecture with the zoo's weights, in eval mode."""
    import torch
    import torchvision
    from export_resnet import randomise_bn

    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED + 1)
    model = getattr(torchvision.models, name)(weights=None)
    redrawn = redraw_constants(model, gen)
    n_bn = randomise_bn(model, gen, relative_jitter=True, natural=True)
    model.eval()
    return model, gen, n_bn, redrawn


def op_counts(m):
    ops = {}
    for node in m.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    return ops


def export(name, opsets, paths):
    import onnx
    import torch

    t0 = time.time()
    model, gen, n_bn, redrawn = build(name)
    lo, hi, out_max = magnitudes(model, gen)
    for opset, path in zip(opsets, paths):
        tmp = path + ".tmp"
        torch.onnx.export(model, torch.zeros(1, 3, 224, 224), tmp, opset_version=opset,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                          training=torch.onnx.TrainingMode.PRESERVE)
        m = onnx.load(tmp)
        ops = op_counts(m)
        if ops.get("BatchNormalization", 0) != n_bn:
            os.unlink(tmp)
            raise SystemExit("export_zoo: %s: %d BatchNormalization nodes exported, the model "
                             "has %d" % (name, ops.get("BatchNormalization", 0), n_bn))
        onnx.helper.set_model_props(m, {
            # torchvision expects ImageNet mean/std normalisation; with random weights any
            # zero-centred range serves, and h2t_prep_parse reads only scale=lo,hi.
            "h2tdb.preprocess": "scale=-1,1",
            "h2tdb.preprocess.reference": "random weights; torchvision would use ImageNet "
                                          "mean/std normalisation, approximated by [-1,1]",
            "h2tdb.export": export_tag(name, opset),
        })
        onnx.checker.check_model(m)
        onnx.save(m, tmp)
        os.replace(tmp, path)
        print("export_zoo: %s: %d nodes, %d op types; norm outputs max|x| %.3g..%.3g, logits "
              "max|x| %.3g; redrawn constants: %d (%.0f s)" %
              (path, len(m.graph.node), len(ops), lo, hi, out_max, len(redrawn),
               time.time() - t0), flush=True)


TYPE_SHORT = {1: "f32", 6: "i32", 7: "i64", 9: "bool", 10: "f16", 11: "f64"}


def value_types(m):
    """{tensor name: element type} from the graph and ONNX's type inference."""
    import onnx

    g = onnx.shape_inference.infer_shapes(m).graph
    types = {t.name: t.data_type for t in g.initializer}
    for v in list(g.input) + list(g.value_info) + list(g.output):
        types[v.name] = v.type.tensor_type.elem_type
    for node in g.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    types[node.output[0]] = a.t.data_type
    return types


def signature(node, types):
    """'f32,i64->f32': the node's input and output element types ('?' when unknown, '-' for
    an omitted optional input); three or more inputs of one type are written 'f32*n'."""
    def short(name):
        return TYPE_SHORT.get(types.get(name), "?") if name else "-"
    ins = [short(n) for n in node.input]
    if len(ins) >= 3 and len(set(ins)) == 1:
        ins = [ins[0] + "*n"]
    return "%s->%s" % (",".join(ins), ",".join(short(n) for n in node.output))


def attr_summary(node, attrs):
    """Adds node's small attributes (ints, floats, strings; Cast's target type by name) to
    attrs: {attribute: set of values as text}."""
    import onnx

    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        if node.op_type == "Cast" and a.name == "to":
            v = onnx.TensorProto.DataType.Name(v)
        elif isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        elif isinstance(v, list) and all(isinstance(x, (int, float)) for x in v) and len(v) <= 8:
            v = "[" + ",".join(str(x) for x in v) + "]"
        elif isinstance(v, onnx.TensorProto) and node.op_type != "Constant":
            v = "%s tensor %s" % (TYPE_SHORT.get(v.data_type, v.data_type), list(v.dims))
        elif not isinstance(v, (int, float)):
            continue
        attrs.setdefault(a.name, set()).add(str(v))


def inventory(folder, out):
    """Markdown: per model and opset the node count and operator types with counts, then per
    operator the models that use it and the attribute values that occur."""
    import onnx

    rows, union = [], {}
    for name in ZOO:
        for opset in OPSETS:
            path = os.path.join(folder, "%s-opset%d.onnx" % (name, opset))
            if not os.path.exists(path):
                rows.append((name, opset, None, None, None))
                continue
            m = onnx.load(path, load_external_data=False)
            ops = op_counts(m)
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()[:12]
            rows.append((name, opset, len(m.graph.node), ops, digest))
            types = value_types(m)
            for node in m.graph.node:
                u = union.setdefault(node.op_type, ({}, {}, set()))
                u[0].setdefault(name, set()).add(opset)
                attr_summary(node, u[1])
                if node.op_type != "Constant":
                    u[2].add(signature(node, types))
    lines = ["| model | opset | nodes | operators (count) | sha256 (12) |",
             "|---|---|---|---|---|"]
    for name, opset, n, ops, digest in rows:
        if ops is None:
            lines.append("| %s | %d | - | not exported | - |" % (name, opset))
            continue
        lines.append("| %s | %d | %d | %s | %s |" % (
            name, opset, n, ", ".join("%s %d" % kv for kv in sorted(ops.items())), digest))
    lines += ["", "| operator | models (opset when not both) | types (inputs->outputs) | "
              "attribute values seen |", "|---|---|---|---|"]
    for op in sorted(union):
        users, attrs, sigs = union[op]
        who = ", ".join(n if users[n] == set(OPSETS) else "%s (%s)" % (
            n, "/".join(str(o) for o in sorted(users[n]))) for n in ZOO if n in users)
        seen = "; ".join("%s: %s" % (k, ", ".join(sorted(v)) if len(v) <= 6 else
                                     "%d distinct" % len(v)) for k, v in sorted(attrs.items()))
        lines.append("| %s | %s | %s | %s |" % (op, who, "; ".join(sorted(sigs)) or "-",
                                                 seen or "-"))
    text = "\n".join(lines) + "\n"
    if out == "-":
        sys.stdout.write(text)
    else:
        with open(out, "w") as f:
            f.write(text)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", metavar="NAME", help="architectures (default: all)")
    ap.add_argument("--opset", type=int, choices=OPSETS, action="append")
    ap.add_argument("--force", action="store_true", help="re-export existing files")
    ap.add_argument("--dir", default=os.path.join(root, "models", "zoo"))
    ap.add_argument("--list", action="store_true", help="print the zoo and what is exported")
    ap.add_argument("--inventory", metavar="FILE", help="write the operator inventory ('-': stdout)")
    a = ap.parse_args()
    for n in a.names:
        if n not in ZOO:
            ap.error("unknown architecture '%s' (the zoo: %s)" % (n, ", ".join(ZOO)))
    names = a.names or list(ZOO)
    opsets = a.opset or list(OPSETS)
    if a.list:
        for n in names:
            for o in opsets:
                path = os.path.join(a.dir, "%s-opset%d.onnx" % (n, o))
                state = "exported" if up_to_date(n, o, path) else (
                    "stale" if os.path.exists(path) else "missing")
                print("%-20s opset %d  %-8s %s" % (n, o, state, path))
        return 0
    if a.inventory:
        inventory(a.dir, a.inventory)
        return 0
    import torch

    os.makedirs(a.dir, exist_ok=True)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    for n in names:
        todo = [o for o in opsets
                if a.force or not up_to_date(n, o, os.path.join(a.dir, "%s-opset%d.onnx" % (n, o)))]
        if todo:
            export(n, todo, [os.path.join(a.dir, "%s-opset%d.onnx" % (n, o)) for o in todo])
    return 0


if __name__ == "__main__":
    sys.exit(main())
