// ort_run.js MODEL.onnx INPUT.f32 N,C,H,W OUTDIR
// Runs MODEL with ONNX Runtime (onnxruntime-node, CPU, 1 thread, no graph optimisation so
// every tensor of the file is computed as written) and writes every float graph output as a
// dump (see common.py). Give it a model from expose_all.py to see every intermediate.
"use strict";
const fs = require("fs"), path = require("path");
const ort = require("onnxruntime-node");
async function main() {
    const [modelPath, inPath, shapeStr, outDir] = process.argv.slice(2);
    const shape = shapeStr.split(",").map(Number);
    const sess = await ort.InferenceSession.create(modelPath, {
        intraOpNumThreads: 1, interOpNumThreads: 1, graphOptimizationLevel: "disabled",
    });
    const buf = fs.readFileSync(inPath);
    const data = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length));
    const feeds = { [sess.inputNames[0]]: new ort.Tensor("float32", data, shape) };
    const res = await sess.run(feeds);
    fs.mkdirSync(outDir, { recursive: true });
    let idx = "", i = 0;
    for (const name of sess.outputNames) {
        const t = res[name];
        if (t.type !== "float32") continue;
        const file = "t" + String(i++).padStart(4, "0") + ".f32";
        fs.writeFileSync(path.join(outDir, file), Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
        idx += `${name}\t${t.dims.join(",")}\t${file}\n`;
    }
    fs.writeFileSync(path.join(outDir, "index.tsv"), idx);
    console.error(`ort_run: ${i} tensors written to ${outDir} (onnxruntime ${ort.env.versions.common})`);
}
main().catch((e) => { console.error("ort_run: " + (e.stack || e)); process.exit(1); });
