// classify_ort.js MODEL.onnx INPUT.f32 N,C,H,W OUT.f32 [CHUNK]
// Runs an exported h2tdb classifier (h2tdb result J --export-onnx) with ONNX Runtime
// (onnxruntime-node, CPU, graph optimisations off so the file's operators run as written) over
// the N samples of INPUT (raw float32 N x C x H x W), CHUNK samples per run (default 20: with
// optimisations off every intermediate is kept), and writes the "probabilities" output
// (N x classes float32) to OUT.f32.
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
    if (sess.outputNames.length !== 1 || sess.outputNames[0] !== "probabilities")
        throw new Error(`${modelPath}: outputs ${sess.outputNames}, want [probabilities]`);
    const fd = fs.openSync(inPath, "r"), out = fs.openSync(outPath, "w");
    for (let first = 0; first < n; first += chunk) {
        const m = Math.min(chunk, n - first);
        const buf = Buffer.alloc(m * per * 4);
        if (fs.readSync(fd, buf, 0, buf.length, first * per * 4) !== buf.length)
            throw new Error(`${inPath}: short read at sample ${first}`);
        const data = new Float32Array(buf.buffer, buf.byteOffset, m * per);
        const res = await sess.run({ [sess.inputNames[0]]: new ort.Tensor("float32", data, [m, c, h, w]) });
        const t = res.probabilities;
        fs.writeSync(out, Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    }
    fs.closeSync(fd);
    fs.closeSync(out);
}
main().catch((e) => { console.error("classify_ort: " + (e.stack || e)); process.exit(1); });
