#!/usr/bin/env bash
# kiln: Nsight Compute's full report on chosen kernels of one kiln inference, in one command
# for the device tool: exports MODEL at BATCH and HxW, builds it FP16 for CUDA (extra `kiln
# build` options in KILN_BUILD_OPTS), and profiles the first COUNT launches whose kernel name
# matches REGEX in `kiln bench --device-io` (speed of light, memory, occupancy, warp stalls,
# the source counters' hottest instructions). Run from the repository root with a packed
# build (see gpu_session.sh):
#   scripts/gpu_ncu.sh BUILD MODEL:BATCH:HxW REGEX [COUNT]
# Writes $OUT/ncu-MODEL-bBATCH.txt (and the .ncu-rep beside it) and prints the summary lines.
set -u
B=$(cd "${1:?usage: gpu_ncu.sh BUILD MODEL:BATCH:HxW REGEX [COUNT]}" && pwd)
spec=${2:?usage: gpu_ncu.sh BUILD MODEL:BATCH:HxW REGEX [COUNT]}
regex=${3:?usage: gpu_ncu.sh BUILD MODEL:BATCH:HxW REGEX [COUNT]}
count=${4:-1}
OUT=${OUT:-$PWD/gpu-ncu-out}
mkdir -p "$OUT"
. "$(dirname "$0")/gpu_env.sh"
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -n 1)
[ -n "$NCU" ] || { echo "no ncu on this machine"; exit 1; }
IFS=: read -r model batch size <<<"$spec"
dir=/tmp/kiln-ncu/$model-b$batch
log="$OUT/ncu-$model-b$batch.txt"
: >"$log"
if [ ! -f "$dir/model.onnx" ]; then
    $PY python/export.py "$model" --out "$dir" --size "$size" --batch "$batch" --quiet >>"$log" 2>&1 ||
        { echo "export failed"; tail "$log"; exit 1; }
fi
# shellcheck disable=SC2086
"$K" build "$dir/model.onnx" -o "$dir/model.plan" --device cuda --fp16 ${KILN_BUILD_OPTS:-} >>"$log" 2>&1 ||
    { echo "build failed"; tail "$log"; exit 1; }
"$NCU" --clock-control none --set full --import-source no -k "regex:$regex" --launch-count "$count" \
    -o "$OUT/ncu-$model-b$batch" -f "$K" bench "$dir/model.plan" --device-io --iterations 2 --warmup 1 >>"$log" 2>&1 ||
    { echo "ncu failed"; tail "$log"; exit 1; }
"$NCU" -i "$OUT/ncu-$model-b$batch.ncu-rep" --page details --print-details all >>"$log" 2>&1
"$NCU" -i "$OUT/ncu-$model-b$batch.ncu-rep" --page source --csv --print-source sass >"$OUT/ncu-$model-b$batch-sass.csv" 2>&1
grep -E "^  [a-zA-Z_]|Duration|Memory Throughput|DRAM Throughput|Compute \(SM\) Throughput|Achieved Occupancy|Registers Per|Theoretical Occupancy|Executed Ipc|L1/TEX Hit|L2 Hit|Stall" "$log" | head -n 80
