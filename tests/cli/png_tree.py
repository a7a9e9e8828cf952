#!/usr/bin/env python3
"""Class-per-folder trees of PNG files for the export round trip of test_data.sh. Standard library only.

usage: png_tree.py make DIR            writes DIR/<class>/<name>.png: 3 classes of 8 seeded images, 5 to 19 pixels a
                                       side, RGB and gray (so the import makes them RGB)
       png_tree.py digest DIR [DIR...] prints {class: sorted sha256 of each image's pixels as RGB} over the class
                                       folders of all DIRs (gray expanded to RGB, as kelp's import does)
       png_tree.py idx DIR N CLASSES   writes DIR/images.gz and DIR/labels.gz: N 4x4 gray images, label i % CLASSES

The decoder reads what kelp and this script write: 8-bit gray or RGB, not interlaced, any of the five filters."""
import gzip
import hashlib
import json
import random
import struct
import sys
import zlib
from pathlib import Path


def chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def write_png(path, pixels, h, w, c):
    color_type = {1: 0, 3: 2}[c]
    row = w * c
    raw = b"".join(b"\x00" + pixels[y * row:(y + 1) * row] for y in range(h))
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    Path(path).write_bytes(png)


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def read_png(path):
    """(h, w, c, pixels) of an 8-bit gray or RGB PNG."""
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    pos, idat, header = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    w, h, depth, color_type, _, _, interlace = header
    assert depth == 8 and color_type in (0, 2) and interlace == 0, (path, header)
    c = 1 if color_type == 0 else 3
    raw, stride = zlib.decompress(idat), w * c
    out, prev = bytearray(), bytearray(stride)
    for y in range(h):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - c] if x >= c else 0
            b = prev[x]
            up_left = prev[x - c] if x >= c else 0
            line[x] = (line[x] + (0, a, b, (a + b) // 2, paeth(a, b, up_left))[kind]) & 255
        out += line
        prev = line
    return h, w, c, bytes(out)


def rgb_digest(path):
    h, w, c, pixels = read_png(path)
    if c == 1:
        pixels = bytes(v for v in pixels for _ in range(3))
    return hashlib.sha256(struct.pack("<II", h, w) + pixels).hexdigest()


def make(root):
    rnd = random.Random(7)
    for class_name in ["alpha", "beta", "gamma ray"]:
        folder = Path(root) / class_name
        folder.mkdir(parents=True)
        for i in range(8):
            h, w, c = rnd.randint(5, 19), rnd.randint(5, 19), 1 if i % 4 == 3 else 3
            # smooth gradients plus noise, so the encoder's filters all get used
            pixels = bytes((x * 13 + y * 7 + k * 50 + rnd.randint(0, 40)) & 255
                           for y in range(h) for x in range(w) for k in range(c))
            write_png(folder / f"{class_name} {i}.png", pixels, h, w, c)


def digest(roots):
    classes = {}
    for root in roots:
        for folder in sorted(p for p in Path(root).iterdir() if p.is_dir()):
            classes.setdefault(folder.name, []).extend(rgb_digest(f) for f in folder.glob("*.png"))
    print(json.dumps({k: sorted(v) for k, v in sorted(classes.items())}, indent=1))


def idx(root, n, classes):
    Path(root).mkdir(parents=True, exist_ok=True)
    with gzip.open(Path(root) / "images.gz", "wb") as f:
        f.write(struct.pack(">HBBIII", 0, 8, 3, n, 4, 4) + bytes((i * 16 + k) & 255 for i in range(n) for k in range(16)))
    with gzip.open(Path(root) / "labels.gz", "wb") as f:
        f.write(struct.pack(">HBBI", 0, 8, 1, n) + bytes(i % classes for i in range(n)))


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "make":
        make(sys.argv[2])
    elif command == "digest":
        digest(sys.argv[2:])
    elif command == "idx":
        idx(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        sys.exit(__doc__)
