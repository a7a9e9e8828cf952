"""Weights for a kelp model whose batch norms are not the identity, from the ONNX file of its random initialization.

Usage: perturb_weights.py MODEL.onnx OUT.safetensors [SEED]

kelp initializes batch norm as PyTorch does (weight 1, bias 0, running mean 0, running variance 1): an export test
on that would not see a wrong epsilon, a swapped mean and variance or a missed scale. This takes the parameters
from the initializers (PyTorch's names and layouts, which kelp loads back), draws batch norm's four tensors at
random, adds the num_batches_tracked counters kelp's strict loading expects, and writes a safetensors file.
"""
import sys

import numpy as np
import onnx
import onnx.numpy_helper

from check_onnx import write_safetensors


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    rng = np.random.default_rng(int(sys.argv[3]) if len(sys.argv) == 4 else 0)
    model = onnx.load(sys.argv[1])
    # parameters are named "<node>.<suffix>"; the exporter's own constants are "<node>/<what>"
    params = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer if "/" not in t.name}
    out = dict(params)
    for name in params:
        if not name.endswith(".running_mean"):
            continue
        node = name[: -len(".running_mean")]
        c = params[name].shape
        out[node + ".weight"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
        out[node + ".bias"] = rng.normal(0.0, 0.2, c).astype(np.float32)
        out[node + ".running_mean"] = rng.normal(0.0, 0.3, c).astype(np.float32)
        out[node + ".running_var"] = rng.uniform(0.5, 2.0, c).astype(np.float32)
        out[node + ".num_batches_tracked"] = np.array(7, dtype=np.int64)
    write_safetensors(sys.argv[2], out)


if __name__ == "__main__":
    main()
