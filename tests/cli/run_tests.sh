#!/bin/bash
# Tests of the kiln command line: every subcommand's happy path on the tiny models of
# tests/cli/data (outputs checked against numpy references made by make_data.py), and
# every kind of bad input: each must end with the right exit status (2 usage, 1 failure,
# never a signal), exactly one line on stderr naming the file or tensor, and no file left
# behind.
#
#   tests/cli/run_tests.sh KILN_BINARY DATA_DIR WORK_DIR      (registered with CTest as "cli")
set -u

if [ $# -ne 3 ]; then
    echo "usage: $0 KILN_BINARY DATA_DIR WORK_DIR" >&2
    exit 2
fi
K=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
D=$(cd "$2" && pwd)
W=$3
rm -rf "$W"
mkdir -p "$W"
cd "$W" || exit 1

failures=0
checks=0

fail() {
    echo "FAIL: $*"
    echo "  command: ${CMD[*]}"
    sed 's/^/  stdout: /' out.txt | head -20
    sed 's/^/  stderr: /' err.txt | head -20
    failures=$((failures + 1))
}

# run CMD...: runs it, stdout in out.txt, stderr in err.txt, status in $rc
run() {
    CMD=("$@")
    "$@" > out.txt 2> err.txt
    rc=$?
}

# ok NAME CMD...: exit status 0
ok() {
    local name=$1
    shift
    run "$@"
    checks=$((checks + 1))
    if [ $rc -ne 0 ]; then fail "$name: exit status $rc, expected 0"; return 1; fi
    return 0
}

# err NAME STATUS TEXT CMD...: exit status STATUS, one line on stderr containing TEXT
err() {
    local name=$1 want=$2 text=$3
    shift 3
    run "$@"
    checks=$((checks + 1))
    local lines
    lines=$(grep -c '' err.txt)
    if [ $rc -ne "$want" ]; then fail "$name: exit status $rc, expected $want"; return; fi
    if [ "$lines" -ne 1 ]; then fail "$name: $lines lines on stderr, expected 1"; return; fi
    if ! grep -qF -- "$text" err.txt; then fail "$name: stderr does not mention '$text'"; return; fi
}

# has NAME FILE TEXT: FILE contains TEXT
has() {
    checks=$((checks + 1))
    if ! grep -qF -- "$3" "$2"; then fail "$1: $2 does not contain '$3'"; fi
}

# no_leftovers NAME: no temporary files anywhere under the work directory
no_leftovers() {
    checks=$((checks + 1))
    local left
    left=$(find . -name '*.kiln-tmp*' -o -name '*.tmp[0-9]*' | head -5)
    if [ -n "$left" ]; then fail "$1: temporary files left: $left"; fi
}

CNN=$D/tiny_cnn.onnx
MLP=$D/dyn_mlp.onnx
X=$D/tiny_cnn_input.npy

if "$K" inspect "$CNN" 2>&1 | grep -q "without the ONNX importer"; then
    echo "skipped: this kiln was built without the ONNX importer (KILN_ONNX=OFF)"
    exit 77
fi

# ---------------------------------------------------------------- help and usage
for c in build run bench compare inspect onnx-test; do
    ok "help $c" "$K" $c --help && has "help $c" out.txt "examples:"
done
ok "top-level help" "$K" --help && has "top-level help" out.txt "onnx-test"
run "$K"
checks=$((checks + 1))
[ $rc -eq 2 ] && grep -q "usage: kiln" err.txt || fail "no command: exit status $rc, expected 2 and the usage"
err "unknown command" 2 "unknown command 'frob'" "$K" frob
err "unknown option" 2 "unknown option '--bogus'" "$K" run "$CNN" --bogus
err "option without value" 2 "--iterations needs a value" "$K" bench "$CNN" --iterations
err "bad number" 2 "--iterations: 'abc'" "$K" bench "$CNN" --iterations abc
err "flag with a value" 2 "--fp16 takes no value" "$K" build "$CNN" --fp16=1
err "no model" 2 "no model given" "$K" run
err "two models" 2 "one model at a time" "$K" inspect "$CNN" "$MLP"
err "bad shapes" 2 "--shapes: 'input:1x3xfoo'" "$K" build "$CNN" --shapes input:1x3xfoo
err "bad device" 2 "--device: 'tpu'" "$K" build "$CNN" --device tpu
err "bad preprocess" 2 "--preprocess: 'fancy'" "$K" run "$CNN" --preprocess fancy
err "input without =" 2 "--input: 'foo.npy' is not NAME=FILE" "$K" run "$CNN" --input foo.npy
err "input of unknown type" 2 "unknown file type" "$K" run "$CNN" --input input=data.txt
err "iterations and duration" 2 "not both" "$K" bench "$CNN" --iterations 3 --duration 1

# ---------------------------------------------------------------- build
ok "build" "$K" build "$CNN" -o t.plan --json build.json &&
    has "build summary" out.txt "after optimization" &&
    has "build summary" out.txt "precision  float32" &&
    has "build summary" out.txt "weights" &&
    has "build summary" out.txt "parse" &&
    has "build json" build.json '"layers_after"'
[ -s t.plan ] || fail "build: t.plan missing"
ok "build quiet" "$K" build "$CNN" -o q.plan -q
checks=$((checks + 1))
[ -s out.txt ] && fail "build -q wrote to stdout"
ok "build default name" cp "$CNN" copy.onnx
ok "build default name" "$K" build copy.onnx -q
[ -s copy.plan ] || fail "build: default output copy.plan missing"
ok "build verbose" "$K" build "$CNN" -o v.plan -v && has "build verbose log" err.txt "info:"
# on a terminal (script(1) gives it one): each phase of the build as the library reports
# it, layers done, time, and an estimate of the time left while kernels are chosen
if script -qec true /dev/null > /dev/null 2>&1; then
    run script -qec "'$K' build '$CNN' -o tty.plan" /dev/null
    checks=$((checks + 1))
    [ $rc -eq 0 ] || fail "build on a terminal: exit status $rc"
    has "progress check phase" out.txt "building tiny_cnn.onnx: check 0/11 layers"
    has "progress optimize phase" out.txt "building tiny_cnn.onnx: optimize, "
    has "progress kernels phase" out.txt "building tiny_cnn.onnx: kernels 1/"
    has "progress estimate" out.txt "s left"
    has "progress phases" out.txt "  build  "
    checks=$((checks + 1))
    grep -q "optimize 1/1 layers" out.txt && fail "progress: a phase that counts no layers shows a count"
    [ -s tty.plan ] || fail "build on a terminal: tty.plan missing"
fi
ok "build timing cache" "$K" build "$CNN" -o tc.plan --timing-cache cache.bin &&
    has "timing cache warning" err.txt "--timing-cache cache.bin has no effect on the CPU"
checks=$((checks + 1))
[ -e cache.bin ] && fail "--timing-cache created a file on the CPU"
ok "build layer precision fp16" "$K" build "$CNN" -o lp.plan --layer-precision conv1:fp16 &&
    has "layer precision warning" err.txt "--layer-precision conv1:float16 is accepted but has no effect"
ok "build layer precision fp32 on cpu" "$K" build "$CNN" -o lp32.plan --layer-precision conv1:fp32
checks=$((checks + 1))
[ -s err.txt ] && fail "--layer-precision conv1:fp32 on the CPU warned: $(cat err.txt)"
err "layer precision unknown layer" 2 "no layer (node) named 'nosuch'" "$K" build "$CNN" -o x.plan --layer-precision nosuch:fp32
err "layer precision bad syntax" 2 "--layer-precision: 'conv1:fp99'" "$K" build "$CNN" --layer-precision conv1:fp99
ok "build fp16 on cpu" "$K" build "$CNN" -o f16.plan --fp16 --workspace 64 --threads 1 &&
    has "fp16 on cpu warning" err.txt "--fp16 has no effect on the CPU"
err "workspace too small" 1 "tiny_cnn.onnx: build failed" "$K" build "$CNN" -o ws.plan --workspace 0.001
checks=$((checks + 1))
[ -e ws.plan ] && fail "a failed build left ws.plan"
ok "build batch" "$K" build "$MLP" -o mlp4.plan --batch 4 && has "build batch" out.txt "input      x float32 4x6"
ok "build shapes" "$K" build "$MLP" -o mlp2.plan --shapes x:2x6,s:2x4 && has "build shapes" out.txt "s float32 2x4"
ok "build symbolic default" "$K" build "$MLP" -o mlp1.plan && has "symbolic batch warning" err.txt "using batch 1"
err "batch on a fixed model" 1 "needs a symbolic first dimension" "$K" build "$CNN" -o b.plan --batch 4
err "shapes for an unknown input" 2 "the model has no input 'nope'" "$K" build "$CNN" --shapes nope:1x2
err "shapes that do not fit" 1 "the model's input is 1x3x16x16" "$K" build "$CNN" --shapes input:1x3x8x8
err "build a plan" 2 "build takes an ONNX model" "$K" build t.plan -o t2.plan
checks=$((checks + 1))
[ -e t2.plan ] && fail "building a plan wrote t2.plan"
mkdir -p adir
err "output is a directory" 1 "is a directory" "$K" build "$CNN" -o adir
err "output in a missing directory" 1 "missing/dir/t.plan" "$K" build "$CNN" -o missing/dir/t.plan
no_leftovers "build failures"

# CUDA: the library's own error on a machine (or build) without one
run "$K" build "$CNN" -o cuda.plan --device cuda
checks=$((checks + 1))
if [ $rc -eq 0 ]; then
    echo "note: CUDA is available here: checked that the CUDA build works instead"
    [ -s cuda.plan ] || fail "build --device cuda: no plan"
    ok "run cuda plan" "$K" run cuda.plan --input input="$X" -q
    ok "bench cuda without graphs" "$K" bench cuda.plan --iterations 5 --no-cuda-graph -q
    ok "cuda timing cache cold" "$K" build "$CNN" -o tc1.plan --device cuda --fp16 --timing-cache cuda.cache -v &&
        has "cuda timing cache cold" err.txt "reused from the timing cache"
    ok "cuda timing cache warm" "$K" build "$CNN" -o tc2.plan --device cuda --fp16 --timing-cache cuda.cache -v &&
        has "cuda timing cache warm" err.txt " timed" && ! grep -q "kernel choices: 0 of" err.txt
    checks=$((checks + 1))
    [ -s cuda.cache ] || fail "--timing-cache on cuda wrote no file"
    ok "compare cuda" "$K" compare "$CNN" --device cuda --input input="$X" --atol 1e-3 --rtol 1e-3 -q
else
    err "cuda without a gpu" 1 "CUDA" "$K" build "$CNN" -o cuda.plan --device cuda
    [ -e cuda.plan ] && fail "a failed CUDA build left cuda.plan"
    err "run cuda without a gpu" 1 "CUDA" "$K" run "$CNN" --device cuda --input input="$X"
    err "compare cuda without a gpu" 1 "CUDA" "$K" compare "$CNN" --device cuda --random-inputs
    err "plan for another device" 1 "needs a rebuild from the ONNX model" "$K" run t.plan --device cuda --random-inputs
    # a CUDA plan (the CPU plan with its device field changed and the checksum redone):
    # running it fails with the library's message; inspect shows what the file holds
    if /usr/bin/python3 -c "
import struct, zlib
d = bytearray(open('t.plan', 'rb').read())
nsec, table = struct.unpack_from('<I', d, 36)[0], struct.unpack_from('<Q', d, 40)[0]
for i in range(nsec):
    sid, _, off, ln = struct.unpack_from('<IIQQ', d, table + 24 * i)
    if sid == 5:
        struct.pack_into('<I', d, off, 1)
struct.pack_into('<I', d, 32, 0)
struct.pack_into('<I', d, 32, zlib.crc32(bytes(d)) & 0xffffffff)
open('cudaplan.plan', 'wb').write(d)
" 2>/dev/null; then
        err "run a cuda plan without a gpu" 1 "cudaplan.plan: CUDA" "$K" run cudaplan.plan --random-inputs
        ok "inspect a cuda plan without a gpu" "$K" inspect cudaplan.plan &&
            has "inspect cuda plan" out.txt "device       cuda" && has "inspect cuda plan format" out.txt "format 5" &&
            has "inspect cuda plan warning" err.txt "cannot be loaded here"
        ok "inspect a cuda plan json" "$K" inspect cudaplan.plan --json - -q &&
            has "inspect cuda plan json" out.txt '"loadable": false'
    fi
fi
no_leftovers "cuda"

# ---------------------------------------------------------------- inspect
ok "inspect plan" "$K" inspect t.plan &&
    has "inspect plan" out.txt "format 5" &&
    has "inspect plan fingerprint" out.txt "fingerprint  device=cpu;" &&
    has "inspect plan layers" out.txt "conv1" &&
    has "inspect plan kernel" out.txt "cpu.conv_" &&
    has "inspect plan precision" out.txt "float32" &&
    has "inspect plan memory" out.txt "activations"
ok "inspect plan json" "$K" inspect t.plan --json - -q && has "inspect plan json" out.txt '"kind": "plan"' &&
    has "inspect plan json" out.txt '"output_bytes": 8192'
ok "inspect model" "$K" inspect "$CNN" &&
    has "inspect opset" out.txt "opsets       ai.onnx 13" &&
    has "inspect op counts" out.txt "2  Conv" &&
    has "inspect input" out.txt "input        input float32 1x3x16x16" &&
    has "inspect import" out.txt "kiln import: ok"
ok "inspect symbolic" "$K" inspect "$MLP" && has "inspect symbolic" out.txt "x float32 batchx6"
ok "inspect unsupported" "$K" inspect "$D/unsupported.onnx" &&
    has "inspect unsupported" out.txt "2 unsupported" &&
    has "inspect unsupported op" out.txt "op 'TotallyUnknownOp' is not supported" &&
    has "inspect unsupported domain" out.txt "domain 'com.example' is not supported"
ok "inspect json" "$K" inspect "$D/unsupported.onnx" --json insp.json -q && has "inspect json" insp.json '"importable": false' &&
    has "inspect json op counts" insp.json '"op": "TotallyUnknownOp"'
ok "inspect symbolic json" "$K" inspect "$MLP" --json - -q && has "inspect symbolic json" out.txt '"batch"'
# messages nested thousands deep would exhaust the stack of a recursive decoder: refused
/usr/bin/python3 -c "
def ld(field, payload):
    n, v = len(payload), b''
    while True:
        v += bytes([(n & 0x7f) | (0x80 if n > 0x7f else 0)])
        n >>= 7
        if not n: break
    return bytes([field << 3 | 2]) + v + payload
g = b''
for i in range(3000):
    g = ld(1, ld(5, ld(6, g)))  # graph.node -> node.attribute -> attribute.g
open('deep.onnx', 'wb').write(b'\x08\x07' + ld(7, g))
"
err "inspect deeply nested model" 1 "deep.onnx: not a valid ONNX model: messages nested more than" "$K" inspect deep.onnx
err "run deeply nested model" 1 "deep.onnx: not a valid ONNX model: messages nested more than" "$K" run deep.onnx --random-inputs

# ---------------------------------------------------------------- run
ok "run plan" "$K" run t.plan --input input="$X" --output-dir out1 &&
    has "run summary" out.txt "output out/logits: float32 1x10  min"
checks=$((checks + 1))
[ -s out1/out_logits.npy ] || fail "run: out1/out_logits.npy (sanitised from 'out/logits') missing"
ok "run output vs numpy" "$K" compare "$CNN" --input input="$X" --reference "$D/tiny_cnn_expected" -q
ok "run npy round trip" "$K" compare "$CNN" --input input="$X" --reference out1 --atol 0 --rtol 0 -q
ok "run onnx with .pb" "$K" run "$CNN" --input input="$D/tiny_cnn_input.pb" -o out2 -q
ok "run .pb output vs numpy" "$K" compare t.plan --input input="$X" --reference out2 --atol 0 --rtol 0 -q
ok "run top5" "$K" run t.plan --input input="$X" --top5 &&
    has "run top5" out.txt "top 5 of 'out/logits' (softmax of the logits)"
checks=$((checks + 1))
[ "$(grep -cE '^ +[0-9]+  0\.[0-9]{4}$' out.txt)" -eq 5 ] || fail "run --top5: not five class lines"
printf 'zero\none\ntwo\nthree\nfour\nfive\nsix\nseven\neight\nnine\n' > labels.txt
ok "run top5 labels" "$K" run t.plan --input input="$X" --top5 --labels labels.txt && has "run labels" out.txt "seven"
ok "run json" "$K" run t.plan --input input="$X" --json - -q && has "run json" out.txt '"shape": ['
ok "run quiet" "$K" run t.plan --input input="$X" -q
checks=$((checks + 1))
[ -s out.txt ] && fail "run -q wrote to stdout"
ok "run mlp" "$K" run "$MLP" --input x="$D/mlp_x.npy" --input s="$D/mlp_s.npy" -o out3 && has "run mlp" out.txt "y: float32 3x4"
ok "run mlp vs numpy" "$K" compare "$MLP" --input x="$D/mlp_x.npy" --input s="$D/mlp_s.npy" --reference out3 --atol 0 --rtol 0 -q
ok "mlp vs numpy" "$K" compare "$MLP" --input x="$D/mlp_x_f64.npy" --input s="$D/mlp_s.npy" --reference "$D/mlp_expected" -q
ok "run random inputs" "$K" run "$MLP" --input x="$D/mlp_x.npy" --random-inputs &&
    has "random inputs noted" out.txt "input  s: random data" &&
    has "symbolic dims shared by name" out.txt "y: float32 3x4"
ok "random inputs are seeded" "$K" run "$MLP" --random-inputs --shapes x:2x6,s:2x4 -o r1 -q
ok "random inputs are seeded" "$K" run "$MLP" --random-inputs --shapes x:2x6,s:2x4 -o r2 -q
checks=$((checks + 1))
cmp -s r1/y.npy r2/y.npy || fail "--random-inputs: two runs with the same seed differ"
ok "run batch" "$K" run "$MLP" --batch 5 --random-inputs && has "run batch" out.txt "y: float32 5x4"

# images: exact for PNG (same size, and bilinear 32x32 -> 16x16), close for JPEG
ok "png unit" "$K" run "$CNN" --input input="$D/img16.png" --preprocess unit -o img1 -q
ok "png unit vs numpy" "$K" compare "$CNN" --input input="$D/img16_unit.npy" --reference img1 -q
ok "png resized" "$K" run "$CNN" --input input="$D/img32.png" --preprocess unit -o img2 -q
ok "png resized vs numpy" "$K" compare "$CNN" --input input="$D/img32_unit_16.npy" --reference img2 -q
ok "jpeg" "$K" run "$CNN" --input input="$D/img32.jpg" --preprocess unit -o img3 -q
ok "jpeg vs numpy" "$K" compare "$CNN" --input input="$D/img32_unit_16.npy" --reference img3 --atol 0.05 --rtol 0.05 -q
ok "png imagenet" "$K" run t.plan --input input="$D/img16.png" -o img4 -q
ok "png imagenet vs numpy" "$K" compare "$CNN" --input input="$D/img16_imagenet.npy" --reference img4 -q

# bad inputs for run
err "missing model" 1 "nonexist.onnx: cannot read: No such file or directory" "$K" run nonexist.onnx --random-inputs
err "model is a directory" 1 "is a directory" "$K" run "$D" --random-inputs
echo "this is not a model" > notonnx.onnx
err "not onnx" 1 "notonnx.onnx: not an ONNX model" "$K" run notonnx.onnx --random-inputs
: > empty.onnx
err "empty model" 1 "empty.onnx: the file is empty" "$K" run empty.onnx --random-inputs
size=$(stat -c %s "$CNN")
for n in 10 100 1000 3000 $((size - 1)); do
    head -c $n "$CNN" > trunc$n.onnx
    err "truncated model ($n bytes)" 1 "trunc$n.onnx" "$K" run trunc$n.onnx --random-inputs
done
if [ "$(id -u)" -ne 0 ]; then
    cp "$CNN" locked.onnx
    chmod 000 locked.onnx
    err "unreadable model" 1 "locked.onnx: cannot read: Permission denied" "$K" run locked.onnx --random-inputs
    chmod 600 locked.onnx
fi
err "unknown input (onnx)" 2 "no input 'nope'" "$K" run "$CNN" --input nope="$X"
err "unknown input (plan)" 2 "no input 'nope'" "$K" run t.plan --input nope="$X"
err "input given twice" 2 "'input' is given twice" "$K" run t.plan --input input="$X" --input input="$X"
err "missing input data" 2 "no data for input 's'" "$K" run "$MLP" --input x="$D/mlp_x.npy"
err "missing input file" 1 "missing.npy" "$K" run t.plan --input input=missing.npy
err "shape mismatch (onnx)" 1 "input 'input'" "$K" run "$CNN" --input input="$D/mlp_x.npy"
err "shape mismatch (plan)" 1 "input 'input': $D/mlp_x.npy holds 3x6, the engine expects 1x3x16x16" "$K" run t.plan --input input="$D/mlp_x.npy"
err "shapes disagree with batch" 2 "disagrees with --batch 2" "$K" run "$MLP" --input x="$D/mlp_x.npy" --batch 2 --random-inputs
head -c 100 "$X" > trunc.npy
err "truncated npy" 1 "trunc.npy: truncated" "$K" run t.plan --input input=trunc.npy
echo "junk" > junk.npy
err "not npy" 1 "junk.npy: not a .npy file" "$K" run t.plan --input input=junk.npy
echo "junk" > junk.pb
err "bad pb" 1 "junk.pb" "$K" run t.plan --input input=junk.pb
echo "not an image" > fake.png
err "not an image" 1 "fake.png: not a PNG or JPEG image" "$K" run t.plan --input input=fake.png
head -c 60 "$D/img32.jpg" > trunc.jpg
err "truncated jpeg" 1 "trunc.jpg" "$K" run t.plan --input input=trunc.jpg
err "image into a 2-D input" 1 "input 'x'" "$K" run "$MLP" --input x="$D/img16.png" --random-inputs
cp t.plan new.plan
printf '\x06' | dd of=new.plan bs=1 seek=8 conv=notrunc 2>/dev/null
err "plan from a newer format" 1 "new.plan: plan: format version 6" "$K" run new.plan --random-inputs
cp t.plan corrupt.plan
printf '\xAA' | dd of=corrupt.plan bs=1 seek=3000 conv=notrunc 2>/dev/null
err "corrupt plan" 1 "corrupt.plan" "$K" run corrupt.plan --random-inputs
head -c 1000 t.plan > trunc.plan
err "truncated plan" 1 "trunc.plan" "$K" run trunc.plan --random-inputs
err "plan batch mismatch" 1 "--batch 2 needs a rebuild" "$K" run t.plan --batch 2 --random-inputs
echo "a file" > notadir
err "output dir is a file" 1 "notadir" "$K" run t.plan --input input="$X" --output-dir notadir
no_leftovers "run failures"

# ---------------------------------------------------------------- compare
ok "compare cpu" "$K" compare "$CNN" --input input="$X" && has "compare metrics" out.txt "rel L2" && has "compare cosine" out.txt "cosine"
err "compare beyond tolerance" 1 "1 of 1 outputs beyond tolerance" "$K" compare "$CNN" --input input="$X" --reference "$D/tiny_cnn_wrong"
has "compare failure table" out.txt "FAIL"
ok "compare within loose tolerance" "$K" compare "$CNN" --input input="$X" --reference "$D/tiny_cnn_wrong" --atol 2e-3 -q
ok "compare all layers vs cpu" "$K" compare "$CNN" --input input="$X" --all-layers && has "all layers" out.txt "9 tensors compared, 0 beyond tolerance"
err "compare all layers names the layer" 1 "the first is layer 'pool1' (tensor 'p1')" "$K" compare "$CNN" --input input="$X" --all-layers --reference "$D/tiny_cnn_layers"
ok "compare all layers json" "$K" compare "$CNN" --input input="$X" --all-layers --reference "$D/tiny_cnn_layers" --atol 0.02 --json cmp.json -q &&
    has "compare json" cmp.json '"first_failing_layer": null' && has "compare json" cmp.json '"name": "p1"'
ok "compare onnx test data dir" "$K" compare "$MLP" --reference "$D/onnxtest/test_mlp_pass/test_data_set_0" -q
ok "compare plan vs dir" "$K" compare t.plan --input input="$X" --reference "$D/tiny_cnn_expected" -q
err "compare plan vs cpu" 2 "needs the ONNX model" "$K" compare t.plan --input input="$X"
err "compare bad reference" 2 "--reference: 'nowhere'" "$K" compare "$CNN" --input input="$X" --reference nowhere
mkdir -p emptyref
err "compare reference lacks an output" 1 "has no reference in emptyref" "$K" compare "$CNN" --input input="$X" --reference emptyref
err "compare needs inputs" 2 "no data for input 'input'" "$K" compare "$CNN"
ok "compare random inputs" "$K" compare "$MLP" --random-inputs --batch 3 -q

# ---------------------------------------------------------------- bench
ok "bench" "$K" bench t.plan --iterations 5 --warmup 1 --json bench.json &&
    has "bench latency" out.txt "median" && has "bench p99" out.txt "p99" &&
    has "bench throughput" out.txt "inferences/s" && has "bench split" out.txt "upload 0" &&
    has "bench enqueue" out.txt "enqueue" && has "bench memory" out.txt "weights" &&
    has "bench json" bench.json '"p90"' && has "bench json runs" bench.json '"runs": 5'
ok "bench profile" "$K" bench t.plan --iterations 3 --profile &&
    has "bench profile" out.txt "per-layer profile" && has "bench profile kernel" out.txt "cpu.conv_" &&
    has "bench profile share" out.txt "%"
ok "bench streams" "$K" bench "$CNN" --iterations 4 --streams 3 --threads 1 --json - -q &&
    has "bench streams" out.txt '"streams": 3' && has "bench streams runs" out.txt '"runs": 12'
ok "bench duration" "$K" bench t.plan --duration 0.2 && has "bench duration" out.txt "timed runs"
ok "bench batch" "$K" bench "$MLP" --batch 4 --iterations 3 && has "bench batch" out.txt "batch 4"
ok "bench no cuda graph" "$K" bench t.plan --iterations 2 --no-cuda-graph && has "no cuda graph" err.txt "--no-cuda-graph has no effect: this engine runs on the CPU"
ok "bench real input" "$K" bench t.plan --iterations 2 --input input="$D/img16.png" -q
err "bench missing model" 1 "nope.plan" "$K" bench nope.plan

# ---------------------------------------------------------------- onnx-test
err "onnx-test counts" 1 "1 of 4 tests failed" "$K" onnx-test "$D/onnxtest"
has "onnx-test summary" out.txt "2 passed, 1 failed, 1 skipped"
has "onnx-test failure reason" out.txt "FAIL test_tiny_cnn_fail: test_data_set_0: output 'out/logits'"
has "onnx-test skip reason" out.txt "SKIP test_unsupported_skip"
ok "onnx-test one dir" "$K" onnx-test "$D/onnxtest/test_tiny_cnn_pass" && has "onnx-test one" out.txt "1 passed, 0 failed, 0 skipped"
ok "onnx-test filter json" "$K" onnx-test "$D/onnxtest" --filter mlp --json ot.json && has "onnx-test json" ot.json '"result": "pass"'
err "onnx-test not a dir" 1 "nowhere: not a directory" "$K" onnx-test nowhere
err "onnx-test no tests" 1 "no test directories" "$K" onnx-test "$D/tiny_cnn_expected"
if [ -d /usr/share/libonnx-testdata/data/node/test_relu ]; then
    ok "onnx-test system data" "$K" onnx-test /usr/share/libonnx-testdata/data/node --filter test_relu && has "system data" out.txt "1 passed"
fi
# a window size fed as a model input reaches a shape computation through other nodes: the
# importer names that input (kiln_onnx_error_value) and the runner freezes it
if [ -d /usr/share/libonnx-testdata/data/node/test_hannwindow_expanded ]; then
    ok "onnx-test freezes a derived input" "$K" onnx-test /usr/share/libonnx-testdata/data/node/test_hannwindow_expanded -v &&
        has "frozen derived input" out.txt "PASS test_hannwindow_expanded: frozen inputs: x" &&
        has "frozen derived input count" out.txt "1 passed"
fi

no_leftovers "everything"
echo "$checks checks, $failures failures"
[ $failures -eq 0 ]
