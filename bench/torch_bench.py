#!/usr/bin/env python3
"""PyTorch's side of bench/compare_torch.py: what `kelp bench MODEL --json` measures, in PyTorch, same JSON keys.

    torch_bench.py MODEL.json [--torchvision resnet18] [--batch 16] [--threads N] [--warmup 2] [--iters 10]
                   [--mode train|infer] [--layout channels_last|contiguous]
                   [--device cpu|cuda] [--amp none|bf16|fp16] [--compile]

MODEL.json is the kelp model file (`kelp model show MODEL`): its input shape sets the image size, and, without
--torchvision, the model itself runs through tests/torch/kelp_torch.py (one torch op per kelp layer: the same
network as kelp's). --torchvision NAME runs torchvision's definition instead (kelp's ResNets are torchvision's,
weight for weight). Weights are PyTorch's default initialization, inputs random: a dense fp32 step takes the same
time whatever the values.

  --mode train  images/s of a training step at --batch: forward, zero_grad, cross-entropy backward, SGD step
                (momentum 0.9), model in train() (batch statistics), as `kelp bench --mode train`
  --mode infer  images/s of a forward at --batch, then the median and p99 of a forward at batch 1, model in eval()
                under inference_mode, as `kelp bench --mode infer`

Times are medians over --iters runs after --warmup runs; p99 is the ceil(0.99 n)-th smallest, as in kelp. The
process's peak RSS (getrusage) is reported as memory.peak_rss; run one mode per process to compare peaks.

On --device cuda every timed run ends with torch.cuda.synchronize(), --amp runs the forward and loss under
torch.autocast (bf16, or fp16 with a GradScaler), --compile wraps the model in torch.compile (the warmup runs pay
its compilation), and memory.peak_device is torch.cuda.max_memory_allocated().
"""
import argparse
import json
import math
import os
import re
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model_json", help="the kelp model file (kelp model show MODEL)")
    p.add_argument("--torchvision", metavar="NAME", help="run torchvision.models.NAME instead of the model file")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=0, help="0 (the default): every core")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--mode", choices=["train", "infer"], required=True)
    p.add_argument("--layout", choices=["channels_last", "contiguous"], default="channels_last",
                   help="memory format of the model and input (channels_last: NHWC, kelp's layout)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--amp", choices=["none", "tf32", "bf16", "fp16"], default="none",
                   help="CUDA numerics: none = strict fp32 (TF32 off, unlike PyTorch's cuDNN default), tf32 = TF32 "
                        "tensor cores for convolutions and matmuls (kelp --tf32), bf16/fp16 = autocast")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    a = p.parse_args()
    for name, low in (("batch", 1), ("threads", 0), ("warmup", 0), ("iters", 1)):
        if getattr(a, name) < low:
            p.error(f"--{name} needs an integer >= {low}")
    return a


def make_model(args, spec):
    if args.torchvision:
        import torchvision

        return getattr(torchvision.models, args.torchvision)(num_classes=spec_classes(spec))
    sys.path.insert(0, str(REPO / "tests" / "torch"))
    from kelp_torch import KelpModel

    return KelpModel(spec)


def spec_classes(spec):
    """The output size of the model file's last linear node (the classes)."""
    linears = [n for n in spec["nodes"] if n["type"] == "linear"]
    return linears[-1]["out_features"] if linears else 1000


def timed(fn, warmup, iters, sync=lambda: None):
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    return {"median_ms": statistics.median(times), "p99_ms": times[math.ceil(0.99 * len(times)) - 1]}


def blas_description():
    """oneDNN, MKL and OpenBLAS versions from PyTorch's build configuration."""
    config = torch.__config__.show()
    found = []
    for pattern, label in ((r"MKL-DNN (v[\d.]+)", "oneDNN"), (r"Math Kernel Library Version ([\d.]+)", "MKL"),
                           (r"OpenBLAS ([\d.]+)", "OpenBLAS")):
        m = re.search(pattern, config)
        if m:
            found.append(f"{label} {m.group(1)}")
    return ", ".join(found) or "unknown"


def main():
    args = parse_args()
    spec = json.loads(Path(args.model_json).read_text())
    h, w, c = spec["inputs"][0]["shape"]
    threads = args.threads or os.cpu_count()
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    fmt = torch.channels_last if args.layout == "channels_last" else torch.contiguous_format
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True
        # strict fp32 unless asked: PyTorch lets cuDNN use TF32 by default, kelp only with --tf32
        torch.backends.cudnn.allow_tf32 = args.amp == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = args.amp == "tf32"
    model = make_model(args, spec).to(dev, memory_format=fmt)
    x = torch.rand(args.batch, c, h, w, device=dev).contiguous(memory_format=fmt)
    run = torch.compile(model) if args.compile else model
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp)  # tf32 is no autocast

    def autocast():
        return torch.autocast(args.device, dtype=amp_dtype, enabled=amp_dtype is not None)
    result = {
        "framework": "pytorch", "version": torch.__version__, "blas": blas_description(),
        "model": spec.get("name", Path(args.model_json).stem),
        "definition": "torchvision" if args.torchvision else "kelp_torch", "device": args.device,
        "amp": args.amp, "compile": args.compile,
        "threads": torch.get_num_threads(), "batch": args.batch,
        "input": [h, w, c], "warmup": args.warmup, "iters": args.iters, "mode": args.mode, "layout": args.layout,
        "params": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
    if args.torchvision:
        import torchvision

        result["torchvision"] = torchvision.__version__
    if args.mode == "train":
        labels = torch.randint(0, spec_classes(spec), (args.batch,), device=dev)
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        scaler = torch.amp.GradScaler(args.device, enabled=args.amp == "fp16")

        def step():
            with autocast():
                loss = F.cross_entropy(run(x), labels)
            opt.zero_grad()
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()

        t = timed(step, args.warmup, args.iters, sync)
        result["training"] = {"step_ms": t["median_ms"], "images_per_s": args.batch / (t["median_ms"] * 1e-3)}
    else:
        model.eval()
        x1 = x[:1].contiguous(memory_format=fmt)
        with torch.inference_mode(), autocast():
            t = timed(lambda: run(x), args.warmup, args.iters, sync)
            result["inference"] = {"forward_ms": t["median_ms"],
                                   "images_per_s": args.batch / (t["median_ms"] * 1e-3)}
            t = timed(lambda: run(x1), args.warmup, args.iters, sync)
            result["latency"] = {"batch": 1, "median_ms": t["median_ms"], "p99_ms": t["p99_ms"]}
    result["memory"] = {"peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    if args.device == "cuda":
        result["memory"]["peak_device"] = torch.cuda.max_memory_allocated()
        result["gpu"] = torch.cuda.get_device_name()
    json.dump(result, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
