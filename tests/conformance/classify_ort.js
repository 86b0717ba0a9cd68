// classify_ort.js MODEL.onnx INPUT.f32 N,C,H,W OUT.f32 [CHUNK]
// Runs an exported h2tdb classifier (h2tdb result J --export-onnx) with ONNX Runtime
// (onnxruntime-node, CPU, graph optimisations off so the file's operators run as written) over
// the N samples of INPUT (raw float32 N x C x H x W), CHUNK samples per run (default 20: with
// optimisations off every intermediate is kept), and writes the "probabilities" output
// (N x classes float32) to OUT.f32 and, for a knn classifier, its "label" output (N int64) to
// OUT.f32.label.
"use strict";
const fs = require("fs");
const ort = require("onnxruntime-node");
async function main() {
    const [modelPath, inPath, shapeStr, outPath, chunkStr] = process.argv.slice(2);
    const [n, c, h, w] = shapeStr.split(",").map(Number);
    const chunk = Number(chunkStr || 20), per = c * h * w;
    const sess = await ort.InferenceSession.create(modelPath, {
        intraOpNumThreads: 2, interOpNumThreads: 1, graphOptimizationLevel: "disabled",
    });
    const names = sess.outputNames.join(",");
    if (names !== "probabilities" && names !== "probabilities,label")
        throw new Error(`${modelPath}: outputs ${names}, want probabilities[,label]`);
    const hasLabel = sess.outputNames.length === 2;
    const fd = fs.openSync(inPath, "r"), out = fs.openSync(outPath, "w");
    const lab = hasLabel ? fs.openSync(outPath + ".label", "w") : -1;
    for (let first = 0; first < n; first += chunk) {
        const m = Math.min(chunk, n - first);
        const buf = Buffer.alloc(m * per * 4);
        if (fs.readSync(fd, buf, 0, buf.length, first * per * 4) !== buf.length)
            throw new Error(`${inPath}: short read at sample ${first}`);
        const data = new Float32Array(buf.buffer, buf.byteOffset, m * per);
        const res = await sess.run({ [sess.inputNames[0]]: new ort.Tensor("float32", data, [m, c, h, w]) });
        const t = res.probabilities;
        fs.writeSync(out, Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
        if (hasLabel) {
            const l = res.label;
            fs.writeSync(lab, Buffer.from(l.data.buffer, l.data.byteOffset, l.data.byteLength));
        }
    }
    fs.closeSync(fd);
    fs.closeSync(out);
    if (hasLabel)
        fs.closeSync(lab);
}
main().catch((e) => { console.error("classify_ort: " + (e.stack || e)); process.exit(1); });
