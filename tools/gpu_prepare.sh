#!/usr/bin/env bash
# Prepares .gpu/kelp-gpu.tar.xz: what bench/gpu_check.sh needs on a GPU machine that has CUDA, cuDNN, cuBLAS and
# PyTorch but no network and none of kelp's Debian libraries. It holds
#   bin/   kelp and test_cuda_ops, built here with the CUDA backend for sm_80 and sm_90 (+ PTX)
#   lib/   the Debian libraries they link (OpenBLAS, HDF5, libpng, libjpeg, cJSON, protobuf-c, cmocka and theirs),
#          except glibc's, the C++ runtime's and CUDA's: the GPU machine's own and its PyTorch wheels' are used
#   data/  Fashion-MNIST's IDX files (Debian's dataset-fashion-mnist), for the GPU training run
# Usage: tools/gpu_prepare.sh      then copy .gpu to the GPU machine with the repository and run bench/gpu_check.sh there.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh dataset-fashion-mnist xz-utils
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DKELP_CUDA=ON -DKELP_BUILD_TESTS=ON >/dev/null
cmake --build build-gpu -j "$(nproc)" --target kelp test_cuda_ops >/dev/null
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib" "$stage/data" .gpu
cp build-gpu/kelp build-gpu/test_cuda_ops "$stage/bin/"
for bin in "$stage"/bin/*; do ldd "$bin"; done | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u |
  while read -r lib; do
    case $(basename "$lib") in
      libc.so* | libm.so* | libpthread.so* | libdl.so* | librt.so* | ld-linux* | libstdc++.so* | libgcc_s.so* | \
        libcuda.so* | libcudart.so* | libcublas* | libcudnn*) ;;
      *) cp -L "$lib" "$stage/lib/" ;;
    esac
  done
cp /usr/share/datasets/fashion-mnist/*.gz "$stage/data/"
tar -C "$stage" -cf - . | xz -T0 -6 >.gpu/kelp-gpu.tar.xz
echo ".gpu/kelp-gpu.tar.xz: $(du -h .gpu/kelp-gpu.tar.xz | cut -f1) ($(ls "$stage/lib" | wc -l) libraries)"
