#!/usr/bin/env bash
# Everything issue 4 asks a GPU to show, with no network: run on the GPU machine from the repository root, with
# .gpu/kelp-gpu.tar.xz prepared by tools/gpu_prepare.sh carried along. Stages, each named on the command line
# (default: ops train bench; a lent machine gives 15 minutes in all and 10 per command, so split them over calls):
#   ops        the GPU, driver and library versions (kelp info); test_cuda_ops: every backend op on the GPU
#              against the CPU backend (poisoned outputs, NaN never passes), cuDNN batch norm, TF32 and autotuned
#              convolutions, input preparation, replayed graphs
#   sanitizer  test_cuda_ops under compute-sanitizer memcheck (minutes: cuDNN's searches run instrumented)
#   train      the Fashion-MNIST demo recipe trained on the GPU (small_resnet; 5 epochs, 1 with --quick), evaluated
#   bench      each model of $GPU_MODELS (default resnet50) at 224x224: kelp training and inference images/s,
#              strict fp32, TF32 (--tf32 --autotune --nondeterministic) and bf16 mixed precision (--precision bf16
#              with the same flags), inference with and without CUDA graphs,
#              against PyTorch eager (channels_last; strict fp32, TF32 and bf16 autocast) in the same run, and
#              torch.compile too with GPU_COMPILE=1 (its compilation takes minutes)
# Output: the log on stdout and in $OUT/gpu_check.log (or ./gpu_check.log); every benchmark run's JSON, keyed by
# run, in $OUT/gpu_bench.json (one file: the device tool returns at most eight); the table with the card's name as
# a dated markdown section in $OUT/gpu_benchmarks.md and in docs/benchmarks.md (bench/gpu_table.py).
# Usage: bench/gpu_check.sh [--quick] [ops] [sanitizer] [train] [bench]
set -uo pipefail
quick=0
stages=()
for arg in "$@"; do
  case $arg in
    --quick) quick=1 ;;
    ops | sanitizer | train | bench) stages+=("$arg") ;;
    *) echo "gpu_check: unknown stage '$arg' (ops, sanitizer, train, bench)"; exit 2 ;;
  esac
done
[ ${#stages[@]} = 0 ] && stages=(ops train bench)
wants() { [[ " ${stages[*]} " == *" $1 "* ]]; }
out=${OUT:-.}
mkdir -p "$out"
exec > >(tee "$out/gpu_check.log") 2>&1
dir=${KELP_GPU_DIR:-/tmp/kelp-gpu}
rm -rf "$dir" && mkdir -p "$dir/bench" && xz -dc .gpu/kelp-gpu.tar.xz | tar -C "$dir" -xf - || {
  echo "gpu_check: cannot unpack .gpu/kelp-gpu.tar.xz (run tools/gpu_prepare.sh and copy .gpu along)"
  exit 1
}
# cuDNN, cuBLAS and the CUDA runtime from the machine's PyTorch wheels (site-packages/nvidia/*/lib)
nvlibs=$(python3 -c 'import glob, site; print(":".join(sorted(set(p for s in site.getsitepackages() for p in glob.glob(s + "/nvidia/*/lib")))))')
export LD_LIBRARY_PATH="$dir/lib:$nvlibs:${LD_LIBRARY_PATH:-}"
kelp=$dir/bin/kelp
failed=0
step() { echo; echo "== $* ($(date +%T))"; }
must() { "$@" || { echo "FAILED: $*"; failed=$((failed + 1)); }; }

step "machine"
card=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1)
echo "$card"

if wants ops; then
  step "ops: kelp info, every op on the GPU against the CPU backend"
  must "$kelp" info
  must "$dir/bin/test_cuda_ops"
fi

if wants sanitizer; then
  step "sanitizer: test_cuda_ops under compute-sanitizer memcheck"
  if command -v compute-sanitizer >/dev/null; then
    must compute-sanitizer --tool memcheck --error-exitcode 1 --print-limit 20 "$dir/bin/test_cuda_ops"
  else
    echo "compute-sanitizer not found: skipped"
  fi
fi

if wants train; then
step "train: the Fashion-MNIST demo recipe on the GPU"
epochs=5
[ "$quick" = 1 ] && epochs=1
d=$dir/data
must "$kelp" data import --format idx "$d/train-images-idx3-ubyte.gz" "$d/train-labels-idx1-ubyte.gz" \
  "$d/t10k-images-idx3-ubyte.gz" "$d/t10k-labels-idx1-ubyte.gz" -o "$dir/fm.h5" --val-split 0.1 --seed 1 \
  --class-names fashion-mnist
start=$SECONDS
must "$kelp" train --data "$dir/fm.h5" --model small_resnet --out "$dir/run" --epochs "$epochs" --batch 128 --lr 0.1 \
  --schedule warmup:100+cosine --label-smoothing 0.1 --log-every 100 --device cuda --loader-threads 8
echo "training: $((SECONDS - start)) s"
must "$kelp" eval --checkpoint "$dir/run/best.ckpt" --data "$dir/fm.h5" --split test --device cuda
step "train: one epoch of the same recipe in bf16 mixed precision"
must "$kelp" train --data "$dir/fm.h5" --model small_resnet --out "$dir/run-bf16" --epochs 1 --batch 128 --lr 0.1 \
  --schedule warmup:100+cosine --label-smoothing 0.1 --log-every 100 --device cuda --loader-threads 8 --precision bf16
fi

if wants bench; then
  for model in ${GPU_MODELS:-resnet50}; do
    step "bench: $model 224x224, kelp against PyTorch, same run"
    "$kelp" model show "$model" >"$dir/$model.json"
    for batch in 256 1; do
      for numerics in fp32 tf32 bf16 fp32_nographs; do
        flags=()
        [ "$numerics" = tf32 ] && flags=(--tf32 --autotune --nondeterministic)
        [ "$numerics" = bf16 ] && flags=(--precision bf16 --tf32 --autotune --nondeterministic)
        [ "$numerics" = fp32_nographs ] && flags=(--no-cuda-graphs)
        must "$kelp" bench "$model" --device cuda --batch "$batch" --mode $([ $batch = 1 ] && echo infer || echo all) \
          "${flags[@]}" --json >"$dir/bench/kelp_${model}_${numerics}_b$batch.json"
      done
    done
    compile_runs=("")
    [ "${GPU_COMPILE:-0}" = 1 ] && compile_runs+=(--compile)
    for amp in none tf32 bf16; do
      for extra in "${compile_runs[@]}"; do
        name=torch_${model}_${amp}${extra:+_compile}
        for mode in train infer; do
          PYTHONUNBUFFERED=1 timeout 300 python3 bench/torch_bench.py "$dir/$model.json" --torchvision "$model" \
            --device cuda --batch 256 --mode $mode --amp $amp $extra --warmup 5 --iters 20 \
            >"$dir/bench/${name}_$mode.json" || echo "FAILED: PyTorch $name $mode"
        done
      done
    done
  done
  # the table, printed, as markdown in $OUT/gpu_benchmarks.md, and into docs/benchmarks.md (this copy's; the
  # device returns $OUT, whose section goes into the repository's docs/benchmarks.md the same way)
  must python3 bench/gpu_table.py "$dir/bench" "$out" --card "$card" --docs docs/benchmarks.md
fi
echo
echo "gpu_check: $failed step(s) failed"
[ "$failed" = 0 ]
