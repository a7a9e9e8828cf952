#!/usr/bin/env python3
"""The table of bench/gpu_check.sh's bench stage: kelp against PyTorch, row by row, with the card's name.

Reads the runs' JSON files (kelp_MODEL_NUMERICS_bBATCH.json from `kelp bench --json`,
torch_MODEL_AMP[_compile]_MODE.json from bench/torch_bench.py) from RUNS, prints the table, writes every run to
OUT/gpu_bench.json and the table as a dated markdown section to OUT/gpu_benchmarks.md, and, with --docs FILE,
puts that section into FILE (docs/benchmarks.md) after the line `<!-- gpu results -->`, newest first, dropping the
line that says there are no figures yet.

Usage: gpu_table.py RUNS OUT --card "NAME, DRIVER, MEMORY" [--date YYYY-MM-DD] [--docs docs/benchmarks.md]
"""
import argparse
import datetime
import glob
import json
import os
import re
import sys

MARKER = "<!-- gpu results -->"
# what docs/benchmarks.md says until the first results arrive
NO_FIGURES = ("No GPU has been available to this project yet: the CUDA backend has not run, and this section has no "
              "figures.\n")
# kelp's numerics and the PyTorch run each is compared with
PAIRS = [("fp32", "none"), ("tf32", "tf32"), ("bf16", "bf16"), ("fp32_nographs", None)]
LABELS = {"fp32": "strict fp32", "tf32": "TF32", "bf16": "bf16 mixed", "fp32_nographs": "fp32, no CUDA graphs"}


def load_runs(folder):
    runs = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
        try:
            runs[os.path.basename(path)[:-5]] = json.load(open(path))
        except ValueError:
            print("gpu_table: %s is not JSON (a failed run): left out" % path, file=sys.stderr)
    return runs


def value(run, section, key):
    v = (run or {}).get(section, {}).get(key)
    return v if isinstance(v, (int, float)) and v > 0 else None


def cell(v, digits=0):
    return "-" if v is None else "%.*f" % (digits, v)


def ratio(a, b):
    return "-" if a is None or b is None else "%.2fx" % (a / b)


def rows(runs):
    models = sorted({m.group(1) for name in runs for m in [re.match(r"kelp_(.+?)_(fp32|tf32|bf16)", name)] if m})
    out = []
    for model in models:
        for numerics, amp in PAIRS:
            kelp = runs.get("kelp_%s_%s_b256" % (model, numerics))
            kelp1 = runs.get("kelp_%s_%s_b1" % (model, numerics))
            if not kelp and not kelp1:
                continue
            eager = {m: runs.get("torch_%s_%s_%s" % (model, amp, m)) for m in ("train", "infer")} if amp else {}
            comp = {m: runs.get("torch_%s_%s_compile_%s" % (model, amp, m)) for m in ("train", "infer")} if amp else {}
            kt, ki = value(kelp, "training", "images_per_s"), value(kelp, "inference", "images_per_s")
            tt, ti = value(eager.get("train"), "training", "images_per_s"), value(eager.get("infer"), "inference",
                                                                                    "images_per_s")
            ct, ci = value(comp.get("train"), "training", "images_per_s"), value(comp.get("infer"), "inference",
                                                                                   "images_per_s")
            out.append({"model": model, "numerics": LABELS[numerics], "kelp_train": kt, "torch_train": tt,
                        "train_ratio": ratio(kt, tt), "compile_train": ct, "kelp_infer": ki, "torch_infer": ti,
                        "infer_ratio": ratio(ki, ti), "compile_infer": ci,
                        "kelp_b1_ms": value(kelp1, "latency", "median_ms"),
                        "torch_b1_ms": value(eager.get("infer"), "latency", "median_ms")})
    return out


def markdown(table, card, date):
    head = ("| model | numerics | kelp train img/s | PyTorch eager | kelp/PyTorch | torch.compile | kelp infer img/s "
            "| PyTorch eager | kelp/PyTorch | torch.compile | kelp batch-1 ms | PyTorch batch-1 ms |")
    lines = ["#### %s: %s" % (date, card), "",
             "`bench/gpu_check.sh bench`: batch 256 (training, inference) and 1 (latency), 224x224, kelp against "
             "PyTorch eager (channels_last) in the same run.", "", head, "|" + "---|" * 12]
    for r in table:
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            r["model"], r["numerics"], cell(r["kelp_train"]), cell(r["torch_train"]), r["train_ratio"],
            cell(r["compile_train"]), cell(r["kelp_infer"]), cell(r["torch_infer"]), r["infer_ratio"],
            cell(r["compile_infer"]), cell(r["kelp_b1_ms"], 2), cell(r["torch_b1_ms"], 2)))
    return "\n".join(lines) + "\n"


def print_table(table):
    print("%-10s %-22s %10s %10s %7s %10s %10s %7s %8s" % ("model", "numerics", "kelp trn", "torch trn", "ratio",
                                                         "kelp inf", "torch inf", "ratio", "b1 ms"))
    for r in table:
        print("%-10s %-22s %10s %10s %7s %10s %10s %7s %8s" % (
            r["model"], r["numerics"], cell(r["kelp_train"]), cell(r["torch_train"]), r["train_ratio"],
            cell(r["kelp_infer"]), cell(r["torch_infer"]), r["infer_ratio"], cell(r["kelp_b1_ms"], 2)))


def into_docs(path, section):
    text = open(path).read()
    if MARKER not in text:
        raise SystemExit("gpu_table: %s has no line %s to put the results after" % (path, MARKER))
    text = text.replace(MARKER, MARKER + "\n\n" + section.rstrip("\n"), 1).replace("\n" + NO_FIGURES, "")
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs")
    p.add_argument("out")
    p.add_argument("--card", required=True)
    p.add_argument("--date", default=datetime.date.today().isoformat())
    p.add_argument("--docs")
    a = p.parse_args()
    runs = load_runs(a.runs)
    table = rows(runs)
    print_table(table)
    os.makedirs(a.out, exist_ok=True)
    json.dump(runs, open(os.path.join(a.out, "gpu_bench.json"), "w"), indent=1)
    section = markdown(table, a.card, a.date)
    open(os.path.join(a.out, "gpu_benchmarks.md"), "w").write(section)
    if a.docs:
        into_docs(a.docs, section)
    if not table:
        raise SystemExit("gpu_table: no kelp run to tabulate in %s" % a.runs)


if __name__ == "__main__":
    main()
