#!/usr/bin/env bash
# bench/gpu_table.py, which turns a GPU machine's benchmark runs into the table of docs/benchmarks.md, on made-up
# runs: each kelp row beside its PyTorch like with their ratio, the card's name, failed runs left out, the section
# put after the marker (newest first) in a copy of docs/benchmarks.md, and a clear error without the marker.
# Usage: test_gpu_table.sh PATH/TO/kelp (unused: the table needs no GPU and no kelp)
set -uo pipefail
kelp=$1
source "$(dirname "$0")/lib.sh"
root=$(cd "$(dirname "$0")/../.." && pwd)
table=$root/bench/gpu_table.py

runs=$tmp/runs
mkdir -p "$runs"
echo '{"training": {"images_per_s": 1000}, "inference": {"images_per_s": 4000}}' >"$runs/kelp_resnet50_fp32_b256.json"
echo '{"latency": {"median_ms": 2.5}}' >"$runs/kelp_resnet50_fp32_b1.json"
echo '{"training": {"images_per_s": 3000}, "inference": {"images_per_s": 9000}}' >"$runs/kelp_resnet50_bf16_b256.json"
echo '{"training": {"images_per_s": 800}}' >"$runs/torch_resnet50_none_train.json"
echo '{"inference": {"images_per_s": 5000}, "latency": {"median_ms": 3.0}}' >"$runs/torch_resnet50_none_infer.json"
echo '{"training": {"images_per_s": 2400}}' >"$runs/torch_resnet50_bf16_train.json"
echo 'Traceback (most recent call last):' >"$runs/torch_resnet50_bf16_infer.json"
cp "$root/docs/benchmarks.md" "$tmp/benchmarks.md"

check "table" quiet python3 "$table" "$runs" "$tmp/t1" --card "NVIDIA H100 80GB HBM3, 550.54, 81559 MiB" \
  --date 2026-12-01 --docs "$tmp/benchmarks.md"
check "rows with their PyTorch like and ratios" python3 - "$tmp/t1/gpu_benchmarks.md" <<'PY'
import sys
text = open(sys.argv[1]).read()
assert text.startswith("#### 2026-12-01: NVIDIA H100 80GB HBM3, 550.54, 81559 MiB"), text[:80]
rows = {l.split("|")[2].strip(): [c.strip() for c in l.split("|")[1:-1]] for l in text.splitlines()
        if l.startswith("| resnet50")}
assert rows["strict fp32"][2:5] == ["1000", "800", "1.25x"], rows["strict fp32"]
assert rows["strict fp32"][6:9] == ["4000", "5000", "0.80x"], rows["strict fp32"]
assert rows["strict fp32"][10:12] == ["2.50", "3.00"], rows["strict fp32"]
# the failed PyTorch run (not JSON) is left out: no ratio rather than a wrong one
assert rows["bf16 mixed"][2:5] == ["3000", "2400", "1.25x"] and rows["bf16 mixed"][7:9] == ["-", "-"], rows["bf16 mixed"]
assert "TF32" not in rows, rows
PY
check "every run in gpu_bench.json" python3 -c "
import json, sys
runs = json.load(open(sys.argv[1]))
assert len(runs) == 6 and runs['kelp_resnet50_fp32_b1']['latency']['median_ms'] == 2.5, sorted(runs)
" "$tmp/t1/gpu_bench.json"
check "second run" quiet python3 "$table" "$runs" "$tmp/t2" --card "NVIDIA A100-SXM4-40GB, 535.1, 40960 MiB" \
  --date 2026-12-02 --docs "$tmp/benchmarks.md"
check "sections after the marker, newest first" python3 - "$tmp/benchmarks.md" "$root/docs/benchmarks.md" <<'PY'
import sys
new, old = open(sys.argv[1]).read(), open(sys.argv[2]).read()
marker = new.index("<!-- gpu results -->")
a100, h100 = new.index("#### 2026-12-02: NVIDIA A100"), new.index("#### 2026-12-01: NVIDIA H100")
assert marker < a100 < h100, (marker, a100, h100)
assert new.count("| resnet50 | strict fp32 |") == 2
head, tail = old.split("<!-- gpu results -->")
none = "No GPU has been available to this project yet"
assert none in tail and none not in new, "the line saying there are no figures stayed"
tail = "\n".join(l for l in tail.split("\n") if not l.startswith(none))
assert new.startswith(head) and new.endswith(tail.lstrip("\n")), "text around the sections changed"
PY
printf '# Benchmarks\n' >"$tmp/plain.md"
check "no marker: an error naming the file" sh -c "python3 '$table' '$runs' '$tmp/t3' --card x --docs '$tmp/plain.md' \
  >/dev/null 2>'$tmp/err'; test \$? != 0 && grep -q 'plain.md has no line' '$tmp/err'"
mkdir -p "$tmp/empty"
check "no kelp run: an error" sh -c "! python3 '$table' '$tmp/empty' '$tmp/t4' --card x >/dev/null 2>&1"
finish
