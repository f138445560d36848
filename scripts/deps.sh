#!/usr/bin/env bash
# Installs the Debian packages kiln needs, only those missing. Needs root (or sudo)
# when something is missing; does nothing otherwise.
set -euo pipefail
pkgs=(cmake make gcc pkg-config zlib1g-dev libpng-dev libjpeg62-turbo-dev libopenblas-dev libprotobuf-c-dev protobuf-c-compiler libonnx-dev
      libonnx-testdata)
[ "${KILN_DEPS_PYTHON:-0}" = 1 ] && pkgs+=(python3-torch python3-torchvision python3-onnx python3-numpy python3-pil
      dataset-fashion-mnist)
[ "${KILN_DEPS_DEMO:-0}" = 1 ] && pkgs+=(dataset-fashion-mnist)
[ "${KILN_DEPS_FUZZ:-0}" = 1 ] && pkgs+=(clang libclang-rt-14-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
