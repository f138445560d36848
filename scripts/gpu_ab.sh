#!/usr/bin/env bash
# kiln: A/B of build-time settings on one model, on a GPU machine, in one command for the
# device tool. For MODEL:BATCH:HxW it exports the model once, builds one FP16 CUDA plan per
# variant (NAME or NAME:VAR=VALUE[,VAR=VALUE...], the variables set for that variant's build
# and runs: KILN_CONV_IGEMM, KILN_PDL, ...), then times the plans in turn, ROUNDS times over
# (kiln bench, CUDA graph replays), so drifting GPU state hits every variant alike.
#   scripts/gpu_ab.sh BUILD MODEL:BATCH:HxW ROUNDS VARIANT...
# Writes $OUT/ab-MODEL-bBATCH.txt (build logs, layer lists, bench output), prints the medians.
set -u
B=$(cd "${1:?usage: gpu_ab.sh BUILD MODEL:BATCH:HxW ROUNDS VARIANT...}" && pwd)
spec=${2:?usage: gpu_ab.sh BUILD MODEL:BATCH:HxW ROUNDS VARIANT...}
rounds=${3:?usage: gpu_ab.sh BUILD MODEL:BATCH:HxW ROUNDS VARIANT...}
shift 3
OUT=${OUT:-$PWD/gpu-ab-out}
mkdir -p "$OUT"
. "$(dirname "$0")/gpu_env.sh"
IFS=: read -r model batch size <<<"$spec"
dir=/tmp/kiln-ab/$model-b$batch
log="$OUT/ab-$model-b$batch.txt"
: >"$log"
$PY python/export.py "$model" --out "$dir" --size "$size" --batch "$batch" --quiet >>"$log" 2>&1 || { echo "export failed"; exit 1; }
names=()
varsof=()
for v in "$@"; do
    name=${v%%:*}
    vars=""
    [ "$name" != "$v" ] && vars=${v#*:}
    names+=("$name")
    varsof+=("$vars")
    echo "== build $name ($vars)" >>"$log"
    (IFS=,; for kv in $vars; do export "${kv?}"; done
     "$K" build "$dir/model.onnx" -o "$dir/$name.plan" --device cuda --fp16 >>"$log" 2>&1) || { echo "build $name failed"; tail "$log"; exit 1; }
    "$K" inspect "$dir/$name.plan" >>"$log" 2>&1
done
for r in $(seq "$rounds"); do
    for i in "${!names[@]}"; do
        name=${names[$i]}
        line=$(IFS=,; for kv in ${varsof[$i]}; do export "${kv?}"; done
               "$K" bench "$dir/$name.plan" --device-io --iterations 2000 --warmup 200 2>&1 | tee -a "$log" | grep "latency ")
        echo "round $r $name: $line"
    done
done
