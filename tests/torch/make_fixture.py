#!/usr/bin/env python3
"""Fixtures that check kelp against PyTorch (see README.md beside this file).

  make_fixture.py [--regenerate]           rewrite tests/fixtures/every_layer.{weights,expected}.safetensors
  make_fixture.py --verify                 regenerate in memory and compare with the committed fixture
  make_fixture.py --check MODEL BUILD_DIR  a fixture for a kelp JSON model, checked by BUILD_DIR/test_torch_fixture
  make_fixture.py --check-resnet18 BUILD_DIR
                                           torchvision's resnet18, batch 2 at 224x224, checked the same way
  make_fixture.py --check-mobilenet_v2 BUILD_DIR
                                           torchvision's mobilenet_v2, the same way
"""
import argparse
import copy
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import safetensors.numpy
import safetensors.torch
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kelp_torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
EVERY_LAYER = FIXTURES / "every_layer.json"
WEIGHTS = FIXTURES / "every_layer.weights.safetensors"
EXPECTED = FIXTURES / "every_layer.expected.safetensors"

# The context seed drives kelp's dropout; above 2^63 so that the C side's parsing of the metadata is exercised.
CTX_SEED = 12345678901234567890
DATA_SEED = 2024
BATCH = 4
# kelp's tolerance (tests/unit/test_torch_fixture.c): max|kelp - torch| <= TOLERANCE * max(1, max|torch|) per tensor.
TOLERANCE = 1e-4
# Regenerating on another machine or torch version rounds the float64 reference to float32 differently in the last
# bit at most; a stale fixture (another model, seed or layer semantics) differs far more.
VERIFY_TOLERANCE = 1e-6


def make_fixture(model_path, ctx_seed=CTX_SEED, data_seed=DATA_SEED, batch=BATCH):
    """(weights, expected, metadata, torch float32 errors) for one training step of a kelp JSON model with random
    everything."""
    model = json.loads(Path(model_path).read_text())
    rng = np.random.default_rng(data_seed)
    module = kelp_torch.KelpModel(model, ctx_seed)
    kelp_torch.randomize_parameters(module, rng)
    spec = model["inputs"][0]
    image = rng.uniform(-1.0, 1.0, [batch] + list(spec["shape"])).astype(np.float32)
    classes, *pixels = module.output_shape
    labels = rng.integers(0, classes, [batch] + pixels).astype(np.int32)
    weights, expected, baseline = reference_step(module, module.loss_fn(), image, labels, spec["name"])
    meta = {"seed": str(ctx_seed), "model": Path(model_path).name, "reference": f"torch {torch.__version__} float64"}
    return weights, expected, meta, baseline


def reference_step(module, loss_fn, image, labels, input_name="image", train=True):
    """The float32 weights, the float64 step's expected tensors, and torch's own float32 error on each of them:
    the floor that float32 arithmetic sets for kelp on this problem."""
    weights = kelp_torch.float32_state(module)
    module32 = copy.deepcopy(module)
    expected = kelp_torch.training_step(module, loss_fn, image, labels, input_name, train=train)
    torch32 = kelp_torch.training_step(module32, loss_fn, image, labels, input_name, dtype=torch.float32,
                                       train=train)
    return weights, expected, {name: max_error(torch32[name], expected[name]) for name in expected}


def save(weights, expected, meta, weights_path, expected_path):
    safetensors.torch.save_file(weights, str(weights_path), metadata={"format": "pt"})
    safetensors.numpy.save_file(expected, str(expected_path), metadata=meta)


def max_error(got, want):
    """kelp's per-tensor criterion: max|got - want| / max(1, max|want|); NaN anywhere is infinite."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return np.inf
    if want.size == 0:
        return 0.0
    diff = np.abs(got - want)
    if np.isnan(diff).any():
        return np.inf
    return float(diff.max() / max(1.0, float(np.abs(want).max())))


def compare(label, got, want, tolerance):
    """Prints and returns the names that differ (missing, extra, or over tolerance)."""
    bad = sorted(set(got) ^ set(want))
    for name in sorted(set(got) & set(want)):
        err = max_error(got[name], want[name])
        if err > tolerance:
            print(f"{label}: {name}: error {err:.3g} > {tolerance:g}")
            bad.append(name)
    for name in sorted(set(got) ^ set(want)):
        print(f"{label}: {name} is only in one of the two")
    return bad


def regenerate():
    weights, expected, meta, _ = make_fixture(EVERY_LAYER)
    save(weights, expected, meta, WEIGHTS, EXPECTED)
    print(f"wrote {WEIGHTS.relative_to(ROOT)} ({WEIGHTS.stat().st_size} bytes) and "
          f"{EXPECTED.relative_to(ROOT)} ({EXPECTED.stat().st_size} bytes)")
    return 0


def verify():
    weights, expected, meta, _ = make_fixture(EVERY_LAYER)
    committed_weights = safetensors.numpy.load_file(str(WEIGHTS))
    with safetensors.safe_open(str(EXPECTED), framework="numpy") as f:
        committed_meta = f.metadata() or {}
    bad = compare("weights", committed_weights, {k: v.numpy() for k, v in weights.items()}, 0.0)
    bad += compare("expected", safetensors.numpy.load_file(str(EXPECTED)), expected, VERIFY_TOLERANCE)
    if committed_meta.get("seed") != meta["seed"]:
        print(f"expected: metadata seed {committed_meta.get('seed')!r}, regenerated {meta['seed']!r}")
        bad.append("seed")
    if bad:
        print("the committed fixture is stale: run tests/torch/make_fixture.py --regenerate")
        return 1
    print(f"the committed fixture matches {meta['reference']}")
    return 0


def run_c_check(build_dir, model, weights, expected, meta, baseline):
    """Writes the fixture to a temp dir, has the C test compare kelp with it, and sets kelp's errors beside torch's
    own float32 errors."""
    with tempfile.TemporaryDirectory() as tmp:
        weights_path, expected_path = Path(tmp) / "weights.safetensors", Path(tmp) / "expected.safetensors"
        save(weights, expected, meta, weights_path, expected_path)
        cmd = [str(Path(build_dir) / "test_torch_fixture"), str(model), str(weights_path), str(expected_path)]
        print("+", " ".join(cmd), flush=True)
        run = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print(run.stdout, end="")
    kelp = {m[1]: float(m[2]) for m in re.finditer(r"^\s+(\S+)\s+error (\S+)", run.stdout, re.MULTILINE)}
    summarize(kelp, baseline)
    return run.returncode, kelp


def summarize(kelp, baseline):
    """kelp's per-tensor errors (as the C test printed them) beside torch float32's on the same tensors."""
    if not kelp:
        return
    over = sorted((name for name in kelp if kelp[name] > TOLERANCE), key=lambda n: -kelp[n])
    torch_over = [name for name in kelp if baseline[name] > TOLERANCE]
    print(f"over the tolerance {TOLERANCE:g}: kelp {len(over)} of {len(kelp)} float tensors; "
          f"torch float32 (against the float64 reference) {len(torch_over)}")
    for name in over:
        print(f"  {name:40s} kelp {kelp[name]:.3g}   torch float32 {baseline[name]:.3g}")
    kelp_worst, torch_worst = max(kelp, key=kelp.get), max(kelp, key=baseline.get)
    print(f"worst error: kelp {kelp[kelp_worst]:.3g} ({kelp_worst}), "
          f"torch float32 {baseline[torch_worst]:.3g} ({torch_worst})")


def check_model(model_path, build_dir):
    weights, expected, meta, baseline = make_fixture(model_path)
    return run_c_check(build_dir, Path(model_path).resolve(), weights, expected, meta, baseline)[0]


def perturb_batch_norms(module, generator):
    """torchvision initializes batch norm to the identity (weight 1, bias 0, mean 0, var 1), which would hide
    mistakes in the affine part and the running statistics."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=generator)
                m.bias.uniform_(-0.5, 0.5, generator=generator)
                m.running_mean.uniform_(-0.5, 0.5, generator=generator)
                m.running_var.uniform_(0.5, 2.0, generator=generator)
                m.num_batches_tracked.fill_(3)


def calibrate_batch_norms(module, image_nhwc):
    """Sets the running statistics to the batch's own (a forward in training mode), keeping the perturbed affine
    parameters, so that an eval-mode step carries a signal of normal size through the whole network."""
    norms = [m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in norms:
            bn.momentum = None  # a cumulative average: after one batch, exactly its statistics
            bn.reset_running_stats()
        module.train()
        module(torch.from_numpy(kelp_torch.nhwc_to_nchw(image_nhwc).copy()))
        for bn in norms:
            bn.momentum = 0.1
            bn.num_batches_tracked.fill_(3)


def within_float32_floor(label, kelp, baseline):
    """Where float32 itself cannot meet 1e-4 on the gradients: every other tensor within 1e-4, kelp's worst gradient
    error within 2x torch float32's worst, and the median per-tensor ratio kelp/torch at most 2."""
    bad = [name for name in kelp if kelp[name] > TOLERANCE and not name.startswith("grad.")]
    grads = [name for name in kelp if name.startswith("grad.")]
    kelp_worst = max(kelp[n] for n in grads)
    torch_worst = max(baseline[n] for n in grads)
    ratios = sorted(kelp[n] / max(baseline[n], 1e-12) for n in grads)
    median = ratios[len(ratios) // 2]
    print(f"{label}: {len(bad)} non-gradient tensors beyond 1e-4; gradients: worst error kelp {kelp_worst:.3g} vs "
          f"torch float32 {torch_worst:.3g}, median kelp/torch error ratio {median:.2f}")
    for name in bad:
        print(f"  {name}: kelp {kelp[name]:.3g}")
    return not bad and kelp_worst <= 2 * torch_worst and median <= 2


def check_torchvision(build_dir, model_name, module, calibrated_eval=False):
    """A torchvision model against kelp's zoo model of the same name, one step at batch 2, 224x224.

    Eval mode (batch norm on running statistics, as when fine-tuning a frozen backbone) must meet the 1e-4
    criterion on logits and every gradient. In training mode the logits, loss and running statistics must too; the
    gradients cannot: a few ReLU inputs lie so close to 0 that float32 and float64 disagree on their sign, and
    batch norm's backward spreads each flip over a whole channel, so torch's own float32 misses the float64
    reference by up to ~7e-3 on the same tensors (resnet18). There kelp must be as accurate as torch float32
    (within_float32_floor).

    calibrated_eval adds a third step, in eval mode with running statistics calibrated on the input, judged like
    training mode: for networks whose random running statistics make the eval-mode gradients of the early layers
    vanish, so that the strict eval check says nothing about those layers."""
    generator = torch.Generator().manual_seed(DATA_SEED)
    perturb_batch_norms(module, generator)
    rng = np.random.default_rng(DATA_SEED)
    image = rng.standard_normal((2, 224, 224, 3)).astype(np.float32)
    labels = rng.integers(0, 1000, 2).astype(np.int32)
    runs = [("eval", module), ("train", module)]
    if calibrated_eval:
        calibrated = copy.deepcopy(module)
        calibrate_batch_norms(calibrated, image)
        runs.append(("eval", calibrated))
    status = 0
    for index, (mode, net) in enumerate(runs):
        label = f"{mode} mode" + (", calibrated statistics" if index == 2 else "")
        print(f"== {model_name}, batch norm in {label}")
        weights, expected, baseline = reference_step(copy.deepcopy(net), F.cross_entropy, image, labels,
                                                     train=mode == "train")
        meta = {"seed": "0", "model": model_name, "mode": mode, "reference": f"torch {torch.__version__} float64"}
        returncode, kelp = run_c_check(build_dir, model_name, weights, expected, meta, baseline)
        if index == 0:
            status |= returncode != 0
        else:
            status |= not within_float32_floor(label, kelp, baseline)
    return status


def check_resnet18(build_dir):
    import torchvision

    torch.manual_seed(DATA_SEED)
    return check_torchvision(build_dir, "resnet18", torchvision.models.resnet18(weights=None))


class KelpDropout(torch.nn.Module):
    """nn.Dropout with kelp's mask for node `node_index` of a graph on context seed 0, first training step."""

    def __init__(self, p, node_index):
        super().__init__()
        self.p = p
        self.seed = kelp_torch.node_seed(0, 0, node_index)

    def forward(self, x):
        if not self.training:
            return x
        mask = kelp_torch.dropout_mask(self.seed, tuple(x.shape), self.p)
        return x * torch.from_numpy(mask).to(x.dtype)


def check_mobilenet_v2(build_dir):
    """torchvision's mobilenet_v2 as check_torchvision checks resnet18, plus the calibrated eval step:
    torchvision's init shrinks the signal through every depthwise convolution (kaiming fan_out counts C*9 outputs
    where each output sees 9 inputs), so with random running statistics the eval-mode gradients of the early layers
    are ~1e-9. The classifier starts with a dropout, which in training mode must draw kelp's mask: the node index
    that keys it comes from the zoo model `kelp model show` prints."""
    import torchvision

    show = subprocess.run([str(Path(build_dir) / "kelp"), "model", "show", "mobilenet_v2"], stdout=subprocess.PIPE,
                          check=True, text=True)
    nodes = [node["name"] for node in json.loads(show.stdout)["nodes"]]
    torch.manual_seed(DATA_SEED)
    module = torchvision.models.mobilenet_v2(weights=None)
    module.classifier[0] = KelpDropout(module.classifier[0].p, nodes.index("classifier.0"))
    return check_torchvision(build_dir, "mobilenet_v2", module, calibrated_eval=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--regenerate", action="store_true", help="rewrite the committed fixture (default)")
    action.add_argument("--verify", action="store_true", help="check the committed fixture against torch")
    action.add_argument("--check", nargs=2, metavar=("MODEL", "BUILD_DIR"),
                        help="check a kelp JSON model with BUILD_DIR/test_torch_fixture")
    action.add_argument("--check-resnet18", metavar="BUILD_DIR",
                        help="check torchvision's resnet18 with BUILD_DIR/test_torch_fixture")
    action.add_argument("--check-mobilenet_v2", metavar="BUILD_DIR",
                        help="check torchvision's mobilenet_v2 with BUILD_DIR/test_torch_fixture")
    args = parser.parse_args()
    if args.verify:
        return verify()
    if args.check:
        return check_model(*args.check)
    if args.check_resnet18:
        return check_resnet18(args.check_resnet18)
    if args.check_mobilenet_v2:
        return check_mobilenet_v2(args.check_mobilenet_v2)
    return regenerate()


if __name__ == "__main__":
    sys.exit(main())
