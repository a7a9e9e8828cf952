#!/usr/bin/env python3
"""Writes a folder of images as a new user would bring one: one subfolder per class of simple shapes (circle,
square, triangle, stripes) drawn in random colours, positions and scales on noisy backgrounds, like plankton blobs.
Seeded, so every run writes the same files. Needs PIL (Debian: python3-pil).

usage: shape_images.py OUT_DIR [PER_CLASS (75)] [SEED (1)]

Half the images are PNG, half JPEG; sides vary from 40 to 160 pixels, independently (not square); every 25th is
grayscale; some names have upper-case extensions (.JPG, .Png) and one has spaces; circle/README.txt is a stray
text file that an import must skip."""
import random
import sys
from pathlib import Path

from PIL import Image, ImageDraw

CLASSES = ["circle", "square", "stripes", "triangle"]


def bright(rnd):
    return tuple(rnd.randint(150, 255) for _ in range(3))


def background(rnd, w, h):
    """A dark random colour with grain: plankton imagery is mostly water."""
    base = Image.new("RGB", (w, h), tuple(rnd.randint(0, 90) for _ in range(3)))
    noise = Image.frombytes("RGB", (w, h), rnd.randbytes(w * h * 3))
    return Image.blend(base, noise, 0.25)


def draw_shape(draw, rnd, kind, w, h):
    size = rnd.uniform(0.45, 0.8) * min(w, h)
    x0, y0 = rnd.uniform(0, w - size), rnd.uniform(0, h - size)
    x1, y1 = x0 + size, y0 + size
    color = bright(rnd)
    if kind == "circle":
        draw.ellipse([x0, y0, x1, y1], fill=color)
    elif kind == "square":
        draw.rectangle([x0, y0, x1, y1], fill=color)
    elif kind == "triangle":
        if rnd.random() < 0.5:  # pointing up or down
            draw.polygon([(x0, y1), (x1, y1), ((x0 + x1) / 2, y0)], fill=color)
        else:
            draw.polygon([(x0, y0), (x1, y0), ((x0 + x1) / 2, y1)], fill=color)
    else:  # stripes: parallel bars, horizontal or vertical
        bars, vertical = rnd.randint(3, 4), rnd.random() < 0.5
        step = size / (2 * bars - 1)
        for b in range(bars):
            a = b * 2 * step
            if vertical:
                draw.rectangle([x0 + a, y0, x0 + a + step, y1], fill=color)
            else:
                draw.rectangle([x0, y0 + a, x1, y0 + a + step], fill=color)


def file_name(kind, i):
    if kind == "square" and i == 7:
        return f"my {kind} photo {i}"
    return f"{kind}_{i:03d}"


def extension(i):
    jpeg = i % 2 == 1
    if i % 10 in (3, 4):
        return ".JPG" if jpeg else ".Png"
    return ".jpg" if jpeg else ".png"


def main():
    out = Path(sys.argv[1])
    per_class = int(sys.argv[2]) if len(sys.argv) > 2 else 75
    rnd = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    for kind in CLASSES:
        (out / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            w, h = rnd.randint(40, 160), rnd.randint(40, 160)
            img = background(rnd, w, h)
            draw = ImageDraw.Draw(img)
            draw_shape(draw, rnd, kind, w, h)
            if i % 25 == 5:
                img = img.convert("L")
            ext = extension(i)
            path = out / kind / (file_name(kind, i) + ext)
            if ext.lower() == ".jpg":
                img.save(path, "JPEG", quality=rnd.randint(70, 95))
            else:
                img.save(path, "PNG")
    (out / "circle" / "README.txt").write_text("Shapes drawn for kelp's new-user test (tests/cli/shape_images.py).\n")


if __name__ == "__main__":
    main()
