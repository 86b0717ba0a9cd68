// bench/extract_ort.js MODEL.onnx BATCH RUNS THREADS [OPT]
// The ONNX Runtime side of bench/extract: forward passes of one BATCH x C x H x W batch of
// seeded uniform noise, intraOpNumThreads = THREADS, interOpNumThreads = 1, sequential
// execution, graph optimisations OPT: "all" (the default, what a user of ORT gets: Conv +
// BatchNorm + activation fused, so most intermediates never exist) or "disabled" (every node
// computed as written, every tensor materialised, as an extraction needs them). Untimed
// warm-up runs until two consecutive ones agree within 3% (at least 2, at most 10), then RUNS
// timed runs. Prints one line of JSON:
//   {"ips":[images/s of each run], "median":M, "warmup":W, "version":"1.30.0"}
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
    let warmup = 0, prev = 0;
    for (; warmup < 10; ) {
        const t0 = process.hrtime.bigint();
        await sess.run(feeds);
        const dt = Number(process.hrtime.bigint() - t0);
        warmup++;
        if (warmup >= 2 && dt < prev * 1.03 && prev < dt * 1.03) break;
        prev = dt;
    }
    const ips = [];
    for (let r = 0; r < runs; r++) {
        const t0 = process.hrtime.bigint();
        await sess.run(feeds);
        const dt = Number(process.hrtime.bigint() - t0) / 1e9;
        ips.push(batch / dt);
    }
    const sorted = [...ips].sort((a, b) => a - b);
    const median = sorted[(sorted.length - 1) >> 1] / 2 + sorted[sorted.length >> 1] / 2;
    console.log(JSON.stringify({ ips, median, warmup, version: ort.env.versions.common }));
}
main().catch((e) => { console.error("extract_ort: " + (e.stack || e)); process.exit(1); });
