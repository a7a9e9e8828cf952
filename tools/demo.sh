#!/usr/bin/env bash
# The demo: Fashion-MNIST (Debian's dataset-fashion-mnist: 60,000 training and 10,000 test images, 10 classes),
# end to end on the CPU with the `kelp` command:
#   import the IDX files into one HDF5 file, train the small ResNet, evaluate it on the 10,000 test images,
#   predict a few test images exported as PNG files, and write the HTML report of the run.
# Everything lands in demo/ (or $KELP_DEMO_DIR), replaced on each run. KELP_DEMO_EPOCHS overrides the epochs.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
tools/deps.sh dataset-fashion-mnist
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$(nproc)" --target kelp kelp_shared >/dev/null
kelp=build/kelp
src=/usr/share/datasets/fashion-mnist
out=${KELP_DEMO_DIR:-demo}
epochs=${KELP_DEMO_EPOCHS:-5}
rm -rf "$out"
mkdir -p "$out"

stage() { printf '\n== %s\n' "$*"; stage_start=$SECONDS; }
took() { echo "   ($((SECONDS - stage_start)) s)"; }

stage "import: IDX files -> $out/fashion-mnist.h5 (10% of the training images held out for validation)"
$kelp data import --format idx "$src/train-images-idx3-ubyte.gz" "$src/train-labels-idx1-ubyte.gz" \
  "$src/t10k-images-idx3-ubyte.gz" "$src/t10k-labels-idx1-ubyte.gz" --class-names fashion-mnist \
  --val-split 0.1 --seed 1 --source "Debian package dataset-fashion-mnist" --license MIT -o "$out/fashion-mnist.h5"
$kelp data info "$out/fashion-mnist.h5" | sed -n '1,4p'
took

stage "train: small_resnet, $epochs epochs, SGD momentum 0.9, warmup + cosine learning rate, label smoothing, flips"
$kelp train --data "$out/fashion-mnist.h5" --model small_resnet --out "$out/run" --epochs "$epochs" --batch 128 \
  --lr 0.1 --schedule warmup:100+cosine --label-smoothing 0.1 --log-every 100
took

stage "eval: the 10,000 test images, best checkpoint (by validation accuracy)"
$kelp eval --checkpoint "$out/run/best.ckpt" --data "$out/fashion-mnist.h5" --split test | tee "$out/eval.txt"
$kelp eval --checkpoint "$out/run/best.ckpt" --data "$out/fashion-mnist.h5" --split test --json >"$out/eval.json"
took

stage "predict: 6 test images exported as PNG files (folder = true class)"
$kelp data export "$out/fashion-mnist.h5" --split test --count 6 -o "$out/samples" >/dev/null
$kelp predict --checkpoint "$out/run/best.ckpt" --top-k 3 "$out"/samples/*/*.png
took

stage "report: $out/run/report.html"
$kelp report "$out/run" --data "$out/fashion-mnist.h5" --split test
took

stage "export: a module bundle for the AI4OS / iMagine platform (DEEPaaS, ai4-metadata, ONNX) in $out/bundle"
$kelp export --checkpoint "$out/run/best.ckpt" --out "$out/bundle" --metrics "$out/eval.json" --onnx \
  --name fashion-mnist --title "Fashion-MNIST classifier (kelp demo)"
$kelp predict --bundle "$out/bundle" --top-k 1 "$out"/samples/*/*.png | paste - - | head -n 2
took

top1=$(sed -n 's/.*top-1 \([0-9.]*%\).*/\1/p' "$out/eval.txt" | head -n 1)
printf '\nFashion-MNIST test top-1 %s; the whole demo took %d s (%d min %d s).\n' "$top1" \
  $((SECONDS - start)) $(((SECONDS - start) / 60)) $(((SECONDS - start) % 60))
