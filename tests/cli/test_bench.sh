#!/usr/bin/env bash
# kelp bench on small_resnet: the report's lines, the JSON keys with positive figures, a per-layer profile that lists
# every node of the model and adds up to the measured step, the modes, a model file, and clean failures.
# Usage: test_bench.sh PATH/TO/kelp
set -uo pipefail
kelp=$1
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
quick=(--batch 8 --iters 3 --warmup 1)

# the text report
check "text runs" run 0 bench small_resnet "${quick[@]}"
for line in "kelp bench small_resnet: input 28x28x1, batch 8, cpu" "training: " "inference: " "images/s" \
  "latency: " " ms p99 (batch 1" "memory (planned, MiB):" "  training  parameters" "optimizer state" \
  "  inference parameters" "peak RSS: "; do
  check "text has '$line'" contains "$tmp/out" "$line"
done
check "no profile without --layers" bash -c "! grep -q 'per-layer' '$tmp/out'"

# the JSON object: documented keys, positive numbers
check "json runs" run 0 bench small_resnet "${quick[@]}" --json --input 32x32
cp "$tmp/out" "$tmp/all.json"
check "json keys" python3 - "$tmp/all.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
assert j["model"] == "small_resnet" and j["device"] == "cpu" and j["mode"] == "all", j
assert j["batch"] == 8 and j["iters"] == 3 and j["warmup"] == 1 and j["threads"] >= 1, j
assert j["input"] == [32, 32, 1], j["input"]
figures = [j["training"]["step_ms"], j["training"]["images_per_s"], j["inference"]["forward_ms"],
           j["inference"]["images_per_s"], j["latency"]["median_ms"], j["latency"]["p99_ms"], j["memory"]["peak_rss"]]
figures += [j["memory"][g][k] for g in ("training", "inference") for k in ("params", "activations", "workspace", "total")]
figures += [j["memory"]["training"][k] for k in ("grads", "optimizer_state")]
assert all(isinstance(f, (int, float)) and f > 0 for f in figures), figures
assert j["latency"]["batch"] == 1 and j["latency"]["p99_ms"] >= j["latency"]["median_ms"], j["latency"]
t = j["training"]
assert abs(t["images_per_s"] - 8 / (t["step_ms"] / 1000)) < 1e-6 * t["images_per_s"], t
m = j["memory"]["training"]
assert m["optimizer_state"] == m["params"] == m["grads"], m  # SGD momentum: one buffer like the parameters
assert m["total"] == sum(m[k] for k in ("params", "grads", "optimizer_state", "buffers", "activations", "workspace"))
assert j["memory"]["inference"]["grads"] == 0 and "layers" not in j, j
assert j["tf32"] is False and j["deterministic"] is True and j["autotune"] is False and j["cuda_graphs"] is True, j
assert j["precision"] == "fp32", j
PY

# mixed precision: recorded in the report and the JSON, with the 16-bit activations' smaller plan
check "bf16 json" run 0 bench small_resnet "${quick[@]}" --json --input 32x32 --precision bf16
check "bf16 recorded, activations halved" python3 - "$tmp/out" "$tmp/all.json" <<'PY'
import json, sys
half, full = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert half["precision"] == "bf16", half
a, b = half["memory"]["training"]["activations"], full["memory"]["training"]["activations"]
assert a < 0.6 * b, (a, b)
PY
check "bf16 text" run 0 bench small_resnet "${quick[@]}" --mode infer --precision bf16
check "bf16 text line" contains "$tmp/out" "batch 8, cpu bf16"
check "unknown precision" run 2 bench small_resnet --precision half

# the GPU numerics are recorded as asked; the CPU computes as always and says nothing of them in text
check "gpu numerics json" run 0 bench small_resnet "${quick[@]}" --json --mode infer --tf32 --nondeterministic --autotune \
  --no-cuda-graphs
check "gpu numerics recorded" python3 -c "import json,sys; j=json.load(open(sys.argv[1])); \
assert j['tf32'] is True and j['deterministic'] is False and j['autotune'] is True and j['cuda_graphs'] is False, j" \
  "$tmp/out"
check "gpu numerics text" run 0 bench small_resnet "${quick[@]}" --mode infer --tf32
check "cpu text has no tf32" bash -c "! grep -q tf32 '$tmp/out'"

# --mode picks the measurements
check "train only" run 0 bench small_resnet "${quick[@]}" --json --mode train
check "train only keys" python3 -c "import json,sys; j=json.load(open(sys.argv[1])); \
assert 'training' in j and 'inference' not in j and 'latency' not in j and list(j['memory']) == ['training', 'peak_rss'], j" \
  "$tmp/out"
check "infer only" run 0 bench small_resnet "${quick[@]}" --mode infer
check "infer only: no training line" bash -c "! grep -q '^training' '$tmp/out'"
check "infer only: latency" contains "$tmp/out" "latency: "

# --layers: every node of the model, in order, and the layers add up to the measured step
"$kelp" model summary small_resnet | awk 'NR > 1 && NF == 0 {exit} NR > 1 {print $1}' >"$tmp/nodes.txt"
check "summary lists nodes" test "$(wc -l <"$tmp/nodes.txt")" -gt 20
# 20 runs: a preemption by another process between two layers weighs little in the means
check "layers json" run 0 bench small_resnet --batch 8 --iters 20 --warmup 1 --layers --json --mode train
cp "$tmp/out" "$tmp/layers.json"
check "layers: every node, times add up" python3 - "$tmp/layers.json" "$tmp/nodes.txt" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
nodes = open(sys.argv[2]).read().split()
p = j["layers"]
assert p["graph"] == "training" and p["runs"] == 20, p["graph"]
names = [n["name"] for n in p["nodes"]]
assert names == nodes + ["loss"], (names, nodes)
for n in p["nodes"]:
    assert n["forward_ms"] >= 0 and n["backward_ms"] >= 0, n
    if n["type"] in ("conv2d", "linear"):
        assert n["forward_flops"] > 0 and n["forward_gflops"] > 0, n
        # backward: the weight gradient, and the input gradient except for the first layer (the image has none)
        assert n["backward_flops"] == (1 if n["name"] == "conv1" else 2) * n["forward_flops"], n
    else:
        assert n["forward_flops"] == 0 and n["backward_flops"] == 0, n
layers = sum(n["forward_ms"] + n["backward_ms"] for n in p["nodes"])
assert abs(layers - p["total_ms"]) < 1e-6 * layers, (layers, p["total_ms"])
fb = p["forward_ms"] + p["backward_ms"]
print(f"sum of layers {layers:.3f} ms, forward+backward {fb:.3f} ms, whole step {p['step_ms']:.3f} ms "
      f"(layers: {100 * layers / fb:.1f}% and {100 * layers / p['step_ms']:.1f}%)")
assert fb <= p["step_ms"] * 1.001 and layers <= fb * 1.001, p
assert abs(layers - p["step_ms"]) <= 0.10 * p["step_ms"], "layers are not within 10% of the whole step"
PY
check "layers text" run 0 bench small_resnet "${quick[@]}" --layers
check "layers text: every node" bash -c "while read -r n; do grep -q \"^\$n \" '$tmp/out' || { echo \"no row for \$n\"; exit 1; }; done <'$tmp/nodes.txt'"
for line in "per-layer profile: training graph" "fwd GFLOP/s" "layers, summed:" "forward + backward, timed:" \
  "whole step, timed:"; do
  check "layers text has '$line'" contains "$tmp/out" "$line"
done
check "infer layers" run 0 bench small_resnet "${quick[@]}" --layers --mode infer --json
check "infer layers: forward only" python3 -c "import json,sys; p=json.load(open(sys.argv[1]))['layers']; \
assert p['graph'] == 'inference' and p['backward_ms'] == 0 and all(n['backward_ms'] == 0 for n in p['nodes']), p" \
  "$tmp/out"
# inference folds every batch norm and ReLU that follows a convolution into it; the add and the ReLU after it run
check "infer layers: folded" python3 -c "import json,sys; p=json.load(open(sys.argv[1]))['layers']; \
f={n['name']: n['folded'] for n in p['nodes']}; t={n['name']: n['type'] for n in p['nodes']}; \
assert all(f[n] == (t[n] in ('batch_norm', 'relu') and n != 'layer1.0.relu') for n in f if n.startswith(('bn', 'layer1', 'relu'))), f; \
assert not any(n['folded'] for n in p['nodes'] if n['type'] == 'conv2d'), f" "$tmp/out"

# a model file instead of a zoo name
"$kelp" model show small_resnet >"$tmp/model.json"
check "model file" run 0 bench "$tmp/model.json" --batch 2 --iters 1 --warmup 0 --mode infer
check "model file named" contains "$tmp/out" "kelp bench $tmp/model.json: input 28x28x1, batch 2"

# bad arguments: exit 2 and say what is wrong
fails() { # fails STATUS TEXT ARGS...: kelp exits with STATUS and stderr holds TEXT
  local want=$1 text=$2; shift 2
  run "$want" "$@" && contains "$tmp/err" "$text"
}
check "no model" fails 2 "exactly one model" bench
check "two models" fails 2 "exactly one model" bench small_resnet resnet18
check "batch 0" fails 2 "--batch needs a positive integer, got '0'" bench small_resnet --batch 0
check "batch text" fails 2 "--batch needs a positive integer, got '8x'" bench small_resnet --batch 8x
check "iters 0" fails 2 "--iters needs a positive integer" bench small_resnet --iters 0
check "warmup -1" fails 2 "--warmup needs an integer >= 0" bench small_resnet --warmup -1
check "threads" fails 2 "--threads needs an integer >= 0" bench small_resnet --threads two
check "mode" fails 2 "--mode needs train, infer or all, got 'both'" bench small_resnet --mode both
check "input" fails 2 "--input needs HxW or HxWxC, got '32'" bench small_resnet --input 32
check "unknown option" fails 2 "Run 'kelp bench --help'" bench small_resnet --fast
check "unknown device" fails 2 "--device tpu: unknown device 'tpu'" bench small_resnet --device tpu
# failures of the work: exit 1 naming what failed
check "unknown model" fails 1 "'no_such_model' is neither a zoo model" bench no_such_model
check "missing file" fails 1 "$tmp/missing.json" bench "$tmp/missing.json"
check "cuda" fails 1 "kelp bench: --device cuda: " bench small_resnet --device cuda
check "help" run 0 bench --help
check "help text" contains "$tmp/out" "Usage: kelp bench MODEL|MODEL.json"
check "listed in kelp --help" bash -c "'$kelp' --help | grep -q '^  bench '"

finish
