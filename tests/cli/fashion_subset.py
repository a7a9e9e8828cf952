#!/usr/bin/env python3
"""Writes the first N images (and labels) of Fashion-MNIST's IDX files as new gzip'd IDX files, and a few of them
as PNG files, for tests that must run in seconds. Standard library only.

usage: fashion_subset.py SRC_DIR OUT_DIR N_TRAIN N_TEST N_PNG [N_FOLDER MAX_LABEL]

N_FOLDER training images with labels below MAX_LABEL also go to OUT_DIR/classes/<label>/ as PNG files (a
class-per-folder tree with fewer classes, for fine-tuning)."""
import gzip
import struct
import sys
import zlib
from pathlib import Path


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    zero, dtype, rank = struct.unpack(">HBB", data[:4])
    assert zero == 0 and dtype == 0x08, path
    dims = struct.unpack(">" + "I" * rank, data[4:4 + 4 * rank])
    return dims, data[4 + 4 * rank:]


def write_idx(path, dims, payload):
    header = struct.pack(">HBB", 0, 0x08, len(dims)) + struct.pack(">" + "I" * len(dims), *dims)
    with gzip.open(path, "wb") as f:
        f.write(header + payload)


def write_png(path, pixels, h, w):
    """8-bit grayscale PNG."""
    raw = b"".join(b"\x00" + pixels[y * w:(y + 1) * w] for y in range(h))

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    Path(path).write_bytes(png)


def subset(src, out, split, n):
    dims, images = read_idx(src / f"{split}-images-idx3-ubyte.gz")
    _, labels = read_idx(src / f"{split}-labels-idx1-ubyte.gz")
    h, w = dims[1], dims[2]
    write_idx(out / f"{split}-images.gz", (n, h, w), images[:n * h * w])
    write_idx(out / f"{split}-labels.gz", (n,), labels[:n])
    return images, labels, h, w


def main():
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    n_train, n_test, n_png = (int(x) for x in sys.argv[3:6])
    out.mkdir(parents=True, exist_ok=True)
    subset(src, out, "train", n_train)
    images, labels, h, w = subset(src, out, "t10k", n_test)
    (out / "png").mkdir(exist_ok=True)
    for i in range(n_png):
        write_png(out / "png" / f"test{i}_label{labels[i]}.png", images[i * h * w:(i + 1) * h * w], h, w)
    if len(sys.argv) > 7:
        n_folder, max_label = int(sys.argv[6]), int(sys.argv[7])
        _, train_images = read_idx(src / "train-images-idx3-ubyte.gz")
        _, train_labels = read_idx(src / "train-labels-idx1-ubyte.gz")
        for i in range(n_folder):
            if train_labels[i] < max_label:
                folder = out / "classes" / f"class{train_labels[i]}"
                folder.mkdir(parents=True, exist_ok=True)
                write_png(folder / f"{i}.png", train_images[i * h * w:(i + 1) * h * w], h, w)


if __name__ == "__main__":
    main()
