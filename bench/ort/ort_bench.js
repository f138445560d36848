// kiln bench peer: times ONNX Runtime's CPU provider on an ONNX model, for comparison with
// kiln in the same run on the same machine and thread count. Not a test.
// usage: node ort_bench.js MODEL.onnx [--threads N] [--iterations N] [--shape 1x3x224x224]
const ort = require('onnxruntime-node');

async function main() {
  const args = process.argv.slice(2);
  if (!args.length) { console.error('usage: ort_bench.js MODEL.onnx [--threads N] [--iterations N] [--shape DxDx..]'); process.exit(2); }
  const model = args[0];
  let threads = 0, iterations = 10, shapeArg = null;
  for (let i = 1; i < args.length; i++) {
    if (args[i] === '--threads') threads = parseInt(args[++i]);
    else if (args[i] === '--iterations') iterations = parseInt(args[++i]);
    else if (args[i] === '--shape') shapeArg = args[++i].split('x').map(Number);
    else { console.error(`ort_bench: unknown option ${args[i]}`); process.exit(2); }
  }
  const opts = { executionProviders: ['cpu'], graphOptimizationLevel: 'all' };
  if (threads > 0) { opts.intraOpNumThreads = threads; opts.interOpNumThreads = 1; }
  const t0 = Date.now();
  const session = await ort.InferenceSession.create(model, opts);
  const loadMs = Date.now() - t0;
  const feeds = {};
  for (const name of session.inputNames) {
    const meta = session.inputMetadata ? session.inputMetadata.find(m => m.name === name) : null;
    let shape = shapeArg || (meta && meta.shape ? meta.shape.map(d => (typeof d === 'number' && d > 0 ? d : 1)) : null);
    if (!shape) { console.error(`ort_bench: give --shape for input ${name}`); process.exit(2); }
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let k = 0; k < n; k++) data[k] = ((k * 2654435761) % 1000) / 500 - 1;
    feeds[name] = new ort.Tensor('float32', data, shape);
  }
  for (let i = 0; i < 2; i++) await session.run(feeds);
  const times = [];
  for (let i = 0; i < iterations; i++) {
    const s = process.hrtime.bigint();
    await session.run(feeds);
    times.push(Number(process.hrtime.bigint() - s) / 1e6);
  }
  times.sort((a, b) => a - b);
  const median = times[Math.floor(times.length / 2)];
  console.log(JSON.stringify({ runtime: 'onnxruntime-node ' + require('onnxruntime-node/package.json').version,
    model, threads: threads || 'default', load_ms: loadMs, median_ms: median, min_ms: times[0], iterations }));
}
main().catch(e => { console.error('ort_bench: ' + e.message); process.exit(1); });
