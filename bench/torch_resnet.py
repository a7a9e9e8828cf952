#!/usr/bin/env python3
"""PyTorch's side of bench_cpu_resnet: the same measurements on the CPU, printed with the same JSON keys.

    torch_resnet.py [--model resnet18] [--batch 8] [--size 224] [--threads N] [--warmup 2] [--iters 10] [--json]

Measures (a) inference forward (eval() under no_grad), (b) one training step (train(), forward, zero_grad,
cross_entropy backward on random labels) and (c) every distinct 3x3 convolution of the model alone (F.conv2d and
aten.convolution_backward for the input and the weight gradients, the op autograd calls), each as the median, min
and max over `iters` runs after `warmup` runs. Every measurement runs with contiguous NCHW tensors and with
channels_last; the faster of the two is reported as PyTorch's time (its "layout" key says which).
"""
import argparse
import json
import os
import re
import statistics
import sys
import time

import torch
import torch.nn.functional as F
import torchvision

LAYOUTS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}
PARTS = ("forward", "backward_data", "backward_filter")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="resnet18", choices=["resnet18", "resnet34", "resnet50"])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--threads", type=int, default=0, help="0 (the default) uses every core")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    for name, low in (("batch", 1), ("size", 1), ("threads", 0), ("warmup", 0), ("iters", 1)):
        if getattr(a, name) < low:
            p.error(f"--{name} needs an integer >= {low}")
    return a


def measure(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times)}


def fastest(by_layout):
    """The layout with the lowest median, its timing tagged with the layout's name."""
    layout = min(by_layout, key=lambda name: by_layout[name]["median_ms"])
    return dict(by_layout[layout], layout=layout)


def make_model(args, memory_format):
    torch.manual_seed(1)
    return getattr(torchvision.models, args.model)(num_classes=1000).to(memory_format=memory_format)


def bench_inference(args, x):
    by_layout = {}
    for name, fmt in LAYOUTS.items():
        model = make_model(args, fmt).eval()
        xf = x.contiguous(memory_format=fmt)
        with torch.no_grad():
            by_layout[name] = measure(lambda: model(xf), args.warmup, args.iters)
    return fastest(by_layout)


def bench_training(args, x, labels):
    by_layout = {}
    for name, fmt in LAYOUTS.items():
        model = make_model(args, fmt).train()
        xf = x.contiguous(memory_format=fmt)

        def step():
            loss = F.cross_entropy(model(xf), labels)
            model.zero_grad()
            loss.backward()

        by_layout[name] = measure(step, args.warmup, args.iters)
    return fastest(by_layout)


def conv3x3_shapes(args, x):
    """The distinct 3x3 convolutions of one forward pass, in order of first use, with their counts."""
    shapes = {}
    model = make_model(args, torch.contiguous_format).eval()

    def record(module, inputs, output):
        n, c, h, w = inputs[0].shape
        name = f"{h}x{w}x{c}->{module.out_channels}/s{module.stride[0]}"
        key = (name, n, module.padding, module.dilation, module.groups, tuple(output.shape))
        if key not in shapes:
            shapes[key] = {"name": name, "n": n, "h": h, "w": w, "c": c, "k": module.out_channels,
                           "stride": module.stride[0], "padding": module.padding[0], "groups": module.groups,
                           "count": 0, "module": module, "oh": output.shape[2], "ow": output.shape[3]}
        shapes[key]["count"] += 1

    hooks = [m.register_forward_hook(record) for m in model.modules()
             if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return list(shapes.values())


def bench_conv(args, s):
    m = s.pop("module")
    oh, ow = s.pop("oh"), s.pop("ow")
    flops = 2.0 * s["n"] * oh * ow * s["k"] * (s["c"] // s["groups"]) * 9
    s["gflop"] = flops * 1e-9
    parts = {part: {} for part in PARTS}
    torch.manual_seed(3)
    for name, fmt in LAYOUTS.items():
        x = torch.rand(s["n"], s["c"], s["h"], s["w"]).contiguous(memory_format=fmt)
        w = torch.rand(s["k"], s["c"] // s["groups"], 3, 3).contiguous(memory_format=fmt)
        dy = torch.rand(s["n"], s["k"], oh, ow).contiguous(memory_format=fmt)
        conv = (m.stride, m.padding, m.dilation, False, [0, 0], m.groups)

        def forward():
            F.conv2d(x, w, None, m.stride, m.padding, m.dilation, m.groups)

        def backward_data():
            torch.ops.aten.convolution_backward(dy, x, w, None, *conv, [True, False, False])

        def backward_filter():
            torch.ops.aten.convolution_backward(dy, x, w, None, *conv, [False, True, False])

        with torch.no_grad():
            for part, fn in zip(PARTS, (forward, backward_data, backward_filter)):
                parts[part][name] = measure(fn, args.warmup, args.iters)
    for part, by_layout in parts.items():
        t = fastest(by_layout)
        t["gflops"] = flops / (t["median_ms"] * 1e6)
        s[part] = t
    return s


def conv_totals(convs):
    """The 3x3 convolutions of one pass of the model: each shape's median times its count."""
    flop = sum(s["count"] * s["gflop"] for s in convs)
    totals = {"gflop": flop}
    for part in PARTS:
        ms = sum(s["count"] * s[part]["median_ms"] for s in convs)
        totals[part] = {"ms": ms, "gflops": flop / ms * 1e3}
    return totals


def blas_description():
    """oneDNN and BLAS versions from PyTorch's build configuration."""
    found = []
    for pattern, label in ((r"MKL-DNN (v[\d.]+)", "oneDNN"), (r"Math Kernel Library Version ([\d.]+)", "MKL"),
                           (r"OpenBLAS ([\d.]+)", "OpenBLAS")):
        m = re.search(pattern, torch.__config__.show())
        if m:
            found.append(f"{label} {m.group(1)}")
    return ", ".join(found) or "unknown"


def with_images_per_s(timing, batch):
    return dict(timing, images_per_s=batch / (timing["median_ms"] * 1e-3))


def print_table(r):
    print(f"PyTorch {r['version']} on the CPU ({r['blas']}), {r['model']}, batch {r['batch']}, "
          f"{r['size']}x{r['size']}, {r['threads']} threads, {r['warmup']} warmup + {r['iters']} timed runs\n")
    print(f"{'measurement':<28} {'median ms':>10} {'min ms':>10} {'max ms':>10} {'images/s':>10}  layout")
    for label, key in (("inference forward", "inference"), ("training step (fwd+bwd)", "training")):
        t = r[key]
        print(f"{label:<28} {t['median_ms']:10.2f} {t['min_ms']:10.2f} {t['max_ms']:10.2f} "
              f"{t['images_per_s']:10.1f}  {t['layout']}")
    print("\n3x3 convolutions alone (median ms and GFLOP/s; GFLOP = 2*N*OH*OW*K*(C/G)*R*S)")
    print(f"{'shape HxWxC->K/stride':<22} {'count':>5} {'GFLOP':>8} {'fwd ms':>10} {'GFLOP/s':>8} "
          f"{'bwd-data':>10} {'GFLOP/s':>8} {'bwd-filt':>10} {'GFLOP/s':>8}")
    for s in r["conv3x3"]:
        cells = " ".join(f"{s[p]['median_ms']:10.2f} {s[p]['gflops']:8.1f}" for p in PARTS)
        print(f"{s['name']:<22} {s['count']:5d} {s['gflop']:8.2f} {cells}")
    t = r["conv3x3_total"]
    cells = " ".join(f"{t[p]['ms']:10.2f} {t[p]['gflops']:8.1f}" for p in PARTS)
    print(f"{'3x3 total (x count)':<22} {'':5} {t['gflop']:8.2f} {cells}")


def main():
    args = parse_args()
    threads = args.threads or os.cpu_count()
    torch.set_num_threads(threads)
    torch.manual_seed(2)
    x = torch.rand(args.batch, 3, args.size, args.size)
    labels = torch.randint(0, 1000, (args.batch,))
    inference = with_images_per_s(bench_inference(args, x), args.batch)
    training = with_images_per_s(bench_training(args, x, labels), args.batch)
    convs = [bench_conv(args, s) for s in conv3x3_shapes(args, x)]
    r = {
        "framework": "pytorch",
        "version": torch.__version__,
        "blas": blas_description(),
        "model": args.model,
        "batch": args.batch,
        "size": args.size,
        "threads": torch.get_num_threads(),
        "warmup": args.warmup,
        "iters": args.iters,
        "inference": inference,
        "training": training,
        "conv3x3": convs,
        "conv3x3_total": conv_totals(convs),
    }
    if args.json:
        json.dump(r, sys.stdout, indent=2)
        print()
    else:
        print_table(r)


if __name__ == "__main__":
    main()
