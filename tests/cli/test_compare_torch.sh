#!/usr/bin/env bash
# bench/compare_torch.py without PyTorch: --kelp-only on small_resnet with one timed run prints the table with every
# measurement and keeps each run's JSON; a python without torch is refused with the way out; the SVG chart is
# well-formed XML and --write-docs puts the block above the marker line. (The comparison itself needs torch: see
# docs/benchmarks.md.)
# Usage: test_compare_torch.sh PATH/TO/kelp
set -uo pipefail
kelp=$1
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
source "$here/lib.sh"
if ! command -v python3 >/dev/null; then
  echo "SKIPPED: bench/compare_torch.py needs python3, which is not on PATH"
  exit 77
fi
driver=$repo/bench/compare_torch.py

compare() { # compare EXPECTED_STATUS ARGS...: stdout in $tmp/out, stderr in $tmp/err
  local want=$1; shift
  python3 "$driver" "$@" >"$tmp/out" 2>"$tmp/err"
  local got=$?
  if [ "$got" != "$want" ]; then
    echo "compare_torch.py $*: exit $got, expected $want; stderr: $(cat "$tmp/err")"
    return 1
  fi
}

check "kelp only runs" compare 0 --kelp-only --kelp "$kelp" --models small_resnet --rounds 1 --warmup 0 --iters 1 \
  --threads 2 --out "$tmp/runs"
for line in "| model | measurement | kelp |" "| small_resnet 28x28x1 | training, batch 16 | " \
  "| inference, batch 16 | " "| inference, batch 1 | " "| latency, batch 1, median | " "| latency, batch 1, p99 | " \
  "| peak RSS, training process | " "| peak RSS, inference process | " "- Machine: " "2 threads for both" \
  "- kelp 0.1.0 (" "- Command: \`bench/compare_torch.py --kelp-only"; do
  check "table has '$line'" contains "$tmp/out" "$line"
done
check "header and one row per measurement" test "$(grep -c '^| ' "$tmp/out")" = 8
check "runs kept" test -s "$tmp/runs/small_resnet.train.kelp.1.json" -a -s "$tmp/runs/small_resnet.infer.kelp.1.json"
check "rss measured" python3 -c "import json,sys; r=json.load(open(sys.argv[1])); \
assert r['rss_at_exit'] >= r['memory']['peak_rss'] > 1 << 20 and r['mode'] == 'train' and r['batch'] == 16, r" \
  "$tmp/runs/small_resnet.train.kelp.1.json"

check "no torch: refused" compare 2 --python false --kelp "$kelp" --models small_resnet
check "no torch: the way out" contains "$tmp/err" "cannot import torch and torchvision: run with --install-torch"
check "kelp only, no docs" compare 2 --kelp-only --write-docs --kelp "$kelp"
check "unknown model" compare 2 --kelp-only --kelp "$kelp" --models no_such_model --rounds 1 --iters 1
check "unknown model named" contains "$tmp/err" "no_such_model"

check "chart and docs" python3 - "$repo/bench" "$tmp" <<'PY'
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import compare_torch as c
tmp = Path(sys.argv[2])
ratios = [("resnet18", "training, batch 16", "images/s", 0.93), ("resnet18", "latency, batch 1, p99", "ms", 1.4),
          ("small_resnet", "peak RSS, training process", "MiB", 2.6)]
svg = ET.fromstring(c.svg_chart(ratios, "title & more"))
assert svg.tag.endswith("svg") and len(svg.findall("{http://www.w3.org/2000/svg}rect")) == 4, svg
c.DOCS = tmp / "benchmarks.md"
c.DOCS.write_text("# Benchmarks\n\nbefore\n" + c.MARKER + "\nafter\n")
c.write_docs("#### the block\n", ratios, tmp / "chart.svg", "title")
text = c.DOCS.read_text()
assert text.index("before") < text.index("#### the block") < text.index(c.MARKER) < text.index("after"), text
ET.parse(tmp / "chart.svg")
PY

finish
