#!/usr/bin/env bash
# kiln: per-layer profiles and build times of seed models on a GPU machine, in one command
# for the device tool. For each MODEL:BATCH:HxW it exports the model (python/export.py, with
# the GPU machine's PyTorch), builds it FP16 for CUDA twice with one timing cache (cold, then
# warm: the build times show what the cache saves), then runs `kiln bench --profile` on
# device-resident I/O. Run from the repository root with a packed build (bin/kiln, lib/,
# extra-libs.tar.xz: see scripts/gpu_session.sh):
#   scripts/gpu_profile.sh BUILD MODEL:BATCH:HxW [...]
#   e.g. scripts/gpu_profile.sh build-gpu yolov5s:16:640x640 unet:8:512x512
# Writes $OUT/profile-MODEL-bBATCH.txt (build log, bench report with the layer table).
set -u
B=$(cd "${1:?usage: gpu_profile.sh BUILD MODEL:BATCH:HxW...}" && pwd)
shift
OUT=${OUT:-$PWD/gpu-profile-out}
mkdir -p "$OUT"
. "$(dirname "$0")/gpu_env.sh"
status=0
for spec in "$@"; do
    IFS=: read -r model batch size <<<"$spec"
    dir=/tmp/kiln-profile/$model-b$batch
    log="$OUT/profile-$model-b$batch.txt"
    : >"$log"
    if ! $PY python/export.py "$model" --out "$dir" --size "$size" --batch "$batch" >>"$log" 2>&1; then
        echo "$spec: export failed" | tee -a "$log"
        status=1
        continue
    fi
    cache=/tmp/kiln-profile/$model.cache
    rm -f "$cache"
    for pass in cold warm; do
        t0=$(date +%s.%N)
        "$K" build "$dir/model.onnx" -o "$dir/model.plan" --device cuda --fp16 --timing-cache "$cache" -v \
            >>"$log" 2>&1 || status=1
        t1=$(date +%s.%N)
        echo "build ($pass timing cache): $(awk "BEGIN{printf \"%.2f\", $t1 - $t0}") s, $(grep -h 'kernel choices' "$log" | tail -n 1)" |
            tee -a "$log"
    done
    "$K" bench "$dir/model.plan" --device-io --profile --duration 3 >>"$log" 2>&1 || status=1
    grep -E "median|throughput" "$log" | head -n 4
done
exit $status
