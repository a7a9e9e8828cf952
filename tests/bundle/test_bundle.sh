#!/usr/bin/env bash
# The module bundle against the platform's real packages (deepaas 2.6.0, ai4-metadata 2.4.2; tools/pyenv.sh):
# train a small model, `kelp export` it, validate its metadata, serve it with deepaas-run and query every route,
# retrain it through the API, move it, and check that `kelp predict --bundle` and the C example agree with the server.
# Usage: test_bundle.sh PATH/TO/kelp
set -uo pipefail
kelp=$1
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=$(cd "$(dirname "$kelp")" && pwd)
src=/usr/share/datasets/fashion-mnist
if [ ! -f "$src/train-images-idx3-ubyte.gz" ]; then
  echo "SKIPPED: $src is missing (apt-get install dataset-fashion-mnist)"
  exit 77
fi
if ! py=$("$root/tools/pyenv.sh"); then
  echo "SKIPPED: tools/pyenv.sh could not prepare the Python packages (no PyPI?)"
  exit 77
fi
source "$root/tests/cli/lib.sh"
# the server and the worker processes it spawns all run the venv's python
stop_server() { pkill -f "$tmp/venv/bin/python" 2>/dev/null; sleep 0.2; pkill -9 -f "$tmp/venv/bin/python" 2>/dev/null; true; }
trap 'stop_server; rm -rf "$tmp"' EXIT
# a DEEPaaS worker that dies leaves its requests hanging: every request has a deadline
curl() { command curl --max-time 120 "$@"; }
quiet() { "$@" >"$tmp/out" 2>"$tmp/err" || { echo "$*: $(tail -5 "$tmp/err")"; return 1; }; }

# A sanitizer build's libkelp.so cannot be loaded into Python (DEEPaaS's spawned workers do not get the sanitizer
# runtimes first): there, the Python side is left to the Release run, and the C API under it is checked by
# tests/unit/test_predictor.c and, below, by kelp predict --bundle and the C example.
python_side=1
if nm -D "$build/libkelp.so" 2>/dev/null | grep __asan_init >/dev/null; then # (grep -q would SIGPIPE nm)
  python_side=0
  echo "NOTE: sanitizer build: the checks that load libkelp.so into Python (bundle tests, deepaas-run) are skipped here"
fi

# ---- a small trained model (KELP_TEST_QUICK=1, the sanitizer run: less data) ----
if [ "${KELP_TEST_QUICK:-0}" = 1 ]; then n_train=400; else n_train=2000; fi
python3 "$root/tests/cli/fashion_subset.py" "$src" "$tmp/fm" "$n_train" 300 4 60 4 >/dev/null
check "import" quiet "$kelp" data import --format idx "$tmp/fm/train-images.gz" "$tmp/fm/train-labels.gz" \
  "$tmp/fm/t10k-images.gz" "$tmp/fm/t10k-labels.gz" -o "$tmp/fm.h5" --val-split 0.1 --class-names fashion-mnist
check "train" quiet "$kelp" train --data "$tmp/fm.h5" --model small_resnet --out "$tmp/run" --epochs 1 --batch 64 \
  --lr 0.05 --seed 5
ckpt=$tmp/run/best.ckpt

# ---- export: refusals leave nothing behind ----
mkdir "$tmp/exists"
check "export refuses an existing directory" run 1 export --checkpoint "$ckpt" --out "$tmp/exists"
check "  and says so" contains "$tmp/err" "already exists"
check "export refuses a bad module name" run 2 export --checkpoint "$ckpt" --out "$tmp/b0" --name "Bad Name"
check "export refuses a name ending in -" run 2 export --checkpoint "$ckpt" --out "$tmp/b0" --name "fm-"
check "export refuses a name that shadows a module" run 2 export --checkpoint "$ckpt" --out "$tmp/b0" --name json
check "export refuses a name that takes a bundle folder" run 2 export --checkpoint "$ckpt" --out "$tmp/b0" --name model
check "export refuses more pixels than the decoder takes" run 2 export --checkpoint "$ckpt" --out "$tmp/b0" \
  --max-pixels 268435457
check "export refuses a bad version" run 2 export --checkpoint "$ckpt" --out "$tmp/b0" --version "1.0 beta"
check "export refuses an over-long title" run 2 export --checkpoint "$ckpt" --out "$tmp/b0" \
  --title "$(printf 'é%.0s' $(seq 200))"
echo '{"top1": 0.5}' >"$tmp/partial.json"
check "export refuses metrics without top5" run 1 export --checkpoint "$ckpt" --out "$tmp/b0" --metrics "$tmp/partial.json"
check "  naming the file" contains "$tmp/err" "partial.json"
check "export into a missing folder names the bundle" run 1 export --checkpoint "$ckpt" --out "$tmp/nowhere/b0"
check "  and the folder" contains "$tmp/err" "$tmp/nowhere/b0: cannot create: $tmp/nowhere is not a directory"
head -c 3000 "$ckpt" >"$tmp/truncated.ckpt"
check "export of a truncated checkpoint fails" run 1 export --checkpoint "$tmp/truncated.ckpt" --out "$tmp/b1"
check "  naming the file" contains "$tmp/err" "truncated.ckpt"
check "  leaving no directory" bash -c "! ls -d '$tmp'/b1* 2>/dev/null"

# ---- export ----
bundle=$tmp/bundle
check "export" run 0 export --checkpoint "$ckpt" --out "$bundle" --data "$tmp/fm.h5" --onnx --name fashion-mnist \
  --title "Fashion-MNIST classifier" --author "kelp tests" --max-pixels 1000000
for f in ai4-metadata.yml LICENSE VERSION README.md Dockerfile pyproject.toml fashion_mnist/__init__.py \
  fashion_mnist/api.py fashion_mnist/_kelp.py model/model.json model/weights.safetensors model/model.onnx \
  model/bundle.json lib/libkelp.so tests/test_api.py; do
  check "bundle has $f" test -s "$bundle/$f"
done
check "the model card holds the measured accuracy" grep -q "Top-1 [0-9.]*%, top-5" "$bundle/README.md"
check "the weights carry no optimizer state" bash -c "! grep -aq 'kelp.optimizer' '$bundle/model/weights.safetensors'"
check "kelp eval on the bundle" quiet "$kelp" eval --checkpoint "$bundle" --data "$tmp/fm.h5" --json
check "  scores what the bundle says it scored" python3 -c "
import json
e, b = json.load(open('$tmp/out')), json.load(open('$bundle/model/bundle.json'))
assert e['top1'] == b['metrics']['top1'] and e['samples'] == b['metrics']['images'], (e['top1'], b['metrics'])"
check "the weights are smaller than the checkpoint" test "$(stat -c %s "$bundle/model/weights.safetensors")" -lt \
  "$(stat -c %s "$ckpt")"

# ---- catalogue metadata: the hub's pipeline checks 2.0.0, the catalogue the latest ----
venv=$(dirname "$py")
check "ai4-metadata validate --metadata-version 2.0.0" quiet "$venv/ai4-metadata" validate --metadata-version 2.0.0 \
  "$bundle/ai4-metadata.yml"
check "ai4-metadata validate (latest)" quiet "$venv/ai4-metadata" validate "$bundle/ai4-metadata.yml"
# text that YAML and TOML refuse raw: quotes, a colon, a line break, DEL, a C1 control, U+2028, non-Latin letters
odd=$(printf 'A "quoted": title\nwith \x7f, \xc2\x85, \xe2\x80\xa8 and ñandú 🐟')
check "export with odd text" run 0 export --checkpoint "$ckpt" --out "$tmp/odd/" --name odd-text --title "$odd" \
  --summary "$odd" --author "O'Brien: \"x\""
check "  stays valid metadata (2.0.0)" quiet "$venv/ai4-metadata" validate --metadata-version 2.0.0 "$tmp/odd/ai4-metadata.yml"
check "  which reads back the exact title" "$py" -c "
import sys, yaml
assert yaml.safe_load(open('$tmp/odd/ai4-metadata.yml'))['title'] == sys.argv[1]" "$odd"
check "  and valid TOML" "$py" -c "
import tomllib; p = tomllib.load(open('$tmp/odd/pyproject.toml', 'rb')); assert '\n' not in p['project']['description']"

img=$(ls "$tmp"/fm/png/*.png | head -1)
if [ "$python_side" = 1 ]; then
# ---- installed as the platform does, into an environment that sees the pinned packages ----
python3 -m venv "$tmp/venv"
site=$("$tmp/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
"$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' >"$site/kelp-test-packages.pth"
check "pip install -e bundle" quiet "$tmp/venv/bin/python" -m pip install --no-deps --no-build-isolation \
  --disable-pip-version-check -e "$bundle"
check "the bundle's own tests" bash -c "cd '$bundle' && '$tmp/venv/bin/python' -m unittest discover -s tests >'$tmp/out' 2>&1 || { tail -20 '$tmp/out'; false; }"

# ---- deepaas-run ----
port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port/v2/models
mkdir "$tmp/uploads"
TMPDIR="$tmp/uploads" "$tmp/venv/bin/python" -m deepaas.cmd.run --listen-ip 127.0.0.1 --listen-port "$port" \
  --model-name fashion-mnist --client-max-size 4194304 >"$tmp/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 120); do curl -sf -o /dev/null "$url/" && break; sleep 0.5; done
check "GET /v2/models/ lists the module" bash -c "curl -sf '$url/' | grep -q '\"id\": \"fashion-mnist\"'"
curl -s -F "image=@$img" "$url/fashion-mnist/predict/" >"$tmp/server.json"
"$kelp" predict --bundle "$bundle" --json "$img" >"$tmp/cli.json"
check "POST predict answers as kelp predict (top-1, probabilities to 1e-5)" "$py" - "$tmp/server.json" "$tmp/cli.json" <<'EOF'
import json, sys
server = json.load(open(sys.argv[1]))
cli = json.load(open(sys.argv[2]))[0]
assert server["status"] == "OK", server
assert server["labels"] == cli["labels"], (server, cli)
diff = max(abs(a - b) for a, b in zip(server["probabilities"], cli["probabilities"]))
print("predict: top-1 %s, max |server - cli| %.2g" % (server["labels"][0], diff))
assert diff <= 1e-5, diff
EOF
code() { curl -s -o "$tmp/body" -w '%{http_code}' "$@"; }
echo "just text" >"$tmp/note.txt"
check "a text file gets 400" test "$(code -F "image=@$tmp/note.txt" "$url/fashion-mnist/predict/")" = 400
check "  saying why" contains "$tmp/body" "not a PNG or JPEG"
"$py" - "$tmp/huge.png" <<'EOF'
import struct, sys, zlib
def chunk(kind, data): return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 4000, 3000, 8, 0, 0, 0, 0))
                              + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
EOF
check "an image over the pixel limit gets 413" test "$(code -F "image=@$tmp/huge.png" "$url/fashion-mnist/predict/")" = 413
head -c 5000000 /dev/zero >"$tmp/big.bin"
check "an upload over --client-max-size gets 413" test "$(code -F "image=@$tmp/big.bin" "$url/fashion-mnist/predict/")" = 413
check "a wrong field gets 422" test "$(code -F "image=@$img" -F top_k=0 "$url/fashion-mnist/predict/")" = 422
check "no upload is left behind" bash -c "[ -z \"\$(ls -A '$tmp/uploads')\" ]"

# ---- train through the API on a tiny dataset ----
python3 "$root/tests/cli/fashion_subset.py" "$src" "$tmp/tiny" 300 60 4 0 4 >/dev/null
quiet "$kelp" data import --format idx "$tmp/tiny/train-images.gz" "$tmp/tiny/train-labels.gz" \
  "$tmp/tiny/t10k-images.gz" "$tmp/tiny/t10k-labels.gz" -o "$tmp/tiny.h5" --val-split 0.2 --class-names fashion-mnist
before=$(sha256sum <"$bundle/model/weights.safetensors")
curl -s -X POST "$url/fashion-mnist/train/?data=$tmp/tiny.h5&epochs=1&batch_size=32" >"$tmp/train.json"
uuid=$("$py" -c 'import json, sys; print(json.load(open(sys.argv[1]))["uuid"])' "$tmp/train.json" 2>/dev/null)
status=""
for _ in $(seq 1 240); do
  curl -s "$url/fashion-mnist/train/$uuid" >"$tmp/status.json"
  status=$("$py" -c 'import json, sys; print(json.load(open(sys.argv[1]))["status"])' "$tmp/status.json" 2>/dev/null)
  [ "$status" = running ] || break
  sleep 0.5
done
check "POST train completes and GET says done" test "$status" = done
check "  with the test accuracy" bash -c "grep -q '\"top1\"' '$tmp/status.json' || { cat '$tmp/status.json'; false; }"
check "  and new weights" test "$(sha256sum <"$bundle/model/weights.safetensors")" != "$before"
check "predict after training" test "$(code -F "image=@$img" "$url/fashion-mnist/predict/")" = 200
check "  metadata gives the fine-tuning's metrics" "$py" -c "
import json, sys
def answer(j):  # the train call's own answer, wherever DEEPaaS nests it in the status
    if isinstance(j, dict):
        if 'scored_split' in j:
            return j
        return next((a for a in map(answer, j.values()) if a), None)
out = answer(json.load(open('$tmp/status.json')))
meta = json.load(open('$bundle/model/bundle.json'))['metrics']
assert meta['source'] == 'train' and meta['data'] == '$tmp/tiny.h5', meta
assert meta['top1'] == out['top1'] and meta['images'] == out['images'] and meta['split'] == out['scored_split'], (meta, out)
"
kill "$server_pid"
wait "$server_pid" 2>/dev/null
stop_server
check "the server logged no traceback" bash -c "! grep -q Traceback '$tmp/server.log' || { grep -A12 Traceback '$tmp/server.log' | head -30; false; }"

fi

# ---- moved elsewhere, the bundle answers the same ----
"$kelp" predict --bundle "$bundle" --json "$tmp"/fm/png >"$tmp/before.json"
mkdir "$tmp/elsewhere"
mv "$bundle" "$tmp/elsewhere/module"
check "kelp predict --bundle on the moved bundle" quiet "$kelp" predict --bundle "$tmp/elsewhere/module" --json "$tmp"/fm/png
check "  gives the same answers" "$py" -c "
import json, sys
a, b = json.load(open('$tmp/before.json')), json.load(open('$tmp/out'))
assert [r['labels'] for r in a] == [r['labels'] for r in b]
assert [r['probabilities'] for r in a] == [r['probabilities'] for r in b]
print(len(a), 'images')"
[ "$python_side" = 1 ] && check "the moved bundle's own tests" bash -c "cd '$tmp/elsewhere/module' && '$tmp/venv/bin/python' -m unittest discover -s tests >'$tmp/out' 2>&1 || { tail -20 '$tmp/out'; false; }"
if [ -x "$build/kelp_classify" ]; then
  check "the C example on libkelp.so" quiet "$build/kelp_classify" "$tmp/elsewhere/module" "$img"
  check "  agrees on the top-1 label" "$py" -c "
import json
label = json.load(open('$tmp/before.json'))[0]['labels'][0]
line = open('$tmp/out').read()
assert '\"labels\":[\"%s\"' % label in line, (label, line)"
fi
finish
