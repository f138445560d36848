#!/usr/bin/env bash
# kiln: runs the whole test suite against the CUDA backend on a GPU machine. Run from the
# repository root with a CUDA build directory present (built elsewhere and carried is fine):
#   scripts/gpu_check.sh [build-dir]        (default: build-cuda)
# Environment: OUT (where logs go; default ./gpu-check-out), GPU_CHECK_JOBS (parallel tests,
# default 4), GPU_CHECK_TESTS (a ctest -R regex to run a subset), GPU_CHECK_SANITIZE (a regex:
# the test programs it matches also run under compute-sanitizer memcheck, e.g. "ops_|cuda").
set -u
BUILD=${1:-build-cuda}
OUT=${OUT:-$PWD/gpu-check-out}
JOBS=${GPU_CHECK_JOBS:-4}
mkdir -p "$OUT"
if [ ! -d "$BUILD/tests" ]; then
    echo "gpu_check: no build directory '$BUILD' (configure with CUDA and build it first)" >&2
    exit 2
fi
BUILD=$(cd "$BUILD" && pwd)

# cuDNN and cuBLASLt: the toolkit's, or the wheels PyTorch brings along
site=/opt/torch/.venv/lib/python3.12/site-packages/nvidia
for d in /usr/local/cuda/lib64 "$site/cublas/lib" "$site/cudnn/lib"; do
    [ -d "$d" ] && LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
export LD_LIBRARY_PATH
# host libraries the GPU machine may lack (OpenBLAS), carried with the build as
# extra-libs.tar.xz (make it with: tar -C DIR -cJf BUILD/extra-libs.tar.xz .)
if [ -f "$BUILD/extra-libs.tar.xz" ] && ldd "$BUILD/tests/test_cuda_backend" | grep -q "not found"; then
    mkdir -p /tmp/kiln-extra-libs && tar -C /tmp/kiln-extra-libs -xJf "$BUILD/extra-libs.tar.xz" &&
        LD_LIBRARY_PATH="$LD_LIBRARY_PATH:/tmp/kiln-extra-libs"
fi
export KILN_TEST_DEVICE=cuda

{
    echo "date: $(date -u)"
    echo "host: $(uname -a)"
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    nvidia-smi || echo "nvidia-smi failed"
} >"$OUT/nvidia-smi.txt" 2>&1
cat "$OUT/nvidia-smi.txt"
ldd "$BUILD/tests/test_cuda_backend" >"$OUT/ldd.txt" 2>&1
if grep -q "not found" "$OUT/ldd.txt"; then
    echo "gpu_check: missing shared libraries:" >&2
    grep "not found" "$OUT/ldd.txt" >&2
fi

# ctest records absolute paths: when the build moved (carried to another machine), point
# the recorded path at this one, or fall back to running the programs directly
recorded=$(sed -n 's/^CMAKE_CACHEFILE_DIR:INTERNAL=//p' "$BUILD/CMakeCache.txt" 2>/dev/null)
use_ctest=1
if [ -n "$recorded" ] && [ "$recorded" != "$BUILD" ]; then
    if [ ! -e "$recorded" ] && mkdir -p "$(dirname "$recorded")" 2>/dev/null && ln -s "$BUILD" "$recorded" 2>/dev/null; then
        echo "gpu_check: linked $recorded -> $BUILD for ctest"
    else
        use_ctest=0
    fi
fi
command -v ctest >/dev/null || use_ctest=0

status=0
if [ "$use_ctest" = 1 ]; then
    # every test's own output goes to ctest-full.log; the console gets the summary lines
    (cd "$BUILD" && ctest -V --timeout 600 -j "$JOBS" ${GPU_CHECK_TESTS:+-R "$GPU_CHECK_TESTS"}) \
        >"$OUT/ctest-full.log" 2>&1
    status=$?
    grep -E "Test +#|checks, [0-9]+ failed|CHECK\(|no GPU|tests passed|FAILED|Failed" "$OUT/ctest-full.log" \
        | grep -v "^[0-9]*: Test command" | tee "$OUT/ctest.log"
else
    echo "gpu_check: running the test programs directly" | tee "$OUT/ctest.log"
    for t in "$BUILD"/tests/test_*; do
        [ -x "$t" ] || continue
        name=$(basename "$t")
        if [ -n "${GPU_CHECK_TESTS:-}" ] && ! echo "$name" | grep -Eq "$GPU_CHECK_TESTS"; then continue; fi
        if timeout 600 "$t" >"$OUT/$name.log" 2>&1; then
            echo "PASS $name: $(tail -n 1 "$OUT/$name.log")" | tee -a "$OUT/ctest.log"
        else
            echo "FAIL $name (exit $?): $(tail -n 1 "$OUT/$name.log")" | tee -a "$OUT/ctest.log"
            tail -n 30 "$OUT/$name.log"
            status=1
        fi
    done
fi

if [ -n "${GPU_CHECK_SANITIZE:-}" ] && command -v compute-sanitizer >/dev/null; then
    for t in "$BUILD"/tests/test_*; do
        name=$(basename "$t")
        echo "$name" | grep -Eq "$GPU_CHECK_SANITIZE" || continue
        timeout 600 compute-sanitizer --tool memcheck --leak-check no --report-api-errors no --error-exitcode 3 "$t" \
            >"$OUT/sanitize-$name.log" 2>&1
        rc=$?
        echo "memcheck $name: exit $rc, $(grep -m1 'ERROR SUMMARY' "$OUT/sanitize-$name.log")" | tee -a "$OUT/ctest.log"
        [ $rc -ne 0 ] && status=1
    done
fi
exit "$status"
