#!/usr/bin/python3
"""Convert a Keras layers-model (tfjs format) into an ONNX file.

Written for the MobileNetV2 shipped in the npm package nsfwjs 4.4.0
(dist/models/mobilenet_v2/), but it converts any Keras functional model built from the
layers listed in CONVERTERS. deploy/fetch_model.sh runs it; by hand:

    /usr/bin/python3 deploy/convert_mobilenet.py MODEL.json WEIGHTS.bin OUT.onnx

MODEL.json is the tfjs model JSON ({modelTopology, weightsManifest}); WEIGHTS.bin is the
concatenation of the manifest's shards (the base64 bundles of nsfwjs, decoded). Weights are
dequantised exactly as tfjs-core io_utils.decodeWeights does: value = q * scale + min in
double precision, then rounded to float32.

The ONNX graph:
- input "input_1": float32 N x 3 x H x W (NCHW, dynamic batch), RGB.
- one node per Keras layer and the tensor named after the layer (Conv1, bn_Conv1,
  Conv1_relu, block_3_expand_relu, ...), so the layer table reads like the Keras summary.
  Dense layers with an activation give two tensors: NAME/linear (Gemm) and NAME.
- nothing folded: BatchNormalization stays a node, ZeroPadding2D stays a Pad, ReLU(6) is
  Clip(0, 6). Dropout layers (identity at inference) are left out; their consumers read
  the dropout's input.
- no Transpose: kernels are permuted to ONNX layout here; Flatten is emitted only where the
  spatial size is 1x1 (channels_last and channels_first then give the same order).
- metadata_props: h2tdb.preprocess (what the model expects, see PREPROCESS),
  h2tdb.preprocess.reference, h2tdb.classes, h2tdb.source.
Standard library, numpy and the python3-onnx package only.
"""
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13
# nsfwjs (dist/cjs/core.js, NSFWJS.infer): img.toFloat().div(255), then
# tf.image.resizeBilinear(..., [224, 224], alignCorners = true). The model was trained on
# [0,1] inputs (not MobileNetV2's usual [-1,1]), so [0,1] is what we record, in the syntax
# extract/extract.h h2t_prep_parse reads (it refuses unknown keys: only "scale" goes there);
# the reference pipeline in full goes to a second, informative key.
PREPROCESS = "scale=0,1"
PREPROCESS_REF = ("nsfwjs 4.4.0: RGB uint8 / 255 -> [0,1], tf.image.resizeBilinear to 224x224 "
                  "with alignCorners=true, NHWC (this file: NCHW)")
NSFW_CLASSES = "Drawing,Hentai,Neutral,Porn,Sexy"


def dequantise(manifest, blob):
    """name -> float32 array (Keras layout), exactly as tfjs decodeWeights."""
    out = {}
    off = 0
    for group in manifest:
        for spec in group["weights"]:
            shape = spec["shape"]
            n = int(np.prod(shape)) if shape else 1
            if spec.get("dtype", "float32") != "float32":
                raise SystemExit("weight %s: dtype %s not supported" % (spec["name"], spec["dtype"]))
            q = spec.get("quantization")
            if q is None:
                arr = np.frombuffer(blob, dtype="<f4", count=n, offset=off)
                off += 4 * n
            elif q["dtype"] in ("uint8", "uint16"):
                dt = np.uint8 if q["dtype"] == "uint8" else np.dtype("<u2")
                raw = np.frombuffer(blob, dtype=dt, count=n, offset=off)
                off += raw.itemsize * n
                arr = (raw.astype(np.float64) * q["scale"] + q["min"]).astype(np.float32)
            elif q["dtype"] == "float16":
                arr = np.frombuffer(blob, dtype="<f2", count=n, offset=off).astype(np.float32)
                off += 2 * n
            else:
                raise SystemExit("weight %s: quantisation %s not supported" % (spec["name"], q))
            out[spec["name"]] = arr.reshape(shape)
    if off != len(blob):
        raise SystemExit("weights: manifest describes %d bytes, shards hold %d" % (off, len(blob)))
    return out


class Graph:
    def __init__(self, weights):
        self.w = weights
        self.used = set()
        self.nodes = []
        self.inits = []
        self.alias = {}  # Keras layer name -> ONNX tensor name (Dropout)
        self.shape = {}  # tensor -> (C, H, W) or (F,) per sample, Keras-side bookkeeping

    def weight(self, layer, name):
        key = "%s/%s" % (layer, name)
        if key not in self.w:
            raise SystemExit("layer %s: weight %s missing from the manifest" % (layer, key))
        self.used.add(key)
        return self.w[key]

    def init(self, name, arr):
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def node(self, op, ins, out, name, **attrs):
        self.nodes.append(helper.make_node(op, ins, [out], name=name, **attrs))
        return out

    def src(self, layer):
        """The single input tensor of a layer."""
        inb = layer["inbound_nodes"]
        if len(inb) != 1:
            raise SystemExit("layer %s: shared layers are not supported" % layer["name"])
        names = [self.alias.get(i[0], i[0]) for i in inb[0]]
        return names


def same_pads(size, k, s, d):
    """TensorFlow SAME padding for one spatial dim: (before, after)."""
    ek = (k - 1) * d + 1
    out = -(-size // s)
    total = max((out - 1) * s + ek - size, 0)
    return total // 2, total - total // 2


def conv_common(g, layer, x, kernel, group):
    c = layer["config"]
    if c.get("data_format", "channels_last") != "channels_last":
        raise SystemExit("layer %s: data_format %s" % (layer["name"], c["data_format"]))
    name = layer["name"]
    cin, h, w = g.shape[x]
    kh, kw = c["kernel_size"]
    sh, sw = c["strides"]
    dh, dw = c["dilation_rate"]
    if c["padding"] == "valid":
        pads = [0, 0, 0, 0]
    elif c["padding"] == "same":
        t, b = same_pads(h, kh, sh, dh)
        lft, r = same_pads(w, kw, sw, dw)
        pads = [t, lft, b, r]
    else:
        raise SystemExit("layer %s: padding %s" % (name, c["padding"]))
    ins = [x, g.init(name + "/kernel", kernel)]
    if c.get("use_bias"):
        ins.append(g.init(name + "/bias", g.weight(name, "bias")))
    act = c.get("activation", "linear")
    conv_out = name if act == "linear" else name + "/linear"
    g.node("Conv", ins, conv_out, name, kernel_shape=[kh, kw], strides=[sh, sw],
           dilations=[dh, dw], pads=pads, group=group)
    cout = kernel.shape[0]
    oh = (h + pads[0] + pads[2] - ((kh - 1) * dh + 1)) // sh + 1
    ow = (w + pads[1] + pads[3] - ((kw - 1) * dw + 1)) // sw + 1
    g.shape[conv_out] = (cout, oh, ow)
    return activation(g, name, conv_out, act)


def activation(g, name, x, act):
    if act == "linear":
        return x
    ops = {"relu": "Relu", "softmax": "Softmax", "sigmoid": "Sigmoid"}
    if act not in ops:
        raise SystemExit("layer %s: activation %s not supported" % (name, act))
    attrs = {"axis": 1} if act == "softmax" else {}
    g.node(ops[act], [x], name, name + "/" + act, **attrs)
    g.shape[name] = g.shape[x]
    return name


def cv_input(layer, g):
    c = layer["config"]
    shp = c["batch_input_shape"]
    if len(shp) != 4 or c.get("dtype", "float32") != "float32":
        raise SystemExit("input %s: expected a float32 NHWC image input" % layer["name"])
    _, h, w, ch = shp
    g.shape[layer["name"]] = (ch, h, w)
    g.input = helper.make_tensor_value_info(layer["name"], TensorProto.FLOAT, ["N", ch, h, w])
    return layer["name"]


def cv_zeropad(layer, g):
    (x,) = g.src(layer)
    c = layer["config"]
    (t, b), (lft, r) = c["padding"]
    name = layer["name"]
    pads = np.array([0, 0, t, lft, 0, 0, b, r], dtype=np.int64)
    g.node("Pad", [x, g.init(name + "/pads", pads)], name, name, mode="constant")
    ch, h, w = g.shape[x]
    g.shape[name] = (ch, h + t + b, w + lft + r)
    return name


def cv_conv2d(layer, g):
    (x,) = g.src(layer)
    k = g.weight(layer["name"], "kernel")  # kh, kw, in, out
    return conv_common(g, layer, x, k.transpose(3, 2, 0, 1), 1)


def cv_depthwise(layer, g):
    (x,) = g.src(layer)
    k = g.weight(layer["name"], "depthwise_kernel")  # kh, kw, in, mult
    kh, kw, cin, mult = k.shape
    # output channel i * mult + m reads input channel i: ONNX weight (in*mult, 1, kh, kw)
    onnx_k = k.transpose(2, 3, 0, 1).reshape(cin * mult, 1, kh, kw)
    return conv_common(g, layer, x, onnx_k, cin)


def cv_batchnorm(layer, g):
    (x,) = g.src(layer)
    c = layer["config"]
    name = layer["name"]
    if c.get("axis") not in (-1, 3, [3], [-1]):
        raise SystemExit("layer %s: batch norm axis %s" % (name, c.get("axis")))
    mean = g.weight(name, "moving_mean")
    var = g.weight(name, "moving_variance")
    gamma = g.weight(name, "gamma") if c.get("scale", True) else np.ones_like(mean)
    beta = g.weight(name, "beta") if c.get("center", True) else np.zeros_like(mean)
    ins = [x] + [g.init("%s/%s" % (name, n), a) for n, a in
                 (("gamma", gamma), ("beta", beta), ("moving_mean", mean),
                  ("moving_variance", var))]
    g.node("BatchNormalization", ins, name, name, epsilon=float(c["epsilon"]))
    g.shape[name] = g.shape[x]
    return name


def cv_relu(layer, g):
    (x,) = g.src(layer)
    c = layer["config"]
    name = layer["name"]
    if c.get("negative_slope", 0) != 0 or c.get("threshold", 0) != 0:
        raise SystemExit("layer %s: ReLU with slope/threshold not supported" % name)
    mx = c.get("max_value")
    if mx is None:
        g.node("Relu", [x], name, name)
    else:
        lo = g.init(name + "/min", np.array(0, dtype=np.float32))
        hi = g.init(name + "/max", np.array(mx, dtype=np.float32))
        g.node("Clip", [x, lo, hi], name, name)
    g.shape[name] = g.shape[x]
    return name


def cv_add(layer, g):
    xs = g.src(layer)
    name = layer["name"]
    if len(xs) != 2:
        raise SystemExit("layer %s: Add of %d inputs" % (name, len(xs)))
    g.node("Add", xs, name, name)
    g.shape[name] = g.shape[xs[0]]
    return name


def cv_avgpool(layer, g):
    (x,) = g.src(layer)
    c = layer["config"]
    name = layer["name"]
    if c["padding"] != "valid":
        raise SystemExit("layer %s: pooling padding %s" % (name, c["padding"]))
    g.node("AveragePool", [x], name, name, kernel_shape=list(c["pool_size"]),
           strides=list(c["strides"]))
    ch, h, w = g.shape[x]
    (ph, pw), (sh, sw) = c["pool_size"], c["strides"]
    g.shape[name] = (ch, (h - ph) // sh + 1, (w - pw) // sw + 1)
    return name


def cv_flatten(layer, g):
    (x,) = g.src(layer)
    name = layer["name"]
    shp = g.shape[x]
    if len(shp) == 3 and (shp[1] != 1 or shp[2] != 1):
        raise SystemExit("layer %s: Flatten of %s would need a Transpose (NHWC order)" %
                         (name, shp))
    g.node("Flatten", [x], name, name, axis=1)
    g.shape[name] = (int(np.prod(shp)),)
    return name


def cv_dense(layer, g):
    (x,) = g.src(layer)
    c = layer["config"]
    name = layer["name"]
    ins = [x, g.init(name + "/kernel", g.weight(name, "kernel"))]  # in x out: Gemm transB=0
    if c.get("use_bias"):
        ins.append(g.init(name + "/bias", g.weight(name, "bias")))
    act = c.get("activation", "linear")
    out = name if act == "linear" else name + "/linear"
    g.node("Gemm", ins, out, name)
    g.shape[out] = (c["units"],)
    return activation(g, name, out, act)


def cv_dropout(layer, g):
    (x,) = g.src(layer)
    g.alias[layer["name"]] = x
    return None


CONVERTERS = {
    "InputLayer": cv_input,
    "ZeroPadding2D": cv_zeropad,
    "Conv2D": cv_conv2d,
    "DepthwiseConv2D": cv_depthwise,
    "BatchNormalization": cv_batchnorm,
    "ReLU": cv_relu,
    "Add": cv_add,
    "AveragePooling2D": cv_avgpool,
    "Flatten": cv_flatten,
    "Dense": cv_dense,
    "Dropout": cv_dropout,
}


def convert(model_json, blob, source):
    topo = model_json["modelTopology"]
    cfg = topo["model_config"]
    if cfg["class_name"] not in ("Model", "Functional"):
        raise SystemExit("model class %s: expected a functional Model" % cfg["class_name"])
    weights = dequantise(model_json["weightsManifest"], blob)
    g = Graph(weights)
    for layer in cfg["config"]["layers"]:
        fn = CONVERTERS.get(layer["class_name"])
        if fn is None:
            raise SystemExit("layer %s: Keras class %s not supported" %
                             (layer["name"], layer["class_name"]))
        fn(layer, g)
    unused = sorted(set(weights) - g.used)
    if unused:
        raise SystemExit("weights never used: %s" % ", ".join(unused))
    outs = [g.alias.get(o[0], o[0]) for o in cfg["config"]["output_layers"]]
    outputs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, ["N", g.shape[o][0]])
               for o in outs]
    graph = helper.make_graph(g.nodes, cfg["config"]["name"], [g.input], outputs, g.inits)
    model = helper.make_model(graph, producer_name="h2tdb deploy/convert_mobilenet.py",
                              producer_version="1",
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 7  # opset 13's IR version; keeps older runtimes happy
    model.doc_string = "Converted from %s (Keras %s)" % (source, topo.get("keras_version"))
    helper.set_model_props(model, {"h2tdb.preprocess": PREPROCESS,
                                   "h2tdb.preprocess.reference": PREPROCESS_REF,
                                   "h2tdb.classes": NSFW_CLASSES,
                                   "h2tdb.source": source})
    onnx.checker.check_model(model)
    return model


def main(argv):
    if len(argv) not in (4, 5):
        sys.stderr.write("usage: convert_mobilenet.py MODEL.json WEIGHTS.bin OUT.onnx [SOURCE]\n")
        return 2
    with open(argv[1]) as f:
        model_json = json.load(f)
    with open(argv[2], "rb") as f:
        blob = f.read()
    source = argv[4] if len(argv) == 5 else argv[1]
    model = convert(model_json, blob, source)
    tmp = argv[3] + ".tmp"
    with open(tmp, "wb") as f:
        f.write(model.SerializeToString())
    os.replace(tmp, argv[3])
    print("convert_mobilenet: %s: %d nodes, %d initializers" %
          (argv[3], len(model.graph.node), len(model.graph.initializer)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
