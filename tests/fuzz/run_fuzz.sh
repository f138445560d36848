#!/bin/sh
# Builds the fuzz targets with clang (libFuzzer + ASan + UBSan, the whole tree
# instrumented) and runs each for SECONDS seconds: fuzz_onnx (the ONNX importer) and
# fuzz_build (import, CPU engine build, one run) from the seed corpus in tests/onnx/corpus,
# and fuzz_plan (the engine-file loader) from plans written by make_plan_corpus. Exits non-zero if a fuzzer finds a crash, leak or
# timeout; the reproducer is left in the work directory it prints.
#   tests/fuzz/run_fuzz.sh SECONDS
# Environment: KILN_FUZZ_BUILD (build directory), JOBS (build parallelism, default 2).
set -eu
secs=${1:-60}
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${KILN_FUZZ_BUILD:-$root/build-fuzz}
flags="-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
CC=${CC:-clang} cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKILN_CUDA=OFF -DKILN_ONNX=ON \
    -DKILN_FUZZ=ON "-DCMAKE_C_FLAGS=$flags" >/dev/null
cmake --build "$build" --target fuzz_onnx fuzz_build fuzz_plan make_plan_corpus -j"${JOBS:-2}"
work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-fuzz.XXXXXX")
mkdir -p "$work/onnx" "$work/build" "$work/plan"
cp "$root"/tests/onnx/corpus/* "$work/onnx/"
cp "$root"/tests/onnx/corpus/* "$work/build/"
"$build/src/onnx/make_plan_corpus" "$work/plan"

run() { # target corpus
    echo "$1: fuzzing for ${secs}s in $work"
    status=0
    "$build/src/onnx/$1" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -artifact_prefix="$work/$1-" "$work/$2" 2>"$work/$1.log" || status=$?
    tail -n 3 "$work/$1.log"
    if [ "$status" -ne 0 ]; then
        echo "$1 failed (status $status): see $work/$1.log and the $1-crash-*/leak-*/timeout-* files" >&2
        exit "$status"
    fi
    echo "$1: no problem found in ${secs}s"
}
run fuzz_onnx onnx
run fuzz_build build
run fuzz_plan plan
rm -rf "$work"
