#!/usr/bin/env bash
# Compares kelp's CPU backend with PyTorch on ResNet inference, training steps and the model's 3x3 convolutions,
# and prints a markdown table (it does not edit docs/benchmarks.md).
#
#   bench/run_cpu_benchmark.sh [--rounds 3] [--out DIR] [--model resnet18] [--batch 8] [--size 224]
#                              [--threads N] [--warmup 2] [--iters 10]
#
# PYTHON (default python3) runs bench/torch_resnet.py when it can import torch and torchvision; otherwise only kelp
# is measured. KELP_BUILD_DIR (default build-release) is configured as a Release build when it does not exist yet.
# Runs alternate (kelp, torch, kelp, torch...) so that machine noise hits both; the table shows, per measurement, the
# median over rounds of each run's median. --out keeps every run's JSON in DIR.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${KELP_BUILD_DIR:-$repo/build-release}
python=${PYTHON:-python3}
command_line=
for var in PYTHON KELP_BUILD_DIR; do
    if [[ -n ${!var:-} ]]; then
        command_line+="$var=$(printf '%q' "${!var}") "
    fi
done
command_line+="$(printf '%q' "$0")$(printf ' %q' "$@")"

rounds=3
out=
bench_args=()
threads=
while (($#)); do
    case $1 in
    --rounds | --out | --model | --batch | --size | --threads | --warmup | --iters)
        if (($# < 2)); then
            echo "run_cpu_benchmark: $1 needs a value" >&2
            exit 2
        fi
        case $1 in
        --rounds) rounds=$2 ;;
        --out) out=$2 ;;
        --threads) threads=$2 ;;
        *) bench_args+=("$1" "$2") ;;
        esac
        shift 2
        ;;
    -h | --help)
        sed -n '2,11s/^# \{0,1\}//p' "$0"
        exit 0
        ;;
    *)
        echo "run_cpu_benchmark: unknown argument '$1' (see --help)" >&2
        exit 2
        ;;
    esac
done
if ! [[ $rounds =~ ^[1-9][0-9]*$ ]]; then
    echo "run_cpu_benchmark: --rounds needs a positive integer, got '$rounds'" >&2
    exit 2
fi
# Both sides get the same explicit thread count: their "all cores" defaults need not agree.
cores=$(nproc)
bench_args+=(--threads "${threads:-$cores}")

if [[ -f $build/CMakeCache.txt ]]; then
    build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build/CMakeCache.txt")
    if [[ $build_type != Release ]]; then
        echo "run_cpu_benchmark: $build is a '$build_type' build; benchmarks need Release (set KELP_BUILD_DIR)" >&2
        exit 1
    fi
else
    echo "run_cpu_benchmark: configuring a Release build in $build" >&2
    cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release -DKELP_CUDA=OFF -DKELP_BUILD_TESTS=OFF >&2
fi
cmake --build "$build" --target bench_cpu_resnet -j "$cores" >&2
kelp_bench=$build/bench_cpu_resnet

if "$python" -c 'import torch, torchvision' 2>/dev/null; then
    have_torch=1
else
    have_torch=0
    echo "run_cpu_benchmark: '$python' cannot import torch and torchvision: measuring kelp only" \
        "(set PYTHON to a python with PyTorch, see docs/benchmarks.md)" >&2
fi

if [[ -n $out ]]; then
    mkdir -p "$out"
else
    out=$(mktemp -d)
    trap 'rm -rf "$out"' EXIT
fi

for ((round = 1; round <= rounds; round++)); do
    echo "run_cpu_benchmark: round $round/$rounds: kelp" >&2
    "$kelp_bench" "${bench_args[@]}" --json >"$out/kelp.$round.json"
    if ((have_torch)); then
        echo "run_cpu_benchmark: round $round/$rounds: PyTorch" >&2
        "$python" "$repo/bench/torch_resnet.py" "${bench_args[@]}" --json >"$out/torch.$round.json"
    fi
done

kelp_commit=$(git -C "$repo" describe --always --dirty 2>/dev/null || echo "unknown commit")
cpu_model=$(lscpu | sed -n 's/^Model name: *//p' | head -n 1)
export RESULTS_DIR=$out ROUNDS=$rounds COMMAND_LINE=$command_line KELP_COMMIT=$kelp_commit CPU_MODEL=$cpu_model \
    CORES=$cores KELP_COMMAND="$kelp_bench ${bench_args[*]} --json" \
    TORCH_COMMAND="$python bench/torch_resnet.py ${bench_args[*]} --json"
python3 - <<'EOF'
import glob
import json
import os
import statistics
from collections import Counter

env = os.environ


def load(framework):
    return [json.load(open(p)) for p in sorted(glob.glob(os.path.join(env["RESULTS_DIR"], framework + ".*.json")))]


def rows(runs):
    """(label, each run's timing, rate unit, work) per measurement in table order; rate = work / median ms."""
    first = runs[0]
    out = []
    for key, label in (("inference", "inference forward"), ("training", "training step (forward+backward)")):
        out.append((label, [r[key] for r in runs], "img/s", first["batch"] * 1e3))
    for i, s in enumerate(first["conv3x3"]):
        for part, label in (("forward", "forward"), ("backward_data", "backward-data"),
                            ("backward_filter", "backward-filter")):
            out.append((f"conv {s['name']} {label} (x{s['count']})", [r["conv3x3"][i][part] for r in runs],
                        "GFLOP/s", s["gflop"] * 1e3))
    for part, label in (("forward", "forward"), ("backward_data", "backward-data"),
                        ("backward_filter", "backward-filter")):
        out.append((f"3x3 total {label}", [dict(r["conv3x3_total"][part], median_ms=r["conv3x3_total"][part]["ms"])
                                           for r in runs], "GFLOP/s", first["conv3x3_total"]["gflop"] * 1e3))
    return out


def summarize(runs):
    return {label: (statistics.median(t["median_ms"] for t in ts), unit, work,
                    Counter(t.get("layout", "") for t in ts).most_common(1)[0][0])
            for label, ts, unit, work in rows(runs)}


kelp = load("kelp")
torch = load("torch")
k = summarize(kelp)
t = summarize(torch) if torch else None
if t:
    kelp_convs, torch_convs = ([(s["name"], s["count"]) for s in runs[0]["conv3x3"]] for runs in (kelp, torch))
    if kelp_convs != torch_convs:
        raise SystemExit(f"run_cpu_benchmark: kelp and PyTorch found different 3x3 convolutions (shape, count): "
                         f"{kelp_convs} vs {torch_convs}")

first = kelp[0]
print(f"### {first['model']}, batch {first['batch']}, {first['size']}x{first['size']}, {first['threads']} threads\n")
if t:
    print("| measurement | kelp ms | PyTorch ms | kelp/PyTorch speed | kelp rate | PyTorch rate |")
    print("|---|---:|---:|---:|---:|---:|")
else:
    print("| measurement | kelp ms | kelp rate |")
    print("|---|---:|---:|")
for label, (ms, unit, work, _) in k.items():
    kelp_cells = f"{ms:.2f}", f"{work / ms:.1f} {unit}"
    if t:
        tms, _, _, layout = t[label]
        layout_note = f" ({layout})" if layout else ""
        print(f"| {label} | {kelp_cells[0]} | {tms:.2f} | {tms / ms:.2f}x | {kelp_cells[1]} | "
              f"{work / tms:.1f} {unit}{layout_note} |")
    else:
        print(f"| {label} | {kelp_cells[0]} | {kelp_cells[1]} |")

method = (f"Times are the median over {env['ROUNDS']} rounds of each run's median over {first['iters']} iterations "
          f"after {first['warmup']} warmup iterations. Per convolution shape, (xN) is how often the model uses it; "
          f"the 3x3 totals weight each shape by that count.")
if t:
    method += (" Rounds alternate kelp and PyTorch. kelp/PyTorch speed = PyTorch time / kelp time (above 1: kelp is "
               "faster). PyTorch's time is the faster of contiguous NCHW and channels_last (the layout in "
               "parentheses); kelp is always NHWC.")
print(f"\n{method}\n")
print(f"- Machine: {env['CPU_MODEL']}, {env['CORES']} cores, {first['threads']} threads used")
versions = f"kelp {first['version']} ({env['KELP_COMMIT']}), {first['blas']}"
if t:
    versions += f"; PyTorch {torch[0]['version']} ({torch[0]['blas']})"
else:
    versions += "; PyTorch not measured (not importable)"
print(f"- Versions: {versions}")
print(f"- Command: `{env['COMMAND_LINE']}`")
print(f"  - kelp runs: `{env['KELP_COMMAND']}`")
if t:
    print(f"  - PyTorch runs: `{env['TORCH_COMMAND']}`")
EOF
