#!/usr/bin/env bash
# ONNX export (`kelp model onnx`): every zoo model and the test networks are exported, checked by onnx's checker
# and run by onnxruntime on the reference input kelp wrote beside them; kelp's and onnxruntime's outputs must agree
# within 1e-4 (check_onnx.py prints each figure). Batch norms get random statistics (perturb_weights.py) so that a
# wrong epsilon, statistic or layout shows; tests/fixtures/every_layer.json, which has every layer type, uses its
# PyTorch-made weights, so the initializers are also compared with PyTorch's own names and layouts.
# Usage: test_onnx.sh PATH/TO/kelp
set -uo pipefail
kelp=$1
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../cli/lib.sh"

if ! python=$("$here/../../tools/pyenv.sh"); then
  echo "SKIPPED: tools/pyenv.sh could not prepare the Python environment with onnx and onnxruntime"
  exit 77
fi

# export_checked NAME MODEL [kelp model onnx options...]: the export with a reference, then the check
export_checked() {
  local name=$1 model=$2; shift 2
  local weights=()
  if [ "${1:-}" = --weights ]; then weights=(--weights "$2"); fi
  check "$name: export" run 0 model onnx "$model" --out "$tmp/$name.onnx" --reference "$tmp/$name.ref.safetensors" \
    "$@"
  check "$name: onnxruntime agrees with kelp" "$python" "$here/check_onnx.py" "$tmp/$name.onnx" \
    "$tmp/$name.ref.safetensors" "${weights[@]}"
}

# export_perturbed NAME MODEL [options...]: random initialization, batch norms drawn at random, exported again
export_perturbed() {
  local name=$1 model=$2; shift 2
  check "$name: export of the initialization" run 0 model onnx "$model" --out "$tmp/$name.init.onnx" "$@"
  check "$name: weights with random batch norms" "$python" "$here/perturb_weights.py" "$tmp/$name.init.onnx" \
    "$tmp/$name.weights.safetensors"
  export_checked "$name" "$model" --weights "$tmp/$name.weights.safetensors" "$@"
}

check "model list" run 0 model list
zoo=$(cut -d' ' -f1 "$tmp/out")
check "the zoo is listed" test -n "$zoo"
for name in $zoo; do
  # 64x64 keeps the ImageNet networks fast here (every one downsamples 32x at most); 10 classes keep the head small
  export_perturbed "$name" "$name" --input 64x64 --classes 10
done
export_checked every_layer "$here/../fixtures/every_layer.json" \
  --weights "$here/../fixtures/every_layer.weights.safetensors"
export_perturbed edge_layers "$here/edge_layers.json" --seed 3
export_perturbed vector_head "$here/vector_head.json"

# the ONNX file's names and metadata
check "graph names and metadata" "$python" - "$tmp/every_layer.onnx" <<'PY'
import sys
import onnx
m = onnx.load(sys.argv[1])
assert [i.name for i in m.graph.input] == ["input"], m.graph.input
assert [d.dim_value or d.dim_param for d in m.graph.input[0].type.tensor_type.shape.dim] == ["batch", 3, 9, 7]
assert [o.name for o in m.graph.output] == ["logits"], m.graph.output
assert m.producer_name == "kelp" and m.ir_version == 8, (m.producer_name, m.ir_version)
inits = {t.name for t in m.graph.initializer}
assert {"conv1.weight", "bn1.running_var", "deconv.weight", "fc2.bias"} <= inits, sorted(inits)
assert not any(n.endswith("num_batches_tracked") for n in inits)
assert not any(n.op_type == "Dropout" for n in m.graph.node)
meta = {p.key: p.value for p in m.metadata_props}
assert meta["kelp.task"] == "classify" and meta["kelp.input_mean"] == "[0.5,0.5,0.5]", meta
PY

# failures: a clear message and a non-zero exit, and no file left behind
check "unwritable path fails" run 1 model onnx small_resnet --out "$tmp/no-such-folder/model.onnx"
check "unwritable path message names the file" contains "$tmp/err" "$tmp/no-such-folder/model.onnx"
check "missing --out is a usage error" run 2 model onnx small_resnet
check "missing --out message" contains "$tmp/err" "--out"
cat >"$tmp/odd_scale.json" <<'JSON'
{"format": "kelp-model", "version": 1, "inputs": [{"name": "image", "shape": [25, 25, 3]}],
 "nodes": [{"name": "up", "type": "upsample", "mode": "nearest", "scale_factor": 1.16}]}
JSON
# kelp (as PyTorch) sizes the output as floor(25 * 1.16) = 28 in double, ONNX in float gets 29: refused, not wrong
check "inexpressible scale factor fails" run 1 model onnx "$tmp/odd_scale.json" --out "$tmp/odd_scale.onnx"
check "inexpressible scale factor message" contains "$tmp/err" "node 'up' (upsample): scale_factor 1.16"
check "no file after a failed export" test ! -e "$tmp/odd_scale.onnx"
check "weights of another model fail" run 1 model onnx small_resnet --out "$tmp/x.onnx" \
  --weights "$here/../fixtures/every_layer.weights.safetensors"
check "weights message names the file" contains "$tmp/err" "every_layer.weights.safetensors"

finish
