// bench/extract_ort.js MODEL.onnx BATCH RUNS THREADS [OPT]
// The ONNX Runtime side of bench/extract: forward passes of one BATCH x C x H x W batch of
// seeded uniform noise, intraOpNumThreads = THREADS, interOpNumThreads = 1, sequential
// execution, graph optimisations OPT: "all" (the default, what a user of ORT gets: Conv +
// BatchNorm + activation fused, so most intermediates never exist) or "disabled" (every node
// computed as written, every tensor materialised, as an extraction needs them). One untimed
// warm-up run, then RUNS timed runs. Prints one line of JSON:
//   {"ips":[images/s of each run], "median":M, "version":"1.30.0"}
// onnxruntime-node resolves from NODE_PATH (deploy/fetch_model.sh --ort installs it).
"use strict";
const ort = require("onnxruntime-node");
async function main() {
    const [model, batchS, runsS, threadsS, optArg] = process.argv.slice(2);
    const opt = optArg || "all";
    const batch = Number(batchS), runs = Number(runsS), threads = Number(threadsS);
    const sess = await ort.InferenceSession.create(model, {
        intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: "sequential",
        graphOptimizationLevel: opt,
    });
    // the input's C, H, W from the model (dim 0 is the dynamic batch)
    const meta = sess.inputMetadata ? sess.inputMetadata[0] : null;
    const dims = meta && meta.shape ? meta.shape.slice(1).map(Number) : [3, 224, 224];
    const n = batch * dims.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    let s = 12345;
    for (let i = 0; i < n; i++) { s = (s * 1103515245 + 12345) >>> 0; data[i] = (s >>> 8) / 16777216 * 2 - 1; }
    const feeds = { [sess.inputNames[0]]: new ort.Tensor("float32", data, [batch, ...dims]) };
    await sess.run(feeds);
    const ips = [];
    for (let r = 0; r < runs; r++) {
        const t0 = process.hrtime.bigint();
        await sess.run(feeds);
        const dt = Number(process.hrtime.bigint() - t0) / 1e9;
        ips.push(batch / dt);
    }
    const sorted = [...ips].sort((a, b) => a - b);
    const median = sorted[(sorted.length - 1) >> 1] / 2 + sorted[sorted.length >> 1] / 2;
    console.log(JSON.stringify({ ips, median, version: ort.env.versions.common }));
}
main().catch((e) => { console.error("extract_ort: " + (e.stack || e)); process.exit(1); });
