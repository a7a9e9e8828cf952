#!/usr/bin/env bash
# The kelp command as a user meets it: exit codes, output, and error messages that name the file and the problem.
# Usage: test_cli.sh PATH/TO/kelp
set -uo pipefail
kelp=$1
source "$(dirname "$0")/lib.sh"

check "info" run 0 info
check "info lists layers" contains "$tmp/out" "softmax_cross_entropy"
# each backend's ops per storage type: the optimizers (float state) only in F32, the activation ops in all three
check "info lists ops per storage type" python3 -c "
import re, sys
rows = {m.group(1): m.group(2).split() for m in re.finditer(r'^\s+(F32|BF16|F16)\s+(.*)$', open(sys.argv[1]).read(), re.M)}
assert set(rows) == {'F32', 'BF16', 'F16'}, rows
assert 'sgd' in rows['F32'] and 'adamw' in rows['F32'], rows['F32']
for dt in ('BF16', 'F16'):
    assert 'sgd' not in rows[dt] and 'conv2d' in rows[dt] and 'convert' in rows[dt], rows[dt]
" "$tmp/out"
check "version" run 0 --version
check "unknown command" run 2 frobnicate
check "unknown command message" contains "$tmp/err" "unknown command 'frobnicate'"

check "model list" run 0 model list
check "model list names resnet50" contains "$tmp/out" "resnet50"

check "model show" run 0 model show resnet18 --classes 7 --input 96x64x3
cp "$tmp/out" "$tmp/resnet18.json"
check "shown model is JSON with the classes" python3 -c "
import json, sys
m = json.load(open('$tmp/resnet18.json'))
assert m['format'] == 'kelp-model' and m['inputs'][0]['shape'] == [96, 64, 3], m['inputs']
fc = [n for n in m['nodes'] if n['name'] == 'fc'][0]
assert fc['out_features'] == 7, fc
"
check "summary of the shown file" run 0 model summary "$tmp/resnet18.json" --batch 2
check "summary output shape" contains "$tmp/out" "[2,7]"
check "summary parameters" contains "$tmp/out" "trainable parameters: 11180103"

python3 - "$tmp/resnet18.json" "$tmp/broken.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
for n in m["nodes"]:
    if n["name"] == "fc":
        n["out_feature"] = n.pop("out_features")
json.dump(m, open(sys.argv[2], "w"))
PY
check "broken model fails" run 1 model summary "$tmp/broken.json"
check "broken model message names node and field" contains "$tmp/err" "node 'fc' (linear): unknown field 'out_feature'"
check "broken model message names the file" contains "$tmp/err" "$tmp/broken.json"

printf '{"format": "kelp-model", "version": 1, "nodes": [' >"$tmp/truncated.json"
check "truncated model fails" run 1 model summary "$tmp/truncated.json"
check "truncated model message" contains "$tmp/err" "invalid JSON"
check "missing model" run 1 model show "$tmp/nope.json"
check "missing model message" contains "$tmp/err" "nope.json"
check "unknown zoo name" run 1 model show resnet101
check "bad option" run 2 model show resnet18 --classes zero
check "bad input size" run 2 model show resnet18 --input 12

finish
