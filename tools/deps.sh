#!/usr/bin/env bash
# Installs the Debian packages kelp builds against, when they are missing, and says so.
# Usage: tools/deps.sh [extra-package...]
set -euo pipefail

packages=(build-essential cmake pkg-config python3 libopenblas-dev libcjson-dev libhdf5-dev libcmocka-dev libpng-dev
          libjpeg-dev zlib1g-dev libonnx-dev protobuf-c-compiler libprotobuf-c-dev "$@")
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "kelp: installing missing packages: ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "kelp: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "kelp: installed ${missing[*]}"
