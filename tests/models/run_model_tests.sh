#!/bin/bash
# Model tests: exports the seed models (python/kiln_models.py) with the output of a float64
# copy of each model as the reference, then runs them all through kiln_onnx_test and fails
# unless every one passes.
#
#   tests/models/run_model_tests.sh BUILD_DIR [NAME...]
#
# Exports go to BUILD_DIR/models/NAME (about 1.1 GB in all; VGG16 alone is 553 MB) and are
# redone only when the export arguments, the exporter, the model code or torch changed.
# NAME... runs a subset. Environment: KILN_PYTHON (default /usr/bin/python3, which has torch),
# KILN_REL_L2 (default 1e-4: relative L2 error of each output against the float64 reference;
# a model on which PyTorch's own float32 run is further off gets twice that error instead).
set -euo pipefail

if [ $# -lt 1 ] || [ "${1:0:1}" = "-" ]; then
    echo "usage: $0 BUILD_DIR [NAME...]" >&2
    exit 2
fi
BUILD_DIR=$(cd "$1" && pwd)
shift
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PY=${KILN_PYTHON:-/usr/bin/python3}
REL_L2=${KILN_REL_L2:-1e-4}
RUNNER=$BUILD_DIR/src/onnx/kiln_onnx_test
OUT=$BUILD_DIR/models

# name: export.py arguments. Batch 1 and small inputs keep CI time down; the last two
# variants keep BatchNormalization nodes (normally folded by the exporter), make the batch
# symbolic, and take YOLO's three raw head outputs.
MODELS=(
    "vgg16:vgg16 --size 224x224"
    "resnet50:resnet50 --size 224x224"
    "unet:unet --size 256x256"
    "deeplabv3plus:deeplabv3plus --size 256x256"
    "yolov5s:yolov5s --size 320x320"
    "mnist_cnn:mnist_cnn"
    "mnist_cnn_bn_dynbatch:mnist_cnn --keep-bn --dynamic-batch --batch 4"
    "yolov5s_raw_bn:yolov5s --size 256x256 --raw-head --keep-bn"
)

if ! "$PY" -c "import torch, onnx" 2>/dev/null; then
    echo "$0: $PY cannot import torch and onnx (set KILN_PYTHON)" >&2
    exit 2
fi
if [ ! -x "$RUNNER" ]; then
    echo "$0: $RUNNER not found: configure with -DKILN_ONNX=ON and build kiln_onnx_test" >&2
    exit 2
fi
# The runner prints its usage when given no directory; the relative-L2 mode must be in it.
usage=$("$RUNNER" 2>&1 || true)
if [[ $usage != *--rel-l2* ]]; then
    echo "$0: $RUNNER has no --rel-l2 mode; deep models need a whole-tensor relative" \
         "L2 check, elementwise tolerances fail on near-zero values" >&2
    exit 2
fi

selected=()
for entry in "${MODELS[@]}"; do
    name=${entry%%:*}
    if [ $# -gt 0 ]; then
        want=0
        for n in "$@"; do [ "$n" = "$name" ] && want=1; done
        [ $want = 1 ] || continue
    fi
    selected+=("$entry")
done
if [ ${#selected[@]} -eq 0 ]; then
    echo "$0: no model matches '$*' (known: $(printf '%s ' "${MODELS[@]%%:*}"))" >&2
    exit 2
fi

# Anything that changes the exported bytes goes into the stamp.
code_hash=$(cat "$REPO/python/export.py" "$REPO/python/kiln_models.py" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)
torch_version=$("$PY" -c "import torch, onnx; print(torch.__version__, onnx.__version__)")

dirs=()
mkdir -p "$OUT"
for entry in "${selected[@]}"; do
    name=${entry%%:*}
    args=${entry#*:}
    dir=$OUT/$name
    stamp="$args | $code_hash | torch/onnx $torch_version"
    if [ -f "$dir/.stamp" ] && [ "$(cat "$dir/.stamp")" = "$stamp" ] && [ -f "$dir/model.onnx" ] &&
       [ -f "$dir/test_data_set_0/input_0.pb" ] && [ -f "$dir/float32_rel_l2.txt" ]; then
        echo "export $name: up to date"
    else
        rm -rf "$dir"
        start=$(date +%s.%N)
        # shellcheck disable=SC2086  # args are words on purpose
        "$PY" "$REPO/python/export.py" $args --reference float64 --out "$dir" --quiet
        echo "$stamp" > "$dir/.stamp"
        awk -v n="$name" -v t0="$start" -v t1="$(date +%s.%N)" -v b="$(stat -c %s "$dir/model.onnx")" \
            'BEGIN { printf "export %s: %.1fs (%.1f MB)\n", n, t1 - t0, b / 1e6 }'
    fi
    dirs+=("$dir")
done

# The expected outputs come from a float64 copy of the model. Each model is held to
# REL_L2, or to twice PyTorch's own float32 error on it when the model's conditioning puts
# any float32 run further off (export.py writes that figure).
log=$OUT/last_run.log
: >"$log"
rc=0
passed=0
set +e
for dir in "${dirs[@]}"; do
    tol=$(awk -v base="$REL_L2" '{ t = 2 * $1; print (t > base ? t : base) }' "$dir/float32_rel_l2.txt" 2>/dev/null)
    tol=${tol:-$REL_L2}
    echo "$(basename "$dir"): tolerance $tol (PyTorch float32 vs float64: $(cat "$dir/float32_rel_l2.txt" 2>/dev/null || echo unknown))" | tee -a "$log"
    # this model's run alone decides its count (a crash prints no summary: 0 passed)
    one=$("$RUNNER" -v --rel-l2 "$tol" "$dir" 2>&1)
    r=$?
    printf '%s\n' "$one" | tee -a "$log"
    [ "$r" -eq 0 ] || rc=$r
    n=$(printf '%s\n' "$one" | sed -n 's/^\([0-9]*\) passed, .*/\1/p' | tail -n 1)
    passed=$((passed + ${n:-0}))
done
set -e
# The runner's exit status ignores skipped tests (unsupported ops); here every model must pass.
if [ "$rc" -ne 0 ] || [ "${passed:-0}" -ne ${#dirs[@]} ]; then
    echo "model tests FAILED: ${passed:-0} of ${#dirs[@]} models passed (runner exit status $rc; log: $log)" >&2
    exit 1
fi
echo "model tests passed: ${#dirs[@]} models"
