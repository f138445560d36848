#!/bin/sh
# Builds the ONNX importer fuzz target with clang (libFuzzer + ASan + UBSan, the whole
# tree instrumented) and runs it for SECONDS seconds from the seed corpus in
# tests/onnx/corpus. Exits non-zero if the fuzzer finds a crash, leak or timeout; the
# reproducer is left in the work directory it prints.
#   tests/fuzz/run_fuzz.sh SECONDS
# Environment: KILN_FUZZ_BUILD (build directory), JOBS (build parallelism, default 2).
set -eu
secs=${1:-60}
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${KILN_FUZZ_BUILD:-${TMPDIR:-/tmp}/kiln-fuzz-build}
flags="-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
CC=${CC:-clang} cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKILN_CUDA=OFF -DKILN_ONNX=ON \
    -DKILN_FUZZ=ON "-DCMAKE_C_FLAGS=$flags" >/dev/null
cmake --build "$build" --target fuzz_onnx -j"${JOBS:-2}"
work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-fuzz.XXXXXX")
mkdir -p "$work/corpus"
cp "$root"/tests/onnx/corpus/* "$work/corpus/"
echo "fuzzing for ${secs}s in $work"
status=0
"$build/src/onnx/fuzz_onnx" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -artifact_prefix="$work/" "$work/corpus" 2>"$work/fuzz.log" || status=$?
tail -n 5 "$work/fuzz.log"
if [ "$status" -ne 0 ]; then
    echo "fuzz_onnx failed (status $status): see $work/fuzz.log and the crash-*/leak-*/timeout-* files there" >&2
    exit "$status"
fi
rm -rf "$work"
echo "fuzz_onnx: no problem found in ${secs}s"
