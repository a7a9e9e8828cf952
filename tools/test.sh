#!/usr/bin/env bash
# Builds kelp and runs the whole test suite (ctest + cmocka).
#   tools/test.sh              Release build in build/
#   KELP_SANITIZE=1 tools/test.sh   AddressSanitizer + UndefinedBehaviorSanitizer build in build-asan/
set -euo pipefail
cd "$(dirname "$0")/.."
# dataset-fashion-mnist: real data for the end-to-end training test
# python3-pil: tests/cli/test_new_user.sh draws its folder of PNG and JPEG images of many sizes with PIL
# python3-venv, curl: tools/pyenv.sh's environment for the bundle (DEEPaaS) and ONNX (onnxruntime) tests
tools/deps.sh dataset-fashion-mnist python3-pil python3-venv curl
tools/pyenv.sh >/dev/null || echo "kelp: could not prepare .venv-test from PyPI; the bundle and ONNX tests will be skipped"

jobs=$(nproc)
if [ "${KELP_SANITIZE:-0}" = 1 ]; then
  dir=build-asan
  # -O1 keeps the sanitized suite fast enough for CI without hiding what the sanitizers see.
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS_DEBUG="-O1 -g" -DKELP_SANITIZE=ON \
    -DKELP_CUDA="${KELP_CUDA:-AUTO}" >/dev/null
  export ASAN_OPTIONS=abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  # the end-to-end training test trains on less data here; the Release run asserts its accuracy
  export KELP_TEST_QUICK=1
else
  dir=build
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DKELP_CUDA="${KELP_CUDA:-AUTO}" >/dev/null
fi
cmake --build "$dir" -j "$jobs"
cd "$dir"
ctest --output-on-failure -j "$jobs"
