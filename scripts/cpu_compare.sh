#!/usr/bin/env bash
# kiln: CPU backend against ONNX Runtime (CPU provider) on the same ONNX model, the same
# cores and the same thread count, interleaved so drifting load hits both alike.
#   scripts/cpu_compare.sh KILN MODEL.onnx [THREADS] [ROUNDS]
# KILN is the kiln command line; ONNX Runtime comes from Python (onnxruntime) when
# importable, else from bench/ort/ort_bench.js (npm onnxruntime-node). Prints one line per
# measurement and the medians.
set -u
kiln=$1 model=$2 threads=${3:-2} rounds=${4:-3}
cores=$(seq -s, 0 $((threads - 1)))
pin() { if command -v taskset >/dev/null; then taskset -c "$cores" "$@"; else "$@"; fi; }
ort_py='
import sys, time, numpy as np, onnxruntime as ort
o = ort.SessionOptions(); o.intra_op_num_threads = int(sys.argv[2]); o.inter_op_num_threads = 1
s = ort.InferenceSession(sys.argv[1], o, providers=["CPUExecutionProvider"])
i = s.get_inputs()[0]; x = np.random.default_rng(1).uniform(-1, 1, [d if isinstance(d, int) else 1 for d in i.shape]).astype(np.float32)
for _ in range(3): s.run(None, {i.name: x})
t = []
for _ in range(20):
    a = time.perf_counter(); s.run(None, {i.name: x}); t.append((time.perf_counter() - a) * 1e3)
print("%.3f" % sorted(t)[len(t) // 2])
'
k_all=() o_all=()
for r in $(seq "$rounds"); do
    j=$(mktemp)
    pin "$kiln" bench "$model" --device cpu --threads "$threads" --iterations 20 --warmup 3 --quiet --json "$j" >/dev/null
    k=$(python3 -c 'import json,sys; print("%.3f" % json.load(open(sys.argv[1]))["latency_ms"]["median"])' "$j")
    rm -f "$j"
    if python3 -c 'import onnxruntime' 2>/dev/null; then
        o=$(pin python3 -c "$ort_py" "$model" "$threads")
    else
        o=$(pin node "$(dirname "$0")/../bench/ort/ort_bench.js" "$model" --threads "$threads" --iterations 20 |
            python3 -c 'import json,sys; print("%.3f" % json.load(sys.stdin)["median_ms"])')
    fi
    echo "round $r: kiln ${k} ms, onnxruntime ${o} ms"
    k_all+=("$k") o_all+=("$o")
done
python3 - "${k_all[*]}" "${o_all[*]}" "$threads" <<'PY'
import sys, statistics as s
k = [float(v) for v in sys.argv[1].split()]; o = [float(v) for v in sys.argv[2].split()]
print("median over rounds, %s threads: kiln %.2f ms, onnxruntime %.2f ms, kiln/ort %.2fx" % (sys.argv[3], s.median(k), s.median(o), s.median(k) / s.median(o)))
PY
