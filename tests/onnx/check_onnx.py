"""Checks one ONNX file that `kelp model onnx` wrote against the reference file it wrote beside it.

Usage: check_onnx.py MODEL.onnx REFERENCE.safetensors [--weights WEIGHTS.safetensors] [--tolerance T]

- onnx.checker.check_model(full_check=True): the schema, every operator against opset 17, and strict shape
  inference;
- IR version <= 8 and a default-domain opset in 13..17;
- the graph input "input" with a symbolic batch dimension, the output "logits";
- onnxruntime (CPUExecutionProvider) on the reference input: max |kelp - onnxruntime| over the logits (and any
  further output the reference holds) below the tolerance (1e-4 by default);
- with --weights (the file kelp loaded, in PyTorch's names and layouts): every parameter in it but
  num_batches_tracked is an initializer of the same name, shape and values.

Prints one line, "NAME: max |kelp - ort| = X", and exits non-zero with the reason on any failure. The safetensors
file is read with numpy alone (8-byte header length, JSON header, raw little-endian data), so the check needs no
safetensors package.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np
import onnx
import onnx.numpy_helper
import onnxruntime as ort


def read_safetensors(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = {"F32": "<f4", "I64": "<i8"}[info["dtype"]]
        begin, end = info["data_offsets"]
        out[name] = np.frombuffer(data[begin:end], dtype=dtype).reshape(info["shape"])
    return out


def write_safetensors(path, tensors):
    """Writes {name: float32 or int64 array} as safetensors (the format's rules: offsets tile the data section)."""
    header, blobs, offset = {}, [], 0
    for name, array in tensors.items():
        array = np.asarray(array)  # (ascontiguousarray would make a 0-d counter 1-d)
        dtype = {np.dtype("float32"): "F32", np.dtype("int64"): "I64"}[array.dtype]
        blob = array.astype(array.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def check_weights(name, model, weights_path):
    """The parameters kelp loaded are the initializers, under PyTorch's names and in PyTorch's layouts."""
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    for key, want in read_safetensors(weights_path).items():
        if key.endswith("num_batches_tracked") or key.startswith("kelp."):
            continue
        assert key in inits, f"{name}: parameter {key} is not an initializer"
        assert inits[key].shape == want.shape, f"{name}: {key} has shape {inits[key].shape}, the file {want.shape}"
        assert np.array_equal(inits[key], want), f"{name}: {key} differs from the weights file"


def check(model_path, reference_path, weights_path, tolerance):
    name = os.path.basename(model_path)
    onnx.checker.check_model(model_path, full_check=True)
    model = onnx.load(model_path)
    assert model.ir_version <= 8, f"{name}: ir_version {model.ir_version} > 8"
    opsets = {o.domain: o.version for o in model.opset_import}
    assert set(opsets) <= {"", "ai.onnx"}, f"{name}: opset domains {opsets}"
    version = opsets.get("", opsets.get("ai.onnx"))
    assert 13 <= version <= 17, f"{name}: opset {version} outside 13..17"
    inputs = {i.name: i for i in model.graph.input}
    assert "input" in inputs, f"{name}: no graph input named 'input': {list(inputs)}"
    batch = inputs["input"].type.tensor_type.shape.dim[0]
    assert batch.dim_param == "batch", f"{name}: input's batch dimension is {batch}"
    assert model.graph.output[0].name == "logits", f"{name}: output 0 is {model.graph.output[0].name}"
    # initializers are parameters, not inputs: a runtime may not let a caller override them
    assert not set(inputs) & {t.name for t in model.graph.initializer}, f"{name}: initializers listed as inputs"

    if weights_path:
        check_weights(name, model, weights_path)

    ref = read_safetensors(reference_path)
    outputs = [o.name for o in model.graph.output if o.name in ref]
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    results = session.run(outputs, {"input": ref["input"]})
    for output, got in zip(outputs, results):
        want = ref[output]
        assert got.shape == want.shape, f"{name}: onnxruntime's {output} {got.shape}, kelp's {want.shape}"
        assert np.all(np.isfinite(got)), f"{name}: onnxruntime's {output} is not finite"
        diff = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))))
        scale = float(np.max(np.abs(want)))
        print(f"{name}: {output} {list(want.shape)}: max |kelp - ort| = {diff:.3g} (max |kelp| {scale:.3g}, "
              f"{len(model.graph.node)} operators)")
        assert diff < tolerance, f"{name}: {output}: max |kelp - ort| = {diff:.3g} is not below {tolerance:g}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("reference")
    parser.add_argument("--weights")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    args = parser.parse_args()
    try:
        check(args.model, args.reference, args.weights, args.tolerance)
    except (AssertionError, onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        sys.exit(f"FAIL: {e}")


if __name__ == "__main__":
    main()
