#!/usr/bin/env bash
# kelp report on a tiny real run (a Fashion-MNIST subset): the HTML parses, holds the three charts, a 10x10
# confusion table whose counts add up to the split, decodable PNG mistakes and the class names; bad input fails
# cleanly. Needs Debian's dataset-fashion-mnist; without it the test says so and is skipped.
# Usage: test_report.sh PATH/TO/kelp
set -uo pipefail
kelp=$1
here=$(cd "$(dirname "$0")" && pwd)
src=/usr/share/datasets/fashion-mnist
if [ ! -f "$src/train-images-idx3-ubyte.gz" ]; then
  echo "SKIPPED: $src is missing (apt-get install dataset-fashion-mnist)"
  exit 77
fi
source "$here/lib.sh"
# fails_with STATUS TEXT COMMAND...: the command exits with STATUS and its stderr contains TEXT
fails_with() {
  local want=$1 text=$2; shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  [ "$rc" = "$want" ] && grep -qF -- "$text" "$tmp/err" || { echo "$*: exit $rc, stderr: $(cat "$tmp/err")"; return 1; }
}

python3 "$here/fashion_subset.py" "$src" "$tmp/fm" 1500 200 0
check "import" quiet "$kelp" data import --format idx "$tmp/fm/train-images.gz" "$tmp/fm/train-labels.gz" \
  "$tmp/fm/t10k-images.gz" "$tmp/fm/t10k-labels.gz" -o "$tmp/fm.h5" --val-split 0.2 --class-names fashion-mnist
check "train" quiet "$kelp" train --data "$tmp/fm.h5" --model small_resnet --out "$tmp/run" --epochs 2 --batch 64 \
  --lr 0.05 --seed 3 --log-every 5
check "report" quiet "$kelp" report "$tmp/run"

"$kelp" data info "$tmp/fm.h5" --json >"$tmp/info.json"
val_count=$(python3 -c "import json; print(json.load(open('$tmp/info.json'))['splits']['val']['count'])")
check "report content" python3 - "$tmp/run/report.html" "$val_count" <<'PY'
import base64, sys
from html.parser import HTMLParser

class Report(HTMLParser):
    def __init__(self):
        super().__init__()
        self.svgs = 0
        self.tables = []  # per <table>: rows of (tag, text) cells
        self.table = None
        self.cell = None
        self.images = []
        self.text = []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "svg":
            self.svgs += 1
        elif tag == "table":
            self.table = []
        elif tag == "tr" and self.table is not None:
            self.table.append([])
        elif tag in ("td", "th") and self.table is not None:
            self.cell = [tag, ""]
        elif tag == "img":
            self.images.append(a.get("src", ""))
    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.table[-1].append(tuple(self.cell))
            self.cell = None
        elif tag == "table":
            self.tables.append(self.table)
            self.table = None
    def handle_data(self, data):
        self.text.append(data)
        if self.cell is not None:
            self.cell[1] += data

path, expected = sys.argv[1], int(sys.argv[2])
p = Report()
p.feed(open(path, encoding="utf-8").read())
p.close()
assert p.svgs == 3, p.svgs
cells = [[[t for tag, t in row if tag == "td"] for row in table if any(tag == "td" for tag, _ in row)]
         for table in p.tables]
grids = [[[int(t) for t in row] for row in g] for g in cells
         if len(g) == 10 and all(len(row) == 10 and all(t.isdigit() for t in row) for row in g)]
assert len(grids) == 1, [len(t) for t in p.tables]
total = sum(map(sum, grids[0]))
assert total == expected, (total, expected)
pngs = [s for s in p.images if s.startswith("data:image/png;base64,")]
assert pngs, p.images[:3]
for s in pngs:
    assert base64.b64decode(s.split(",", 1)[1], validate=True).startswith(b"\x89PNG\r\n\x1a\n")
text = " ".join(p.text)
for name in ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
             "Ankle boot"]:
    assert name in text, name
assert "epochs trained" in text and "best epoch" in text
PY

check "--out, --split test, --max-mistakes" quiet "$kelp" report "$tmp/run" --out "$tmp/test.html" --split test \
  --max-mistakes 3
check "test split report" python3 -c "
import re
html = open('$tmp/test.html').read()
n = len(re.findall('data:image/png;base64,', html))
assert 1 <= n <= 3, n
assert '200 images' in html
"

# bad input
check "missing run dir" fails_with 1 "$tmp/nope" "$kelp" report "$tmp/nope"
mkdir -p "$tmp/empty"
check "no metrics.jsonl" fails_with 1 "$tmp/empty/metrics.jsonl" "$kelp" report "$tmp/empty"
cp -r "$tmp/run" "$tmp/corrupt"
echo '{"type":"epoch","epoch":' >>"$tmp/corrupt/metrics.jsonl"
check "corrupt metrics line" fails_with 1 "metrics.jsonl: line" "$kelp" report "$tmp/corrupt"
check "missing dataset" fails_with 1 "$tmp/missing.h5" "$kelp" report "$tmp/run" --data "$tmp/missing.h5"
check "bad split" fails_with 2 "--split" "$kelp" report "$tmp/run" --split train
check "no run dir" fails_with 2 "RUN_DIR" "$kelp" report

# class names that look like markup are escaped
python3 "$here/fashion_subset.py" "$src" "$tmp/tiny" 300 0 0
check "import odd names" quiet "$kelp" data import --format idx "$tmp/tiny/train-images.gz" \
  "$tmp/tiny/train-labels.gz" -o "$tmp/odd.h5" --val-split 0.2 \
  --class-names '<b>zero</b>,one&two,"q",three,four,five,six,seven,eight,nine'
check "train odd names" quiet "$kelp" train --data "$tmp/odd.h5" --model small_resnet --out "$tmp/odd" --epochs 1 \
  --batch 64 --seed 3 --log-every 1
check "report odd names" quiet "$kelp" report "$tmp/odd"
check "names escaped" python3 -c "
html = open('$tmp/odd/report.html').read()
assert '<b>zero' not in html and '&lt;b&gt;zero&lt;/b&gt;' in html
assert 'one&amp;two' in html and '&quot;q&quot;' in html
"

finish
