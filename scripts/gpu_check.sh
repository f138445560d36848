#!/usr/bin/env bash
# kiln: runs the whole test suite against the CUDA backend on a GPU machine, then the float16
# sweep of the op tests and the CUDA benchmark. Run from the repository root with a CUDA
# build directory present (built elsewhere and carried is fine):
#   scripts/gpu_check.sh [build-dir]        (default: build-cuda)
# The whole build directory may be too big to carry to the GPU machine (the device tool
# takes 64 MiB): pack the test programs, the benchmark and extra-libs.tar.xz into a small
# copy first, on the build machine (the tests go in as one tests.tar.xz), and run that:
#   scripts/gpu_check.sh --pack build-cuda build-gpu
# Phases and their logs under $OUT (at most 8 files, for the device tool):
#   1. every test program with KILN_TEST_DEVICE=cuda (FP32 op tests, test_cuda_backend,
#      test_cuda_fp16): ctest.log (summary), ctest-full.log (everything)
#   2. bench/bench_cuda (ResNet-50, FP32/TF32/FP16, batch 1/32/256): bench.md (the table),
#      bench-stderr.log (kernel choices per engine)
#   3. the op tests again with KILN_TEST_FP16=1: their 1e-5 bar is for FP32, so this phase
#      only reports comparisons above 1e-2 and crashes: fp16-sweep.log
#   (1b. tests/cli/run_tests.sh with the build's kiln binary: cli.log; GPU_CHECK_CLI=0 skips)
# Environment: OUT (default ./gpu-check-out), GPU_CHECK_JOBS (parallel tests, default 4),
# GPU_CHECK_TESTS (a ctest -R regex to run a subset), GPU_CHECK_BENCH=0 (skip phase 2),
# GPU_CHECK_SWEEP=0 (skip phase 3), GPU_CHECK_BENCH_ARGS (bench_cuda options, default
# "--seconds 1 --budget 300"), GPU_CHECK_SANITIZE (a regex: the test programs it matches
# also run under compute-sanitizer memcheck, e.g. "ops_|cuda").
set -u
if [ "${1:-}" = --pack ]; then
    src=${2:-build-cuda}
    dst=${3:-build-gpu}
    [ -d "$src/tests" ] || { echo "gpu_check --pack: no $src/tests" >&2; exit 2; }
    rm -rf "$dst" && mkdir -p "$dst/tests" "$dst/bench" || exit 2
    for t in "$src"/tests/test_*; do [ -f "$t" ] && [ -x "$t" ] && cp "$t" "$dst/tests/"; done
    [ -x "$src/bench/bench_cuda" ] && cp "$src/bench/bench_cuda" "$dst/bench/"
    [ -x "$src/bench/igemm_bench" ] && cp "$src/bench/igemm_bench" "$dst/bench/"
    [ -f "$src/extra-libs.tar.xz" ] && cp "$src/extra-libs.tar.xz" "$dst/"
    # the commit the build comes from, for reports made on the GPU machine
    git describe --always --dirty --abbrev=10 >"$dst/COMMIT" 2>/dev/null || rm -f "$dst/COMMIT"
    strip "$dst"/tests/test_* "$dst"/bench/* 2>/dev/null
    # every test program embeds the same library and kernels: one xz stream with a 64 MiB
    # dictionary stores them about once (unpacked again below, on the GPU machine)
    (set -o pipefail && tar -C "$dst" -cf - tests | xz -9 -T1 >"$dst/tests.tar.xz") && rm -rf "$dst/tests" ||
        { echo "gpu_check --pack: packing the tests failed" >&2; exit 2; }
    du -sh "$dst"
    exit 0
fi
BUILD=${1:-build-cuda}
OUT=${OUT:-$PWD/gpu-check-out}
JOBS=${GPU_CHECK_JOBS:-4}
mkdir -p "$OUT"
if [ ! -d "$BUILD/tests" ] && [ -f "$BUILD/tests.tar.xz" ]; then
    tar -C "$BUILD" -xJf "$BUILD/tests.tar.xz" || exit 2
fi
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
# host libraries the GPU machine may lack (OpenBLAS, protobuf-c), carried with the build as
# extra-libs.tar.xz (make it with: tar -C DIR -cJf BUILD/extra-libs.tar.xz .); searched
# after the system's own
if [ -f "$BUILD/extra-libs.tar.xz" ]; then
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
# a trimmed copy of the build (test programs only, no CMake files) runs them directly
[ -f "$BUILD/CTestTestfile.cmake" ] || use_ctest=0

status=0
if [ "$use_ctest" = 1 ]; then
    # every test's own output goes to ctest-full.log; the console gets the summary lines
    (cd "$BUILD" && ctest -V --timeout 600 -j "$JOBS" ${GPU_CHECK_TESTS:+-R "$GPU_CHECK_TESTS"}) \
        >"$OUT/ctest-full.log" 2>&1
    status=$?
    grep -E "Test +#|checks, [0-9]+ failed|CHECK\(|no GPU|tests passed|FAILED|Failed" "$OUT/ctest-full.log" \
        | grep -v "^[0-9]*: Test command" | tee "$OUT/ctest.log"
else
    echo "gpu_check: running the test programs directly ($JOBS at a time)" | tee "$OUT/ctest.log"
    : >"$OUT/ctest-full.log"
    logs=$(mktemp -d)
    for t in "$BUILD"/tests/test_*; do
        [ -x "$t" ] || continue
        name=$(basename "$t")
        if [ -n "${GPU_CHECK_TESTS:-}" ] && ! echo "$name" | grep -Eq "$GPU_CHECK_TESTS"; then continue; fi
        echo "$t"
    done | xargs -P "$JOBS" -I{} sh -c 'n=$(basename "$1"); timeout 600 "$1" >"$2/$n.log" 2>&1; echo $? >"$2/$n.rc"' _ {} "$logs"
    for rcf in "$logs"/*.rc; do
        [ -f "$rcf" ] || continue
        name=$(basename "$rcf" .rc)
        rc=$(cat "$rcf")
        if [ "$rc" = 0 ]; then
            echo "PASS $name: $(tail -n 1 "$logs/$name.log")" | tee -a "$OUT/ctest.log"
        else
            echo "FAIL $name (exit $rc): $(tail -n 1 "$logs/$name.log")" | tee -a "$OUT/ctest.log"
            grep -E "CHECK\(|relative error" "$logs/$name.log" | head -n 20
            status=1
        fi
        { echo "==== $name (exit $rc)"; cat "$logs/$name.log"; } >>"$OUT/ctest-full.log"
    done
    rm -rf "$logs"
fi

# phase 1b: the command-line tests, whose CUDA branch (CUDA build, run, compare, timing
# cache) only runs where a GPU answers: cli.log
kbin=""
for cand in "$BUILD/bin/kiln" "$BUILD/tools/kiln"; do [ -x "$cand" ] && { kbin=$cand; break; }; done
if [ -n "$kbin" ] && [ "${GPU_CHECK_CLI:-1}" != 0 ]; then
    LD_LIBRARY_PATH="$BUILD/lib:$BUILD:$BUILD/src/onnx:$LD_LIBRARY_PATH" timeout 600 \
        tests/cli/run_tests.sh "$kbin" tests/cli/data /tmp/kiln-cli-work >"$OUT/cli.log" 2>&1
    rc=$?
    echo "cli tests: exit $rc, $(tail -n 1 "$OUT/cli.log")" | tee -a "$OUT/ctest.log"
    [ $rc -ne 0 ] && status=1
fi

# phase 2: the benchmark
if [ "${GPU_CHECK_BENCH:-1}" != 0 ]; then
    if [ -x "$BUILD/bench/bench_cuda" ]; then
        # shellcheck disable=SC2086
        timeout 900 "$BUILD/bench/bench_cuda" ${GPU_CHECK_BENCH_ARGS:---seconds 1 --budget 300} \
            >"$OUT/bench.md" 2>"$OUT/bench-stderr.log"
        rc=$?
        echo "bench_cuda: exit $rc" | tee -a "$OUT/ctest.log"
        cat "$OUT/bench.md"
        [ $rc -ne 0 ] && status=1
    else
        echo "gpu_check: no $BUILD/bench/bench_cuda: benchmark skipped" | tee -a "$OUT/ctest.log"
    fi
fi

# phase 3: the op tests under KILN_FLAG_FP16, judged at 1e-2 (their own 1e-5 checks fail by design)
if [ "${GPU_CHECK_SWEEP:-1}" != 0 ]; then
    sweep="$OUT/fp16-sweep.log"
    : >"$sweep"
    crashed=0
    for t in "$BUILD"/tests/test_ops_*; do
        [ -x "$t" ] || continue
        name=$(basename "$t")
        log=$(mktemp)
        KILN_TEST_FP16=1 timeout 600 "$t" >"$log" 2>&1
        rc=$?
        # exit 1 is "some check failed"; anything else (a signal, a timeout) is a crash
        if [ $rc -gt 1 ]; then
            echo "CRASH $name (exit $rc)" >>"$sweep"
            tail -n 20 "$log" >>"$sweep"
            crashed=1
        fi
        total=$(grep -c "relative error" "$log")
        big=$(grep "relative error" "$log" | awk '{for (i = 1; i < NF; i++) if ($i == "error") { v = $(i + 1); if (v == "inf" || v == "nan" || v + 0 >= 0.01) print; break }}')
        nbig=$(printf "%s" "$big" | grep -c . || true)
        other=$(grep "CHECK(" "$log" | grep -vc "relative error" || true)
        echo "$name: exit $rc, $total comparisons above 1e-5, $nbig above 1e-2, $other other failed checks" >>"$sweep"
        [ -n "$big" ] && printf "%s\n" "$big" | head -n 20 | sed 's/^/    /' >>"$sweep"
        grep "CHECK(" "$log" | grep -v "relative error" | head -n 10 | sed 's/^/    other: /' >>"$sweep"
        rm -f "$log"
    done
    echo "fp16 sweep (op tests with KILN_TEST_FP16=1, judged at 1e-2):" | tee -a "$OUT/ctest.log"
    grep -v "^    " "$sweep" | tee -a "$OUT/ctest.log"
    [ $crashed = 1 ] && status=1
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
