#!/usr/bin/env bash
# kelp data import | info | check as a user meets them: a folder of images (from tests/fixtures/images), the real
# Fashion-MNIST when Debian's dataset-fashion-mnist is installed, exit codes, and error messages that name the file.
# Usage: test_data.sh PATH/TO/kelp
set -uo pipefail
kelp=$1
fixtures=$(cd "$(dirname "$0")/../fixtures/images" && pwd)
fmnist=/usr/share/datasets/fashion-mnist
source "$(dirname "$0")/lib.sh"

absent() { [ ! -e "$1" ] || { echo "$1 exists"; return 1; }; }

json_check() { # json_check FILE PYTHON_EXPRESSION_OVER_d
  python3 -c "
import json, sys
d = json.load(open(sys.argv[1]))
assert $2, d
" "$1"
}

# ---- a folder of images: 3 classes of 4 images (PNG and JPEG, gray and colour, 4 sizes), plus things to skip ----
src=$tmp/src
for class in crab fish kelp; do
  mkdir -p "$src/$class"
  for f in "$fixtures"/*; do cp "$f" "$src/$class/$class-$(basename "$f")"; done
done
echo "not an image" >"$src/fish/notes.txt"
touch "$src/kelp/.DS_Store"

check "folder import" run 0 data import --format folder "$src" -o "$tmp/folder.h5" --val-split 0.25 --seed 3 \
  --source "kelp tests" --license CC0-1.0
check "import summary counts" contains "$tmp/out" "3 classes, 3 channels; train 9, val 3, test 0 images"
check "import summary skipped" contains "$tmp/out" "skipped: 1 hidden, 1 not images, 0 bad"
check "no progress lines off a terminal" test ! -s "$tmp/err"

check "info" run 0 data info "$tmp/folder.h5"
check "info task" contains "$tmp/out" "classify"
check "info classes" contains "$tmp/out" "3: crab, fish, kelp"
check "info variable sizes" contains "$tmp/out" "variable size: h "
check "info class counts" contains "$tmp/out" "per class: crab 3, fish 3, kelp 3"
check "info source" contains "$tmp/out" "kelp tests"

check "info --json" run 0 data info "$tmp/folder.h5" --json
check "json content" json_check "$tmp/out" "d['classes'] == ['crab', 'fish', 'kelp'] and d['task'] == 'classify' \
and d['splits']['train']['count'] == 9 and d['splits']['val']['count'] == 3 and not d['splits']['val']['fixed_shape'] \
and 5 <= d['splits']['train']['w']['min'] <= d['splits']['train']['w']['max'] <= 11 \
and d['splits']['train']['class_counts']['fish'] == 3 \
and d['license'] == 'CC0-1.0' and d['file_bytes'] > 0"

check "check clean" run 0 data check "$tmp/folder.h5"
check "check says clean" contains "$tmp/out" "no problems"

check "fixed-size gray import" run 0 data import --format folder "$src/" -o "$tmp/fixed.h5" --size 16x12 \
  --channels 1 --test-split 0.5
check "fixed-size summary" contains "$tmp/out" "1 channel; train 6, val 0, test 6 images"
check "fixed-size info" run 0 data info "$tmp/fixed.h5"
check "fixed-size shape" contains "$tmp/out" "all 16 x 12 x 1"

# ---- failures: exit 1 with a message naming the file; exit 2 for usage errors ----
check "missing folder" run 1 data import --format folder "$tmp/nope" -o "$tmp/x.h5"
check "missing folder message" contains "$tmp/err" "$tmp/nope: cannot open folder"
mkdir "$tmp/empty"
check "empty folder" run 1 data import --format folder "$tmp/empty" -o "$tmp/x.h5"
check "empty folder message" contains "$tmp/err" "no class folders"

head -c 300 "$fixtures/rgb-9x11.jpg" >"$src/fish/broken.jpg"
check "corrupt image" run 1 data import --format folder "$src" -o "$tmp/x.h5"
check "corrupt image message names it" contains "$tmp/err" "$src/fish/broken.jpg"
check "no output after a failure" absent "$tmp/x.h5"
check "skip bad" run 0 data import --format folder "$src" -o "$tmp/x.h5" --skip-bad
check "skip bad counted" contains "$tmp/out" "1 not images, 1 bad"
check "skip bad total" contains "$tmp/out" "train 12, val 0, test 0 images"
check "info of all 12" run 0 data info "$tmp/x.h5"
check "size statistics" contains "$tmp/out" "variable size: h 6..9 (median 7.5), w 5..11 (median 8), c 3..3 (median 3)"

check "no output option" run 2 data import --format folder "$src"
check "unknown format" run 2 data import --format coco "$src" -o "$tmp/x.h5"
check "unknown format message" contains "$tmp/err" "unknown --format 'coco'"
check "bad fraction" run 2 data import --format folder "$src" -o "$tmp/x.h5" --val-split 1.5
check "fractions sum" run 2 data import --format folder "$src" -o "$tmp/x.h5" --val-split 0.5 --test-split 0.5
check "bad size" run 2 data import --format folder "$src" -o "$tmp/x.h5" --size 16
check "size is folder-only" run 2 data import --format idx a b -o "$tmp/x.h5" --size 8x8
check "unknown verb" run 2 data frobnicate
check "info of a missing file" run 1 data info "$tmp/missing.h5"
check "info message names it" contains "$tmp/err" "$tmp/missing.h5"
head -c 2000 "$tmp/folder.h5" >"$tmp/cut.h5"
check "check of a damaged file" run 1 data check "$tmp/cut.h5"
check "check of a damaged file names it" grep -qF -- "$tmp/cut.h5" "$tmp/out" "$tmp/err"

# ---- the real Fashion-MNIST: the first 2000 training and 500 test images ----
be32() { # the 4 big-endian bytes of $1
  printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 >> 24 & 255)) $(($1 >> 16 & 255)) $(($1 >> 8 & 255)) \
    $(($1 & 255)))"
}
first_images() { # first_images SRC.gz N OUT (raw IDX)
  { printf '\x00\x00\x08\x03'; be32 "$2"; be32 28; be32 28; gzip -dc "$1" | tail -c +17 | head -c $(($2 * 784)); } >"$3"
}
first_labels() { # first_labels SRC.gz N OUT (gzip'd IDX)
  { printf '\x00\x00\x08\x01'; be32 "$2"; gzip -dc "$1" | tail -c +9 | head -c "$2"; } | gzip -c >"$3"
}
if [ -r "$fmnist/train-images-idx3-ubyte.gz" ]; then
  first_images "$fmnist/train-images-idx3-ubyte.gz" 2000 "$tmp/train-images"
  first_labels "$fmnist/train-labels-idx1-ubyte.gz" 2000 "$tmp/train-labels.gz"
  first_images "$fmnist/t10k-images-idx3-ubyte.gz" 500 "$tmp/test-images"
  first_labels "$fmnist/t10k-labels-idx1-ubyte.gz" 500 "$tmp/test-labels.gz"
  check "fashion-mnist import" run 0 data import --format idx "$tmp/train-images" "$tmp/train-labels.gz" \
    "$tmp/test-images" "$tmp/test-labels.gz" -o "$tmp/fmnist.h5" --val-split 0.1 --class-names fashion-mnist
  check "fashion-mnist summary" contains "$tmp/out" "10 classes, 1 channel; train "
  check "fashion-mnist test split" contains "$tmp/out" ", test 500 images"
  check "fashion-mnist info" run 0 data info "$tmp/fmnist.h5" --json
  check "fashion-mnist info content" json_check "$tmp/out" "d['classes'][9] == 'Ankle boot' \
and d['splits']['train']['shape'] == [28, 28, 1] and d['splits']['test']['count'] == 500 \
and d['splits']['train']['count'] + d['splits']['val']['count'] == 2000 \
and all(v == int(0.1 * (v + d['splits']['train']['class_counts'][k]) + 0.5) \
        for k, v in d['splits']['val']['class_counts'].items())"
  check "fashion-mnist check" run 0 data check "$tmp/fmnist.h5"
  check "fashion-mnist default names" run 0 data import --format idx "$tmp/train-images" "$tmp/train-labels.gz" \
    -o "$tmp/fmnist-plain.h5"
  check "fashion-mnist default names info" run 0 data info "$tmp/fmnist-plain.h5"
  check "fashion-mnist default names listed" contains "$tmp/out" "10: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9"
  check "idx count mismatch" run 1 data import --format idx "$tmp/train-images" "$tmp/test-labels.gz" -o "$tmp/x.h5"
  check "idx count mismatch message" contains "$tmp/err" "holds 2000 images but $tmp/test-labels.gz holds 500 labels"
  check "class names too few" run 1 data import --format idx "$tmp/test-images" "$tmp/test-labels.gz" \
    -o "$tmp/x.h5" --class-names a,b,c
  check "class names too few message" contains "$tmp/err" "is not below the 3 class names"
else
  echo "SKIP: $fmnist not installed (Debian package dataset-fashion-mnist); Fashion-MNIST import not tested"
fi

finish
