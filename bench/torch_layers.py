"""PyTorch twins of nnctl's layer specs and of Keras's RMSprop, for the book benchmark and the fidelity reference.

Layers are built from the config's layer dicts with Keras's initializers and written as a PyTorch user would.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

# The book's heads, written the PyTorch way: the last activation is folded into the fused loss.
HEADS = {  # nnctl loss -> (activation of the last layer, torch loss)
    "binary_crossentropy": ("sigmoid", "BCEWithLogitsLoss"),
    "sparse_categorical_crossentropy": ("softmax", "CrossEntropyLoss"),
    "categorical_crossentropy": ("softmax", "CrossEntropyLoss"),  # one-hot rows as class probabilities
    "mse": (None, "MSELoss"),
}
EMBEDDING_RANGE = 0.05  # Keras's `uniform` embeddings initializer: U(-0.05, 0.05)
RECURRENT = {"simple_rnn": (nn.RNN, 1), "lstm": (nn.LSTM, 4), "gru": (nn.GRU, 3)}  # type -> (torch class, gates)
# What the recurrent twins implement; anything else is refused. Torch's GRU is Keras 3's reset_after form.
RECURRENT_DEFAULTS = {"trainable": True, "activation": "tanh", "recurrent_activation": "sigmoid",
                      "kernel_initializer": "glorot_uniform", "recurrent_initializer": "orthogonal",
                      "bias_initializer": "zeros", "kernel_regularizer": None, "recurrent_regularizer": None,
                      "bias_regularizer": None, "dropout": 0.0, "recurrent_dropout": 0.0, "go_backwards": False,
                      "reset_after": True}
MERGE_MODES = ("concat", "sum", "mul", "ave")


def _sizes(value, rank: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (list, tuple)) else (int(value),) * rank


def _unsupported(index: int, spec: dict, what: str, label: str | None = None):
    raise SystemExit(f"torch_layers.py has no twin for layer {index} ({label or spec['type']}): {what}")


def _check_defaults(index: int, spec: dict, defaults: dict, label: str | None = None):
    for key, wanted in defaults.items():
        if spec.get(key, wanted) != wanted:
            _unsupported(index, spec, f"`{key}: {spec[key]}` (only {wanted!r})", label)


def channels_first(x):
    """Images and sequences as torch's layers take them: (n, h, w, c) → (n, c, h, w), (n, t, c) → (n, c, t).
    Done once on the data, as a PyTorch user loads it, not inside the timed loop."""
    if x.ndim < 3 or not np.issubdtype(x.dtype, np.floating):
        return x
    return np.ascontiguousarray(np.moveaxis(x, -1, 1))


def build_model(specs: list[dict], input_shape: tuple[int, ...], loss: str):
    """nn.Sequential from nnctl layer dicts, and the torch loss. Keras's initializers: Glorot-uniform kernels
    (torch's fan-in/out for a conv kernel is Keras's: receptive field × channels), zero biases, ±0.05
    embeddings, orthogonal recurrent kernels (`recurrent_twin`). Float inputs of rank ≥ 2 arrive channels-first
    (`channels_first`); `layout` follows the tensor."""
    activation, loss_name = HEADS.get(loss, (False, None))
    if loss_name is None:
        raise SystemExit(f"torch_layers.py has no twin for loss `{loss}`")
    modules, shape = [], tuple(input_shape)
    layout = "first" if len(shape) >= 2 else "last"  # where the channels axis is in the running tensor

    def to(wanted):
        nonlocal layout, shape
        if layout != wanted and len(shape) >= 2:
            modules.append(MoveChannels(wanted))
        layout = wanted

    for index, spec in enumerate(specs):
        kind, last = spec["type"], index == len(specs) - 1
        _check_defaults(index, spec, {"trainable": True, "data_format": "channels_last"})
        # A recurrent layer's activations are its cell's (checked in `recurrent_twin`), not one after it.
        recurrent = kind in RECURRENT or kind == "bidirectional"
        act = None if recurrent or spec.get("activation") == "linear" else spec.get("activation")
        if act not in ((activation,) if last else (None, "relu")):
            _unsupported(index, spec, f"activation `{act}` (loss `{loss}` takes `{activation}` last)")
        if kind == "embedding":
            _check_defaults(index, spec, {"embeddings_initializer": "uniform", "embeddings_regularizer": None,
                                          "mask_zero": False})
            layer = nn.Embedding(spec["input_dim"], spec["output_dim"])
            nn.init.uniform_(layer.weight, -EMBEDDING_RANGE, EMBEDDING_RANGE)
            modules.append(layer)
            shape, layout = shape + (spec["output_dim"],), "last"
        elif kind in ("conv1d", "conv2d"):
            rank = 1 if kind == "conv1d" else 2
            _check_defaults(index, spec, {"kernel_initializer": "glorot_uniform", "bias_initializer": "zeros",
                                          "kernel_regularizer": None, "bias_regularizer": None, "groups": 1})
            to("first")
            kernel, strides = _sizes(spec["kernel_size"], rank), _sizes(spec.get("strides", 1), rank)
            dilation, padding = _sizes(spec.get("dilation_rate", 1), rank), spec.get("padding", "valid")
            if padding not in ("valid", "same") or (padding == "same" and strides != (1,) * rank):
                _unsupported(index, spec, f"padding `{padding}` with strides {strides}")
            conv = (nn.Conv1d if rank == 1 else nn.Conv2d)(shape[-1], spec["filters"], kernel, strides,
                                                           padding=padding, dilation=dilation,
                                                           bias=spec.get("use_bias", True))
            nn.init.xavier_uniform_(conv.weight)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
            modules.append(conv)
            spatial = tuple(n if padding == "same" else (n - d * (k - 1) - 1) // s + 1
                            for n, k, s, d in zip(shape[:-1], kernel, strides, dilation))
            shape = spatial + (spec["filters"],)
        elif kind in ("max_pooling1d", "max_pooling2d", "average_pooling1d", "average_pooling2d"):
            rank = int(kind[-2])
            if spec.get("padding", "valid") != "valid":
                _unsupported(index, spec, "padding other than `valid`")
            to("first")
            pool = _sizes(spec.get("pool_size", 2), rank)
            strides = _sizes(spec.get("strides") or pool, rank)
            cls = {"max": (nn.MaxPool1d, nn.MaxPool2d), "average": (nn.AvgPool1d, nn.AvgPool2d)}[kind.split("_")[0]]
            modules.append(cls[rank - 1](pool, strides))
            shape = tuple((n - k) // s + 1 for n, k, s in zip(shape[:-1], pool, strides)) + shape[-1:]
        elif kind == "masking":
            _unsupported(index, spec, "masks (the twin runs every step of every sequence)")
        elif kind.startswith("global_"):
            to("first")
            modules.append(GlobalPool("max" if "_max_" in kind else "mean"))
            shape, layout = shape[-1:], "last"
        elif kind == "flatten":
            modules.append(nn.Flatten())  # in torch's layout: another order than Keras's, the same model
            shape, layout = (_product(shape),), "last"
        elif kind == "dropout":
            modules.append(nn.Dropout(spec["rate"]))
        elif recurrent:
            to("last")  # batch_first: (n, steps, features)
            inner, merge_mode = (spec, None) if kind in RECURRENT else (spec["layer"], spec.get("merge_mode", "concat"))
            if kind == "bidirectional" and merge_mode not in MERGE_MODES:
                _unsupported(index, spec, f"`merge_mode: {merge_mode}` (only {', '.join(MERGE_MODES)})")
            modules.append(recurrent_twin(index, inner, shape[-1], merge_mode))
            width = inner["units"] * (2 if merge_mode == "concat" else 1)
            shape = (shape[0], width) if inner.get("return_sequences", False) else (width,)
        elif kind == "dense":
            _check_defaults(index, spec, {"kernel_initializer": "glorot_uniform", "bias_initializer": "zeros",
                                          "kernel_regularizer": None, "bias_regularizer": None})
            to("last")  # Dense acts on the last axis, as Linear does
            linear = nn.Linear(shape[-1], spec["units"], bias=spec.get("use_bias", True))
            nn.init.xavier_uniform_(linear.weight)
            if linear.bias is not None:
                nn.init.zeros_(linear.bias)
            modules.append(linear)
            shape = shape[:-1] + (spec["units"],)
        else:
            _unsupported(index, spec, "unknown layer type")
        if act == "relu" and not last:
            modules.append(nn.ReLU())
    return nn.Sequential(*modules), getattr(torch.nn, loss_name)()


def recurrent_twin(index: int, spec: dict, features: int, merge_mode: str | None = None) -> nn.Module:
    """nn.RNN / nn.LSTM / nn.GRU (batch_first, two directions when `merge_mode` is given) with Keras's
    initializers, wrapped to return what the Keras layer returns. Keras's input kernel is one (features, g·units)
    matrix under Glorot: torch's (g·units, features) weight_ih has the same fans. Keras's recurrent kernel is one
    orthogonal (units, g·units) matrix, transposed into weight_hh. Biases are zero but for LSTM's forget-gate
    block (unit_forget_bias), set in b_ih only; torch's second bias b_hh (Keras has one, but for GRU) starts at
    zero. Torch's gate orders (LSTM i f g o, GRU r z n) only permute blocks that are initialized alike."""
    kind = spec["type"]
    label = kind if merge_mode is None else f"bidirectional {kind}"  # a refusal names the wrapped layer
    if kind not in RECURRENT:
        _unsupported(index, spec, f"a wrapped layer of type `{kind}` (only {', '.join(RECURRENT)})", label)
    _check_defaults(index, spec, RECURRENT_DEFAULTS, label)
    cls, gates = RECURRENT[kind]
    units, use_bias = spec["units"], spec.get("use_bias", True)
    rnn = cls(features, units, bias=use_bias, batch_first=True, bidirectional=merge_mode is not None)
    for suffix in ("_l0", "_l0_reverse") if rnn.bidirectional else ("_l0",):
        nn.init.xavier_uniform_(getattr(rnn, "weight_ih" + suffix))
        recurrent_kernel = nn.init.orthogonal_(torch.empty(units, gates * units))
        with torch.no_grad():
            getattr(rnn, "weight_hh" + suffix).copy_(recurrent_kernel.T)
            if use_bias:
                input_bias, recurrent_bias = getattr(rnn, "bias_ih" + suffix), getattr(rnn, "bias_hh" + suffix)
                input_bias.zero_()
                recurrent_bias.zero_()
                if kind == "lstm" and spec.get("unit_forget_bias", True):
                    input_bias[units:2 * units] = 1.0
    return RecurrentOutput(rnn, spec.get("return_sequences", False), merge_mode)


class RecurrentOutput(nn.Module):
    """A batch_first torch RNN as its Keras layer: the whole sequence (n, steps, width) or the last state (n, width).
    Two directions merge as Keras's Bidirectional merges them. The last state is torch's h_n: the forward direction
    after the last step, the backward one after step 0 (Keras's backward copy runs go_backwards)."""

    def __init__(self, rnn: nn.Module, return_sequences: bool, merge_mode: str | None):
        super().__init__()
        self.rnn, self.return_sequences, self.merge_mode = rnn, return_sequences, merge_mode

    def forward(self, x):
        out, state = self.rnn(x)
        if self.return_sequences:
            if self.merge_mode in (None, "concat"):  # torch already lays both directions side by side, in time order
                return out
            ahead, back = out.chunk(2, dim=-1)
        else:
            last = state[0] if isinstance(state, tuple) else state  # LSTM's state is (h_n, c_n); (directions, n, u)
            if self.merge_mode is None:
                return last[-1]
            ahead, back = last[0], last[1]
        if self.merge_mode == "concat":
            return torch.cat([ahead, back], dim=-1)
        if self.merge_mode == "sum":
            return ahead + back
        if self.merge_mode == "ave":
            return (ahead + back) * 0.5
        return ahead * back


def _product(shape) -> int:
    out = 1
    for n in shape:
        out *= n
    return out


class MoveChannels(nn.Module):
    """Channels to axis 1 (torch's convolutions) or back to the last axis (Linear, Keras's layout)."""

    def __init__(self, wanted: str):
        super().__init__()
        self.wanted = wanted

    def forward(self, x):
        return x.movedim(-1, 1) if self.wanted == "first" else x.movedim(1, -1)


class GlobalPool(nn.Module):
    """(n, c, *spatial) → (n, c): the maximum or the mean over every spatial position."""

    def __init__(self, how: str):
        super().__init__()
        self.how = how

    def forward(self, x):
        flat = x.flatten(2)
        return flat.amax(dim=2) if self.how == "max" else flat.mean(dim=2)


class KerasRMSprop(torch.optim.Optimizer):
    """Keras 3's RMSprop, whose epsilon sits *inside* the square root (torch's RMSprop adds it outside):
    v = ρv + (1-ρ)g²;  p -= lr·g / sqrt(v + ε). With ε = 1e-7 the floor is 3e-4, not 1e-7, which matters
    for rarely-touched embedding rows. Multi-tensor (`_foreach`) ops, as torch's own optimizers."""

    def __init__(self, params, lr: float, rho: float, epsilon: float):
        super().__init__(params, {"lr": lr, "rho": rho, "epsilon": epsilon})

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            weights = group["params"]
            grads = [p.grad for p in weights]
            velocity = [self.state[p].setdefault("velocity", torch.zeros_like(p)) for p in weights]
            torch._foreach_mul_(velocity, group["rho"])
            torch._foreach_addcmul_(velocity, grads, grads, value=1.0 - group["rho"])
            denominators = torch._foreach_add(velocity, group["epsilon"])
            torch._foreach_sqrt_(denominators)
            torch._foreach_addcdiv_(weights, grads, denominators, value=-group["lr"])
