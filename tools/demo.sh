#!/usr/bin/env bash
# The demo: builds kelp, shows the machine and a model, and measures a real ResNet-18 training step on the CPU.
# (The Fashion-MNIST classification demo replaces this once `kelp train` lands.)
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" --target kelp bench_cpu_resnet
echo
echo "== kelp info"
build/kelp info
echo
echo "== kelp model summary resnet18 (last lines)"
build/kelp model summary resnet18 --batch 8 | tail -n 4
echo
echo "== ResNet-18 at 224x224, batch 8, on the CPU: inference and a training step (forward + backward)"
build/bench_cpu_resnet --model resnet18 --batch 8 --size 224 --warmup 1 --iters 3
