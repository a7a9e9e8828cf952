"""kelp model files in PyTorch: an interpreter that runs a kelp JSON model as a torch module, kelp's dropout mask
reproduced bit for bit, and one training step recorded as the tensors the C test compares.

Activations are NCHW here and NHWC in kelp; parameters carry the same names and PyTorch layouts in both, so a
state_dict saved with safetensors loads into kelp unchanged.
"""
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

MASK64 = (1 << 64) - 1
MASK32 = (1 << 32) - 1
GOLDEN64 = 0x9E3779B97F4A7C15


# ---- kelp's random streams (kernels/ops/rng.h, engine/graph_run.c) ----

def mix64(z):
    """splitmix64's finalizer, as graph_run.c's mix64."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def node_seed(ctx_seed, step, node_index):
    """The per-node stream graph_run.c's fill_io hands a layer: context seed, training step, node index."""
    return mix64(ctx_seed ^ mix64((step + GOLDEN64 * (node_index + 1)) & MASK64))


def philox4x32_10(blocks, seed):
    """Philox4x32-10 of counters (block, 0) under key `seed`: an array (len(blocks), 4) of uint32 words."""
    c0 = (blocks & MASK32).astype(np.uint64)
    c1 = (blocks >> np.uint64(32)).astype(np.uint64)
    c2 = np.zeros_like(c0)
    c3 = np.zeros_like(c0)
    k0, k1 = seed & MASK32, (seed >> 32) & MASK32
    m32 = np.uint64(MASK32)
    for _ in range(10):
        p0 = np.uint64(0xD2511F53) * c0
        p1 = np.uint64(0xCD9E8D57) * c2
        hi0, lo0 = p0 >> np.uint64(32), p0 & m32
        hi1, lo1 = p1 >> np.uint64(32), p1 & m32
        c0, c1, c2, c3 = hi1 ^ c1 ^ np.uint64(k0), lo1, hi0 ^ c3 ^ np.uint64(k1), lo0
        k0 = (k0 + 0x9E3779B9) & MASK32
        k1 = (k1 + 0xBB67AE85) & MASK32
    return np.stack([c0, c1, c2, c3], axis=1).astype(np.uint32)


def rng_uniform(seed, n):
    """kelp_rng_uniform(seed, i) for i in [0, n): float32, word i % 4 of Philox block i / 4."""
    blocks = np.arange((n + 3) // 4, dtype=np.uint64)
    words = philox4x32_10(blocks, seed).reshape(-1)[:n]
    return (words >> np.uint32(8)).astype(np.float32) * np.float32(1.0 / 16777216.0)


def dropout_mask(seed, shape_nhwc, p):
    """kelp's mask over the row-major NHWC tensor, survivors already scaled by 1/(1-p) in float32 as kelp does."""
    n = int(np.prod(shape_nhwc))
    p32 = np.float32(p)
    keep = rng_uniform(seed, n) >= p32
    scale = np.float32(1.0) / (np.float32(1.0) - p32)
    return np.where(keep, scale, np.float32(0.0)).reshape(shape_nhwc)


def nhwc_to_nchw(a):
    return a.transpose(0, 3, 1, 2) if a.ndim == 4 else a


def nchw_to_nhwc(a):
    return a.transpose(0, 2, 3, 1) if a.ndim == 4 else a


# ---- the interpreter ----

def pair(v):
    return tuple(v) if isinstance(v, list) else (v, v)


def conv_args(node):
    return dict(kernel_size=pair(node["kernel_size"]), stride=pair(node.get("stride", 1)),
                padding=pair(node.get("padding", 0)), dilation=pair(node.get("dilation", 1)),
                groups=node.get("groups", 1), bias=node.get("bias", True))


def make_module(node, inputs):
    """The torch module holding a node's parameters (None for parameterless layers)."""
    kind, x = node["type"], inputs[0]
    if kind == "conv2d":
        return nn.Conv2d(x.shape[1], node["out_channels"], **conv_args(node))
    if kind == "conv_transpose2d":
        return nn.ConvTranspose2d(x.shape[1], node["out_channels"],
                                  output_padding=pair(node.get("output_padding", 0)), **conv_args(node))
    if kind == "linear":
        # kelp's linear reads the last NHWC dimension: the channels, dim 1 here whatever the rank
        return nn.Linear(x.shape[1], node["out_features"], bias=node.get("bias", True))
    if kind == "batch_norm":
        bn = nn.BatchNorm2d if x.dim() == 4 else nn.BatchNorm1d
        return bn(x.shape[1], eps=node.get("eps", 1e-5), momentum=node.get("momentum", 0.1))
    return None


def channels_last(fn, x):
    """Applies a last-dimension op (kelp's linear on NHWC) to an NCHW tensor."""
    if x.dim() != 4:
        return fn(x)
    return fn(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def pool(node, x, op, **extra):
    kernel = pair(node["kernel_size"])
    return op(x, kernel, stride=pair(node.get("stride", node["kernel_size"])), padding=pair(node.get("padding", 0)),
              ceil_mode=node.get("ceil_mode", False), **extra)


def upsample(node, x):
    mode = node.get("mode", "nearest")
    extra = {"align_corners": False} if mode == "bilinear" else {}
    if "size" in node:
        return F.interpolate(x, size=pair(node["size"]), mode=mode, **extra)
    return F.interpolate(x, scale_factor=pair(node["scale_factor"]), mode=mode, **extra)


ACTIVATIONS = {
    "relu": lambda node, x: F.relu(x),
    "relu6": lambda node, x: F.relu6(x),
    "leaky_relu": lambda node, x: F.leaky_relu(x, node.get("negative_slope", 0.01)),
    "silu": lambda node, x: F.silu(x),
    "sigmoid": lambda node, x: torch.sigmoid(x),
    "gelu": lambda node, x: F.gelu(x, approximate=node.get("approximate", "none")),
}


class KelpModel(nn.Module):
    """A kelp JSON model as a torch module: forward(*inputs NCHW) -> the model's first output.

    Parameters are registered under the node names, so state_dict() has kelp's names ("conv1.weight")."""

    def __init__(self, model, ctx_seed=0):
        super().__init__()
        self.model = model
        self.ctx_seed = ctx_seed
        self.step = 0
        self.input_names = [i["name"] for i in model["inputs"]]
        self.node_modules = {}
        self.output_shape = None
        self._build()

    def _build(self):
        """Creates each node's module from the shapes a dry run in eval mode produces."""
        values = {i["name"]: torch.zeros([2] + self.input_shape(i)) for i in self.model["inputs"]}
        was_training = self.training
        self.eval()
        with torch.no_grad():
            for index, node in enumerate(self.model["nodes"]):
                inputs = [values[name] for name in self.node_inputs(index)]
                module = make_module(node, inputs)
                if module is not None:
                    module.eval()
                    self.register_path(node["name"], module)
                    self.node_modules[node["name"]] = module
                values[node["name"]] = self.run_node(index, node, inputs)
        self.output_shape = list(values[self.model["outputs"][0]].shape[1:])
        self.train(was_training)

    def register_path(self, name, module):
        """Registers a node's module under its name; a dotted name ("layer1.0.conv1") nests it in containers, as
        torch names submodules, so the state_dict keys are the node's parameter names either way."""
        parent = self
        *path, leaf = name.split(".")
        for part in path:
            if not hasattr(parent, part):
                parent.add_module(part, nn.Module())
            parent = getattr(parent, part)
        parent.add_module(leaf, module)

    @staticmethod
    def input_shape(spec):
        """NCHW shape without the batch from kelp's (H, W, C)."""
        shape = list(spec["shape"])
        return [shape[2], shape[0], shape[1]] if len(shape) == 3 else shape

    def node_inputs(self, index):
        node = self.model["nodes"][index]
        if "inputs" in node:
            return node["inputs"]
        return [self.model["nodes"][index - 1]["name"] if index else self.input_names[0]]

    def run_node(self, index, node, inputs):
        kind, x = node["type"], inputs[0]
        module = self.node_modules.get(node["name"])
        if kind in ("conv2d", "conv_transpose2d", "batch_norm"):
            return module(x)
        if kind == "linear":
            return channels_last(module, x)
        if kind in ACTIVATIONS:
            return ACTIVATIONS[kind](node, x)
        if kind == "max_pool2d":
            return pool(node, x, F.max_pool2d)
        if kind == "avg_pool2d":
            return pool(node, x, F.avg_pool2d, count_include_pad=node.get("count_include_pad", True))
        if kind == "global_avg_pool":
            return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        if kind == "flatten":
            return torch.flatten(x, 1)
        if kind == "upsample":
            return upsample(node, x)
        if kind == "add":
            return sum(inputs[1:], inputs[0])
        if kind == "concat":
            return torch.cat(inputs, dim=1)
        if kind == "dropout":
            return self.dropout(index, node, x)
        raise ValueError(f"node '{node['name']}': layer type '{kind}' has no torch equivalent here")

    def dropout(self, index, node, x):
        if not self.training:
            return x
        seed = node_seed(self.ctx_seed, self.step, index)
        shape_nhwc = nchw_to_nhwc(np.empty(x.shape, dtype=np.uint8)).shape
        mask = nhwc_to_nchw(dropout_mask(seed, shape_nhwc, node.get("p", 0.5)))
        return x * torch.from_numpy(np.ascontiguousarray(mask)).to(x.dtype)

    def forward(self, *inputs):
        values = dict(zip(self.input_names, inputs))
        for index, node in enumerate(self.model["nodes"]):
            values[node["name"]] = self.run_node(index, node, [values[n] for n in self.node_inputs(index)])
        if self.training:
            self.step += 1
        return values[self.model["outputs"][0]]

    def loss_fn(self):
        """The model's loss as a function of (logits NCHW or (N,K), int64 labels)."""
        spec = self.model.get("loss", {"type": "softmax_cross_entropy"})
        if spec["type"] != "softmax_cross_entropy":
            raise ValueError(f"loss type '{spec['type']}' has no torch equivalent here")
        return cross_entropy_fn(spec)


def cross_entropy_fn(spec):
    weight = spec.get("weight")

    def loss(logits, labels):
        w = torch.tensor(weight, dtype=logits.dtype) if weight is not None else None
        return F.cross_entropy(logits, labels, weight=w, ignore_index=spec.get("ignore_index", -100),
                               label_smoothing=spec.get("label_smoothing", 0.0))
    return loss


# ---- parameters ----

def randomize_parameters(module, rng):
    """Random float32 parameters and non-trivial batch-norm statistics from a numpy Generator, so the same seed
    gives the same fixture whatever the torch version (torch's initializers and RNG are not promised stable)."""
    state = module.state_dict()
    fan_in = {}
    for name, t in state.items():
        prefix, suffix = name.rsplit(".", 1)
        shape = tuple(t.shape)
        if name.endswith("num_batches_tracked"):
            value = np.array(3, dtype=np.int64)
        elif isinstance(module.get_submodule(prefix), nn.modules.batchnorm._BatchNorm):
            lo, hi = {"weight": (0.5, 1.5), "bias": (-0.5, 0.5), "running_mean": (-0.5, 0.5),
                      "running_var": (0.5, 2.0)}[suffix]
            value = rng.uniform(lo, hi, shape)
        elif suffix == "weight":
            fan_in[prefix] = int(np.prod(shape[1:]))
            bound = 1.0 / np.sqrt(fan_in[prefix])
            value = rng.uniform(-bound, bound, shape)
        else:
            bound = 1.0 / np.sqrt(fan_in[prefix])
            value = rng.uniform(-bound, bound, shape)
        state[name] = torch.from_numpy(np.asarray(value, dtype=np.int64 if t.dtype == torch.int64 else np.float32))
    module.load_state_dict(state)


def float32_state(module):
    """The state_dict as kelp loads it: float32 tensors (and the int64 counters), contiguous."""
    return {k: (v.float() if v.is_floating_point() else v).contiguous().clone() for k, v in module.state_dict().items()}


# ---- one training step ----

def training_step(module, loss_fn, image_nhwc, labels, input_name="image", dtype=torch.float64, train=True):
    """Runs forward, loss and backward in training mode (or, with train=False, with batch norm on its running
    statistics, as kelp's eval mode) in `dtype` from float32 parameters and inputs.

    Returns the expected tensors as float32/int numpy arrays in kelp's layouts: the input and labels, logits,
    loss, gradients of the input (NHWC) and of every trainable parameter (PyTorch layout), and the buffers after
    the step as "after.<name>"."""
    buffers = {name for name, _ in module.named_buffers()}
    module.to(dtype)
    module.train(train)
    x = torch.from_numpy(nhwc_to_nchw(image_nhwc).copy()).to(dtype).requires_grad_(True)
    module.zero_grad(set_to_none=True)
    logits = module(x)
    loss = loss_fn(logits, torch.from_numpy(labels.astype(np.int64)))
    loss.backward()
    out = {
        input_name: image_nhwc.astype(np.float32),
        "label": labels.astype(np.int32),
        "logits": nchw_to_nhwc(logits.detach().float().numpy()),
        "loss": loss.detach().float().numpy().reshape(1),
        "grad." + input_name: nchw_to_nhwc(x.grad.float().numpy()),
    }
    for name, p in module.named_parameters():
        out["grad." + name] = p.grad.float().numpy()
    for name, b in module.state_dict().items():
        if name in buffers:
            out["after." + name] = b.numpy() if b.dtype == torch.int64 else b.float().numpy()
    module.float()
    return {k: np.array(v, order="C") for k, v in out.items()}
