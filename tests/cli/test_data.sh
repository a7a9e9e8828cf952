#!/usr/bin/env bash
# kelp data import | info | check | export as a user meets them: a folder of images (from tests/fixtures/images), an
# export round trip, the real Fashion-MNIST when Debian's dataset-fashion-mnist is installed, exit codes, and error
# messages that name the file. tests/fixtures/segment-8x8.h5 (two 8x8 images with masks, a test split) was
# written by kelp_dataset_create (io/dataset.h).
# Usage: test_data.sh PATH/TO/kelp
set -uo pipefail
kelp=$1
here=$(cd "$(dirname "$0")" && pwd)
fixtures=$here/../fixtures/images
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

# ---- export: the inverse of a folder import ----
# round trip: PNG folders -> import (three splits) -> export each split: the same pixels as the sources (decoded by
# png_tree.py); one export re-imported and exported again gives the same PNG files byte for byte
python3 "$here/png_tree.py" make "$tmp/rt"
check "round trip import" run 0 data import --format folder "$tmp/rt" -o "$tmp/rt.h5" --val-split 0.25 \
  --test-split 0.5 --seed 1
for split in train val test; do
  check "export $split" run 0 data export "$tmp/rt.h5" -o "$tmp/exp/$split" --split "$split"
done
check "export summary" contains "$tmp/out" "wrote 12 images of the test split of $tmp/rt.h5 to $tmp/exp/test: alpha 4, beta 4, gamma ray 4"
check "export file names" test -f "$tmp/exp/test/gamma ray/11.png" -a -f "$tmp/exp/test/alpha/00.png"
python3 "$here/png_tree.py" digest "$tmp/rt" >"$tmp/digest-src.json"
python3 "$here/png_tree.py" digest "$tmp/exp/train" "$tmp/exp/val" "$tmp/exp/test" >"$tmp/digest-exp.json"
check "exported pixels are the sources'" cmp "$tmp/digest-src.json" "$tmp/digest-exp.json"
check "re-import the export" run 0 data import --format folder "$tmp/exp/test" -o "$tmp/re.h5"
check "info of the original" run 0 data info "$tmp/rt.h5" --json
cp "$tmp/out" "$tmp/rt-info.json"
check "info of the re-import" run 0 data info "$tmp/re.h5" --json
check "same classes and counts" python3 -c "
import json, sys
a, b = json.load(open('$tmp/rt-info.json')), json.load(open('$tmp/out'))
assert a['classes'] == b['classes'] == ['alpha', 'beta', 'gamma ray'], (a['classes'], b['classes'])
assert a['splits']['test']['class_counts'] == b['splits']['train']['class_counts'], (a, b)
assert a['splits']['test']['count'] == b['splits']['train']['count'] == 12
"
check "export the re-import" run 0 data export "$tmp/re.h5" -o "$tmp/exp2" --split train
check "same PNG files after a round trip" diff -r "$tmp/exp/test" "$tmp/exp2"

# never replaces a file: one existing target and nothing is written (a removed file stays removed)
rm "$tmp/exp/test/beta/05.png"
check "export over existing files" run 1 data export "$tmp/rt.h5" -o "$tmp/exp/test"
check "existing file named" contains "$tmp/err" "$tmp/exp/test/alpha/00.png already exists"
check "nothing written" test ! -e "$tmp/exp/test/beta/05.png"
check "--class --count" run 0 data export "$tmp/rt.h5" -o "$tmp/exp3/deep" --split train --class beta --count 1
check "--class --count files" test "$(cd "$tmp/exp3/deep" && find . -type f)" = "./beta/2.png"
check "unknown class" run 1 data export "$tmp/rt.h5" -o "$tmp/exp4" --class delta
check "unknown class message" contains "$tmp/err" "$tmp/rt.h5 has no class 'delta' (its classes: alpha, beta, gamma ray)"
check "absent split" run 1 data export "$tmp/re.h5" -o "$tmp/exp4"
check "absent split message" contains "$tmp/err" "$tmp/re.h5 has no test split (it has: train)"
check "nothing created on failure" test ! -e "$tmp/exp4"
check "export of a missing file" run 1 data export "$tmp/missing.h5" -o "$tmp/exp4"
check "missing file named" contains "$tmp/err" "$tmp/missing.h5"
touch "$tmp/plain"
check "export into a file" run 1 data export "$tmp/rt.h5" -o "$tmp/plain"
check "export into a file message" contains "$tmp/err" "$tmp/plain: not a folder"
check "export of a segmentation set" run 1 data export "$here/../fixtures/segment-8x8.h5" -o "$tmp/exp4"
check "segmentation not supported yet" contains "$tmp/err" "is a segment dataset; export writes classification datasets only (segment export is not supported yet)"
check "export without -o" run 2 data export "$tmp/rt.h5"
check "export bad split" run 2 data export "$tmp/rt.h5" -o "$tmp/exp4" --split dev
check "export bad count" run 2 data export "$tmp/rt.h5" -o "$tmp/exp4" --count 0

# class names that cannot be folder names as they are: '/', '..', a leading '.', '%'
python3 "$here/png_tree.py" idx "$tmp/idx" 8 4
check "import odd names" run 0 data import --format idx "$tmp/idx/images.gz" "$tmp/idx/labels.gz" -o "$tmp/odd.h5" \
  --test-split 0.5 --class-names 'T-shirt/top,..,.hidden,50%'
check "export odd names" run 0 data export "$tmp/odd.h5" -o "$tmp/odd"
check "escaped folder names" test "$(cd "$tmp/odd" && LC_ALL=C ls | tr '\n' '|')" = "%2E.|%2Ehidden|50%25|T-shirt%2Ftop|"
check "re-import of escaped names" run 0 data import --format folder "$tmp/odd" -o "$tmp/odd-re.h5"
check "escaped names kept" contains "$tmp/out" "4 classes, 1 channel; train 4"

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
