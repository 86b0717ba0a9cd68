// tfjs_run.js NSFWJS_MODEL_DIR INPUT.f32 N,C,H,W OUTDIR
// Runs the nsfwjs Keras model with tfjs itself (CPU backend, the reference the ONNX
// conversion must reproduce) and writes every layer's output as a dump (see common.py),
// rank-4 outputs transposed to NCHW. Module paths resolve from NODE_PATH (the npm cache).
"use strict";
const fs = require("fs"), path = require("path");
const tf = require("@tensorflow/tfjs");
async function main() {
    const [dirArg, inPath, shapeStr, outDir] = process.argv.slice(2);
    const dir = path.resolve(dirArg);
    const shape = shapeStr.split(",").map(Number);
    await tf.setBackend("cpu");
    const j = require(path.join(dir, "model.min.js"));
    const mj = j.default || j;
    const specs = [], bufs = [];
    for (const g of mj.weightsManifest) {
        for (const p of g.paths) {
            const b64 = require(path.join(dir, p + ".min.js"));
            bufs.push(Buffer.from(typeof b64 === "string" ? b64 : b64.default, "base64"));
        }
        specs.push(...g.weights);
    }
    const all = Buffer.concat(bufs);
    const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.length);
    const model = await tf.loadLayersModel({
        load: async () => ({ modelTopology: mj.modelTopology, weightSpecs: specs, weightData }),
    });
    const layers = model.layers.filter((l) => l.getClassName() !== "InputLayer");
    const probe = tf.model({ inputs: model.inputs, outputs: layers.map((l) => l.output) });
    const buf = fs.readFileSync(inPath);
    const x = tf.tensor4d(new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4), shape);
    const outs = probe.predict(tf.transpose(x, [0, 2, 3, 1]));
    fs.mkdirSync(outDir, { recursive: true });
    let idx = "";
    layers.forEach((l, i) => {
        let t = outs[i];
        if (t.rank === 4) t = tf.transpose(t, [0, 3, 1, 2]);
        const file = "t" + String(i).padStart(4, "0") + ".f32";
        fs.writeFileSync(path.join(outDir, file), Buffer.from(t.dataSync().buffer));
        idx += `${l.name}\t${t.shape.join(",")}\t${file}\n`;
    });
    fs.writeFileSync(path.join(outDir, "index.tsv"), idx);
    console.error(`tfjs_run: ${layers.length} layers written to ${outDir}`);
}
main().catch((e) => { console.error("tfjs_run: " + (e.stack || e)); process.exit(1); });
