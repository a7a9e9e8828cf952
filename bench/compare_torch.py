#!/usr/bin/env python3
"""kelp and PyTorch side by side on the CPU: the same models, batch, precision (fp32) and thread count, in one run.

    bench/compare_torch.py [--install-torch] [--models resnet18,resnet50,small_resnet] [--rounds 3]
                           [--batch 16] [--threads N] [--warmup 2] [--iters 10] [--write-docs]

For every model and round it runs, each in a process of its own, `kelp bench MODEL --mode train --json` and
bench/torch_bench.py in train mode, then both in infer mode; rounds alternate which framework goes first. It prints
a markdown table of the medians over the rounds: training images/s at --batch, inference images/s at --batch and
at batch 1, batch-1 latency (median, p99), and each process's peak RSS, with the kelp/PyTorch ratios, the machine,
the versions and the command. --write-docs adds the table to docs/benchmarks.md (above the marker line) and draws
the ratios as docs/bench-cpu.svg.

PyTorch comes from --python, else .venv-bench/bin/python when it exists, else python3. --install-torch first creates
.venv-bench and installs torch and torchvision there with pip (PyTorch's CPU-only index, or PyPI when that index
cannot be reached). --kelp-only measures kelp alone (no PyTorch needed). kelp is --kelp BINARY, else a Release build
configured in --build-dir (build-bench: CPU only, no tests) and built when needed. On a shared machine,
--wait-idle S makes each run wait until other processes have left the CPUs idle for S seconds; the notes say how
much of the CPUs others used during the runs either way. docs/benchmarks.md explains every figure.
"""
import argparse
import datetime
import json
import math
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path
from xml.sax.saxutils import escape

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs" / "benchmarks.md"
SVG = REPO / "docs" / "bench-cpu.svg"
MARKER = "<!-- bench/compare_torch.py --write-docs adds its results above this line -->"
VENV = REPO / ".venv-bench"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
TORCHVISION_MODELS = {"resnet18", "resnet34", "resnet50"}

# (key, label, unit, higher is better, value from a kelp-bench-shaped result)
MEASURES = [
    ("train", "training, batch {b}", "images/s", True, lambda r: r["training"]["images_per_s"]),
    ("infer", "inference, batch {b}", "images/s", True, lambda r: r["inference"]["images_per_s"]),
    ("infer1", "inference, batch 1", "images/s", True, lambda r: 1e3 / r["latency"]["median_ms"]),
    ("lat", "latency, batch 1, median", "ms", False, lambda r: r["latency"]["median_ms"]),
    ("p99", "latency, batch 1, p99", "ms", False, lambda r: r["latency"]["p99_ms"]),
    ("rss_train", "peak RSS, training process", "MiB", False, lambda r: r["memory"]["peak_rss"] / 2**20),
    ("rss_infer", "peak RSS, inference process", "MiB", False, lambda r: r["memory"]["peak_rss"] / 2**20),
]
MODE_OF = {"train": "train", "infer": "infer", "infer1": "infer", "lat": "infer", "p99": "infer",
           "rss_train": "train", "rss_infer": "infer"}


def say(*parts):
    print("compare_torch:", *parts, file=sys.stderr, flush=True)


def die(message, status=1):
    say(message)
    sys.exit(status)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__[
                                    __doc__.index("For every"):])
    p.add_argument("--models", default="resnet18,resnet50,small_resnet", help="zoo models, comma-separated")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=0, help="0 (the default): every core (nproc)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--kelp", help="the kelp binary (default: build it in --build-dir)")
    p.add_argument("--build-dir", default=str(REPO / "build-bench"))
    p.add_argument("--python", help="a python that imports torch and torchvision")
    p.add_argument("--install-torch", action="store_true", help=f"pip install torch torchvision into {VENV.name}")
    p.add_argument("--kelp-only", action="store_true", help="measure kelp alone")
    p.add_argument("--torch-layout", choices=["channels_last", "contiguous"], default="channels_last")
    p.add_argument("--write-docs", action="store_true", help="add the table to docs/benchmarks.md, draw the SVG")
    p.add_argument("--svg", default=str(SVG), help="where --write-docs draws the chart")
    p.add_argument("--out", help="keep every run's JSON in this folder")
    p.add_argument("--wait-idle", type=float, default=0, metavar="S",
                   help="before each run, wait until other processes left the CPUs idle for S seconds")
    a = p.parse_args()
    for name, low in (("rounds", 1), ("batch", 1), ("threads", 0), ("warmup", 0), ("iters", 1)):
        if getattr(a, name) < low:
            p.error(f"--{name} needs an integer >= {low}")
    if a.kelp_only and (a.install_torch or a.write_docs):
        p.error("--kelp-only measures no PyTorch: it cannot take --install-torch or --write-docs")
    a.models = [m for m in a.models.split(",") if m]
    a.threads = a.threads or os.cpu_count()
    return a


# ---- the two frameworks ----

def kelp_binary(args):
    if args.kelp:
        return str(Path(args.kelp).resolve())
    build = Path(args.build_dir)
    cache = build / "CMakeCache.txt"
    if cache.exists():
        build_type = next((line.split("=", 1)[1].strip() for line in cache.read_text().splitlines()
                           if line.startswith("CMAKE_BUILD_TYPE:")), "")
        if build_type != "Release":
            die(f"{build} is a '{build_type}' build; benchmarks need Release (pick another --build-dir)")
    else:
        say(f"configuring a Release build (CPU only) in {build}")
        subprocess.run(["cmake", "-S", str(REPO), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release", "-DKELP_CUDA=OFF",
                        "-DKELP_BUILD_TESTS=OFF"], check=True, stdout=sys.stderr)
    subprocess.run(["cmake", "--build", str(build), "--target", "kelp", "-j", str(os.cpu_count())], check=True,
                   stdout=sys.stderr)
    return str((build / "kelp").resolve())


def install_torch():
    if not (VENV / "bin" / "python").exists():
        say(f"creating {VENV}")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "torch", "torchvision"]
    try:
        urllib.request.urlopen(CPU_INDEX + "/torch/", timeout=15).close()
        say(f"installing torch and torchvision from {CPU_INDEX}")
        if subprocess.run(pip + ["--index-url", CPU_INDEX], stdout=sys.stderr).returncode == 0:
            return
        say(f"installing from {CPU_INDEX} failed: trying PyPI")
    except OSError as e:
        say(f"{CPU_INDEX} cannot be reached ({e}): installing from PyPI (a larger download: its wheels carry CUDA)")
    subprocess.run(pip, check=True, stdout=sys.stderr)


def torch_python(args):
    if args.python:
        return args.python
    venv_python = VENV / "bin" / "python"
    return str(venv_python) if venv_python.exists() else "python3"


def cpu_seconds():
    """(busy, wall) seconds of all CPUs together so far, from /proc/stat; None where it does not exist."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    hz = os.sysconf("SC_CLK_TCK")
    busy = user + nice + system + irq + softirq + steal
    return busy / hz, (busy + idle + iowait) / hz


def others_share(before, after, own_seconds):
    """The share of all CPUs that other processes used between two cpu_seconds() samples."""
    if before is None or after is None or after[1] <= before[1]:
        return 0.0
    return max(0.0, (after[0] - before[0] - own_seconds) / (after[1] - before[1]))


def wait_idle(seconds, limit=1800):
    """Waits until other processes used under 10% of the CPUs for `seconds` in a row (at most `limit` s)."""
    if seconds <= 0 or cpu_seconds() is None:
        return
    waited = 0.0
    while waited < limit:
        before = cpu_seconds()
        time.sleep(seconds)
        waited += seconds
        if others_share(before, cpu_seconds(), 0.0) < 0.10:
            return
        if waited % 60 < seconds:
            say(f"waiting for the CPUs to be idle for {seconds:g} s ({waited:.0f} s so far)")
    say(f"the CPUs were not idle within {limit} s: measuring anyway")


def run_measured(cmd, idle_seconds):
    """Runs cmd; returns its stdout parsed as JSON, with the process's peak RSS over its whole life, exit included
    (wait4's ru_maxrss), as 'rss_at_exit' and the share of the CPUs other processes used meanwhile as 'others_cpu'."""
    wait_idle(idle_seconds)
    with tempfile.TemporaryFile() as err:
        before = cpu_seconds()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
        out = proc.stdout.read()
        proc.stdout.close()
        _, status, usage = os.wait4(proc.pid, 0)
        after = cpu_seconds()
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            die(f"{shlex.join(cmd)} exited with {proc.returncode}:\n{err.read().decode(errors='replace')}")
    result = json.loads(out)
    result["rss_at_exit"] = usage.ru_maxrss * 1024  # Linux: KiB
    result["others_cpu"] = others_share(before, after, usage.ru_utime + usage.ru_stime)
    return result


def commands(args, kelp, python, model, model_json, mode):
    common = ["--batch", str(args.batch), "--threads", str(args.threads), "--warmup", str(args.warmup),
              "--iters", str(args.iters), "--mode", mode]
    k = [kelp, "bench", model, *common, "--json"]
    t = [python, str(REPO / "bench" / "torch_bench.py"), str(model_json), *common, "--layout", args.torch_layout]
    if model in TORCHVISION_MODELS:
        t += ["--torchvision", model]
    return k, t


# ---- the table ----

def median_of(runs, key, fn):
    return statistics.median(fn(r) for r in runs[MODE_OF[key]])


def ratio(key, higher_better, kelp_value, torch_value):
    """Above 1: kelp is better (faster, or smaller for memory)."""
    return kelp_value / torch_value if higher_better else torch_value / kelp_value


def spread(runs):
    """The largest (max - min) / median over the rounds of any timed figure, in percent."""
    worst = 0.0
    for key, _, unit, _, fn in MEASURES:
        values = [fn(r) for r in runs[MODE_OF[key]]]
        if unit != "MiB" and len(values) > 1:
            worst = max(worst, (max(values) - min(values)) / statistics.median(values))
    return 100 * worst


def table(args, results, with_torch):
    lines = []
    if with_torch:
        lines += ["| model | measurement | kelp | PyTorch | kelp vs PyTorch |", "|---|---|---:|---:|---:|"]
    else:
        lines += ["| model | measurement | kelp |", "|---|---|---:|"]
    ratios = []
    for model, r in results.items():
        k_runs = r["kelp"]
        h, w, c = k_runs["train"][0]["input"]
        name = f"{model} {h}x{w}x{c}"
        for key, label, unit, higher_better, fn in MEASURES:
            kv = median_of(k_runs, key, fn)
            digits = 1 if unit != "ms" or kv >= 10 else 2
            cells = [name, label.format(b=args.batch), f"{kv:.{digits}f} {unit}"]
            if with_torch:
                tv = median_of(r["torch"], key, fn)
                q = ratio(key, higher_better, kv, tv)
                ratios.append((model, label.format(b=args.batch), unit, q))
                cells += [f"{tv:.{digits}f} {unit}", f"**{q:.2f}x**" if q < 0.8 else f"{q:.2f}x"]
            lines.append("| " + " | ".join(cells) + " |")
            name = ""
    return lines, ratios


def describe(args, kelp, python, results, with_torch, command):
    first = next(iter(results.values()))
    k0 = first["kelp"]["train"][0]
    cpu = next((line.split(":", 1)[1].strip() for line in
                subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
                if line.startswith("Model name:")), "unknown CPU")
    info = subprocess.run([kelp, "info"], capture_output=True, text=True).stdout
    blas = next((line.split("BLAS:", 1)[1].strip() for line in info.splitlines() if "BLAS:" in line), "unknown BLAS")
    version = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("kelp:")), "?")
    commit = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True,
                            text=True).stdout.strip() or "unknown commit"
    notes = [f"- Date: {datetime.date.today().isoformat()}",
             f"- Machine: {cpu}, {os.cpu_count()} cores (lscpu, nproc); {k0['threads']} threads for both frameworks",
             f"- kelp {version} ({commit}), {blas}"]
    if with_torch:
        t0 = first["torch"]["train"][0]
        tv = next((r["torch"]["train"][0].get("torchvision") for r in results.values()
                   if "torchvision" in r["torch"]["train"][0]), None)
        notes.append(f"- PyTorch {t0['version']} ({t0['blas']})" + (f", torchvision {tv}" if tv else "") +
                     f", {t0['layout']} tensors, eager mode")
    others = [run["others_cpu"] for r in results.values() for f in r.values() for runs in f.values() for run in runs]
    if others:
        notes.append(f"- Other processes used {100 * statistics.median(others):.0f}% (median) and "
                     f"{100 * max(others):.0f}% (most) of the CPUs during the runs (/proc/stat)" +
                     (f"; each run waited for {args.wait_idle:g} s of idle CPUs first" if args.wait_idle else ""))
    policy = os.environ.get("OMP_WAIT_POLICY")
    notes.append(f"- OMP_WAIT_POLICY: {policy or 'unset'}; largest spread between rounds of a timed figure: " +
                 ", ".join(f"{m} {spread(r['kelp']):.0f}% (kelp)" +
                           (f" / {spread(r['torch']):.0f}% (PyTorch)" if with_torch else "")
                           for m, r in results.items()))
    notes.append(f"- Command: `{command}`")
    return notes


METHOD = ("Each figure is the median over {rounds} rounds of a run's median over {iters} timed runs after {warmup} "
          "warmup runs; the rounds alternate which framework runs first, and every measurement is a process of its "
          "own (training at batch {batch}; inference at batch {batch}, then batch 1 on the same model). Inference "
          "at batch 1 is 1000 / the median latency. Peak RSS is the process's maximum resident memory when its "
          "measurements end (getrusage in the process: libraries and interpreter included, Python's exit not). "
          "\"kelp vs PyTorch\": above 1 kelp is faster, or "
          "smaller for memory (PyTorch's figure / kelp's for times and memory, kelp's / PyTorch's for images/s); "
          "bold: below 0.8. Random weights and inputs on both sides: a dense fp32 step takes the same time whatever "
          "the values. ResNets are torchvision's definitions in PyTorch, other models kelp's model file run by "
          "tests/torch/kelp_torch.py; the trainable parameter counts of both sides are checked to be equal.")


def wrap(text, indent=""):
    """A paragraph or list item at docs/benchmarks.md's line width."""
    return textwrap.fill(text, width=118, subsequent_indent=indent, break_on_hyphens=False, break_long_words=False)


# ---- the chart ----

def svg_chart(ratios, title):
    """Horizontal bars of the ratios on a log scale, from 1 to the ratio, one group per model; lines at 0.8 and 1."""
    bar, gap, left, width, top = 16, 10, 330, 420, 46
    lo = min(0.5, min(q for *_, q in ratios) / 1.15)
    hi = max(2.0, max(q for *_, q in ratios) * 1.15)
    x_of = lambda v: left + width * (math.log(v) - math.log(lo)) / (math.log(hi) - math.log(lo))  # noqa: E731
    rows, y, last_model = [], top, None
    for model, label, unit, q in ratios:
        if model != last_model:
            y += gap
            rows.append(f'<text x="8" y="{y + 12}" font-weight="bold">{escape(model)}</text>')
            y += bar + 2
            last_model = model
        color = "#2a9d8f" if q >= 1 else "#e9c46a" if q >= 0.8 else "#e76f51"
        what = label + (" (PyTorch/kelp)" if unit in ("ms", "MiB") else "")
        x0, x1 = sorted((x_of(1.0), x_of(q)))
        rows.append(f'<text x="{left - 8}" y="{y + 12}" text-anchor="end">{escape(what)}</text>')
        rows.append(f'<rect x="{x0:.1f}" y="{y}" width="{max(x1 - x0, 1):.1f}" height="{bar - 3}" fill="{color}"/>')
        rows.append(f'<text x="{x1 + 4:.1f}" y="{y + 12}">{q:.2f}x</text>')
        y += bar
    ticks = [0.8] + [2.0 ** e for e in range(math.floor(math.log2(lo)), math.ceil(math.log2(hi)) + 1)]
    axis = []
    for v in (t for t in ticks if lo <= t <= hi):
        style = ('stroke="#555" stroke-dasharray="4 3"' if v == 0.8 else 'stroke="#555" stroke-width="2"' if v == 1
                 else 'stroke="#ccc"')
        axis.append(f'<line x1="{x_of(v):.1f}" y1="{top}" x2="{x_of(v):.1f}" y2="{y + 4}" {style}/>')
        axis.append(f'<text x="{x_of(v):.1f}" y="{y + 20}" text-anchor="middle">{v:g}</text>')
    return "\n".join([
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 60}" height="{y + 40}" '
        f'font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="8" y="20" font-size="14" font-weight="bold">{escape(title)}</text>',
        '<text x="8" y="36">kelp relative to PyTorch, log scale: right of 1 kelp is faster or smaller; '
        'dashed: 0.8</text>',
        *axis, *rows, "</svg>", ""])


def write_docs(block, ratios, svg_path, title):
    Path(svg_path).write_text(svg_chart(ratios, title))
    text = DOCS.read_text()
    if MARKER not in text:
        die(f"{DOCS} has no marker line '{MARKER}': add it where results should go")
    DOCS.write_text(text.replace(MARKER, block + "\n" + MARKER))
    say(f"added the table to {DOCS} and drew {svg_path}")


# ---- main ----

def main():
    args = parse_args()
    command = shlex.join(["bench/compare_torch.py", *sys.argv[1:]])
    if args.install_torch:
        install_torch()
    python = torch_python(args)
    with_torch = not args.kelp_only
    if with_torch and subprocess.run([python, "-c", "import torch, torchvision"], capture_output=True).returncode:
        die(f"'{python}' cannot import torch and torchvision: run with --install-torch (a venv in {VENV.name}), "
            "--python PATH, or --kelp-only", 2)
    kelp = kelp_binary(args)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="compare_torch."))
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    try:
        for model in args.models:
            model_json = out / f"{model}.json"
            shown = subprocess.run([kelp, "model", "show", model], capture_output=True, text=True)
            if shown.returncode:
                die(f"kelp model show {model}: {shown.stderr.strip()}", 2)
            model_json.write_text(shown.stdout)
            results[model] = {"kelp": {"train": [], "infer": []}, "torch": {"train": [], "infer": []}}
        for round_ in range(1, args.rounds + 1):
            for model in args.models:
                for mode in ("train", "infer"):
                    k_cmd, t_cmd = commands(args, kelp, python, model, out / f"{model}.json", mode)
                    order = [("kelp", k_cmd), ("torch", t_cmd)] if with_torch else [("kelp", k_cmd)]
                    if round_ % 2 == 0:
                        order.reverse()
                    for framework, cmd in order:
                        say(f"round {round_}/{args.rounds}: {model} {mode}: {framework}")
                        r = run_measured(cmd, args.wait_idle)
                        (out / f"{model}.{mode}.{framework}.{round_}.json").write_text(json.dumps(r, indent=1))
                        results[model][framework][mode].append(r)
            if round_ == 1 and with_torch:
                for model, r in results.items():
                    k_params = r["kelp"]["train"][0]["memory"]["training"]["params"] // 4
                    t_params = r["torch"]["train"][0]["params"]
                    if k_params != t_params:
                        die(f"{model}: kelp has {k_params} trainable parameters, the PyTorch model {t_params}: "
                            "not the same network")
    finally:
        if not args.out:
            shutil.rmtree(out, ignore_errors=True)
    lines, ratios = table(args, results, with_torch)
    method = METHOD.format(rounds=args.rounds, iters=args.iters, warmup=args.warmup, batch=args.batch)
    title = f"kelp and PyTorch on the CPU, fp32, {args.threads} threads"
    notes = [wrap(n, "  ") if not n.startswith("- Command:") else n
             for n in describe(args, kelp, python, results, with_torch, command)]
    block = "\n".join([f"#### {datetime.date.today().isoformat()}: {title}", "", *lines, "", wrap(method), "",
                       *notes, ""])
    print(block)
    if args.write_docs:
        write_docs(block, ratios, args.svg, title)


if __name__ == "__main__":
    main()
