#!/usr/bin/env bash
# kiln: kernel-level look at a small model on a GPU machine, in one command for the device
# tool. For MODEL:BATCH:HxW it exports the model, builds it FP16 for CUDA, lists every kernel
# of one kiln inference and of one PyTorch FP16 channels-last forward with its GPU time (ncu,
# clocks left alone), then times both end to end, alternating ROUNDS times (kiln bench on
# device I/O; PyTorch CUDA-graph replays, python/bench/torch_probe.py), so drifting GPU state
# hits both alike. Run from the repository root with a packed build (see gpu_session.sh):
#   scripts/gpu_kernels.sh BUILD MODEL:BATCH:HxW [ROUNDS]
# Writes $OUT/kernels-MODEL-bBATCH.txt and prints the latency table last.
set -u
B=$(cd "${1:?usage: gpu_kernels.sh BUILD MODEL:BATCH:HxW [ROUNDS]}" && pwd)
spec=${2:?usage: gpu_kernels.sh BUILD MODEL:BATCH:HxW [ROUNDS]}
rounds=${3:-3}
OUT=${OUT:-$PWD/gpu-kernels-out}
mkdir -p "$OUT"
. "$(dirname "$0")/gpu_env.sh"
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -n 1)
IFS=: read -r model batch size <<<"$spec"
dir=/tmp/kiln-kernels/$model-b$batch
log="$OUT/kernels-$model-b$batch.txt"
: >"$log"
$PY python/export.py "$model" --out "$dir" --size "$size" --batch "$batch" --quiet >>"$log" 2>&1 || { echo "export failed"; exit 1; }
"$K" build "$dir/model.onnx" -o "$dir/model.plan" --device cuda --fp16 >>"$log" 2>&1 || { echo "build failed"; tail "$log"; exit 1; }
"$K" inspect "$dir/model.plan" >>"$log" 2>&1
if [ -n "$NCU" ]; then
    # per-kernel GPU time: kiln's three timed runs (graph replays) and PyTorch's eager forwards
    for who in kiln torch; do
        if [ $who = kiln ]; then
            cmd=("$K" bench "$dir/model.plan" --device-io --iterations 3 --warmup 1)
        else
            cmd=($PY python/bench/torch_probe.py "$model" kernels --batch "$batch" --size "$size" --iters 1)
        fi
        "$NCU" --clock-control none --metrics gpu__time_duration.sum --csv --print-units base "${cmd[@]}" \
            >"$dir/ncu-$who.csv" 2>>"$log" || echo "ncu $who failed" | tee -a "$log"
        # the last forward's kernels: name and ns
        $PY - "$dir/ncu-$who.csv" "$who" <<'PYEOF' | tee -a "$log"
import csv, sys
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
if not rows:
    print(sys.argv[2], "no ncu rows"); sys.exit()
head = rows[0]
ki, ni, vi = head.index("Kernel Name"), head.index("Metric Name"), head.index("Metric Value")
ks = [(r[ki], float(r[vi].replace(",", ""))) for r in rows[1:] if r[ni] == "gpu__time_duration.sum"]
print(f"{sys.argv[2]}: {len(ks)} kernels profiled in all, {sum(v for _, v in ks) / 1000:.1f} us")
print(f"{sys.argv[2]} kernels (ns, name):")
for name, ns in ks:
    print(f"  {ns:9.0f}  {name[:110]}")
PYEOF
    done
else
    echo "no ncu on this machine" | tee -a "$log"
fi
for r in $(seq "$rounds"); do
    "$K" bench "$dir/model.plan" --device-io --iterations 8000 --warmup 200 2>&1 | grep -E "latency" | sed "s/^/kiln round $r: /" | tee -a "$log"
    $PY python/bench/torch_probe.py "$model" latency --batch "$batch" --size "$size" --iters 8000 2>&1 | tail -n 1 | sed "s/^/torch round $r: /" | tee -a "$log"
done
