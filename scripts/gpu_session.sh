#!/usr/bin/env bash
# kiln: one GPU-machine session in one command, for the device tool: correctness of every
# op and whole engines on CUDA plus the ResNet-50 benchmark (scripts/gpu_check.sh), then the
# comparison harness (python/bench/run.py) against PyTorch and ONNX Runtime, measured in the
# same run on the same GPU. The build is made here and packed (scripts/gpu_check.sh --pack,
# plus bin/kiln, lib/libkiln*.so and extra-libs.tar.xz).
#   scripts/gpu_session.sh BUILD MODELS [HARNESS-SECONDS] [extra run.py options...]
# Writes under $OUT: gpu_check's logs and harness.tar.gz (results.json/md, charts, run.log).
set -u
B=$(cd "${1:-build-gpu}" && pwd)
MODELS=${2:-resnet50}
SECS=${3:-300}
shift 3 2>/dev/null || shift $#
OUT=${OUT:-$PWD/gpu-session-out}
mkdir -p "$OUT"
if [ "${GPU_SESSION_CHECK:-1}" = 1 ]; then
    OUT=$OUT scripts/gpu_check.sh "$B"
fi
site=/opt/torch/.venv/lib/python3.12/site-packages/nvidia
export LD_LIBRARY_PATH="$B/lib:$site/cudnn/lib:$site/cublas/lib:/usr/local/cuda/lib64:/tmp/kiln-extra-libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
mkdir -p /tmp/kiln-extra-libs && tar -C /tmp/kiln-extra-libs -xJf "$B/extra-libs.tar.xz"
"$B/bin/kiln" --version >/dev/null 2>&1 || "$B/bin/kiln" bench --help | head -3
[ -f "$B/COMMIT" ] && export KILN_GIT_COMMIT="$(cat "$B/COMMIT") (packed build)"
h=/tmp/kiln-harness
rm -rf "$h"
PYTHONUNBUFFERED=1 timeout $((SECS + 60)) python3 python/bench/run.py --kiln "$B/bin/kiln" --out "$h" \
    --models "$MODELS" --time-budget "$SECS" "$@" 2>&1 | tail -n 60
tar -C /tmp -czf "$OUT/harness.tar.gz" kiln-harness
