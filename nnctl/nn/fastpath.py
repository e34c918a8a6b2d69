"""The compiled fast path: a plain stack of Dense layers trains many steps in one Numba call.

The loop (nn/fastloop.py) calls the very kernels the layer-by-layer path calls, in the same order, so both
give the same bytes; what it saves is Python's per-step overhead (the book's Boston K-fold runs ~600,000 steps
of batch 1). It is written out once per kind of model, with only that model's activation, loss, optimizer,
input, regularizer and clipping kernels, because Numba links every kernel a function can call into it and
optimizes it all again: Boston's cold compile was 10.4 s with one loop able to run any model, 4 s now.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from nnctl.engine import settings
from nnctl.engine.cpu.dense import BIAS_ACT_BACKWARD, BIAS_ACT_FORWARD, LINEAR
from nnctl.engine.cpu.losses import LOSS_KERNELS
from nnctl.engine.cpu.optim import CLIP_NONE, OPTIMIZER_KERNELS
from nnctl.engine.csr import CSRMatrix
from nnctl.nn.layers import Dense

# Columns of the integer layer table.
IN, UNITS, ACT, W_OFF, B_OFF = range(5)
# Columns of the float layer table: activation alpha, then L1/L2 of the kernel and of the bias.
ALPHA, K_L1, K_L2, B_L1, B_L2 = range(5)

_TEMPLATE = Path(__file__).with_name("fastloop.py")
_LOADED: dict[str, object] = {}  # module name → the generated module, once imported


class LoopKind(NamedTuple):
    """What the generated loop is specialized to: everything else is data in the layer tables."""
    forward: tuple[int, ...]  # activation codes run forward
    backward: tuple[int, ...]  # activation codes run backward (the fused output layer's is LINEAR)
    loss: int
    optimizer: int
    sparse: bool  # CSR input
    regularized: bool  # any L1/L2 penalty
    clipped: bool  # gradient clipping


def _kernel(dispatcher):
    return dispatcher.py_func.__module__, dispatcher.py_func.__name__


def _dispatch_source(name: str, params: str, kernels: list) -> list[str]:
    """An njit function `name(code, params…)` calling kernels[k] for code k (only the codes given)."""
    lines = ["", "", '@njit(inline="always", **KERNEL)', f"def {name}(code, {params}):"]
    for i, (code, kernel) in enumerate(kernels):
        if i < len(kernels) - 1:
            lines.append(f"    {'if' if i == 0 else 'elif'} code == {code}:")
        elif i:
            lines.append("    else:")
        lines.append(f"    {'    ' if len(kernels) > 1 else ''}{_kernel(kernel)[1]}({params})")
    return lines


def _kernel_source(kind: LoopKind) -> str:
    """The definitions fastloop.py leaves open, for one kind of model."""
    forward = [(code, BIAS_ACT_FORWARD[code]) for code in kind.forward]
    backward = [(code, BIAS_ACT_BACKWARD[code]) for code in kind.backward]
    loss, optimizer = LOSS_KERNELS[kind.loss], OPTIMIZER_KERNELS[kind.optimizer]
    lines = ["", "", "# ---- written by nnctl.nn.fastpath for one kind of model ----"]
    for _, kernel in forward + backward:
        lines.append("from {} import {}".format(*_kernel(kernel)))
    lines.append("from {} import {} as loss_kernel".format(*_kernel(loss)))
    lines.append("from {} import {} as optimizer_kernel".format(*_kernel(optimizer)))
    source = "_csr" if kind.sparse else "_dense"
    lines += [f"input_forward = {source}_input_forward", f"input_weight_grad = {source}_input_weight_grad",
              f"add_penalties = {'_penalties' if kind.regularized else '_no_penalties'}",
              "from nnctl.engine.cpu.optim import clip_gradients as clip_kernel" if kind.clipped
              else "clip_kernel = _no_clip"]
    lines += _dispatch_source("act_forward", "z, bias, alpha, y", forward)
    lines += _dispatch_source("act_backward", "dy, z, y, alpha, dz, db", backward)
    return "\n".join(lines) + "\n"


def _loop_module(kind: LoopKind):
    """The generated loop module for `kind`: written next to Numba's cache (its name hashes its text, so an
    existing file is never rewritten and Numba's cached machine code for it stays valid) and imported."""
    text = _TEMPLATE.read_text() + _kernel_source(kind)
    # This module's text too: the loop compiles its column constants (IN, UNITS, …) in as literals.
    name = "nnctl_fastloop_" + hashlib.sha256((text + Path(__file__).read_text()).encode()).hexdigest()[:16]
    if name in _LOADED:
        return _LOADED[name]
    path = _write_once(name + ".py", text)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    _LOADED[name] = module
    return module


def _write_once(filename: str, text: str) -> Path:
    for base in (os.environ.get("NUMBA_CACHE_DIR"), None):
        try:
            directory = Path(base) / "fastloop" if base else Path(tempfile.mkdtemp(prefix="nnctl-fastloop-"))
            path = directory / filename
            if not path.exists():  # atomic, so a concurrent run never imports half a file
                directory.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
                with os.fdopen(fd, "w") as out:
                    out.write(text)
                os.replace(tmp, path)
            return path
        except OSError:  # an unwritable cache: compile from a private copy, not cached across runs
            continue
    raise OSError("cannot write the fast path's loop anywhere")


def loaded_dispatchers() -> list:
    """The jitted functions of every loop module generated so far in this process (for warm-up counts)."""
    found = {id(value): value for module in _LOADED.values() for value in vars(module).values()
             if hasattr(value, "stats") and getattr(value, "__module__", None) == module.__name__}
    return list(found.values())


def eligible(model, batch_size: int, sparse: bool) -> bool:
    """True when every layer is Dense and small enough that the layered path would not call BLAS either
    (so both paths run identical kernels); big layers are faster through BLAS, layer by layer."""
    layers = model.layers
    if model.dtype != np.float32 or not layers or not all(isinstance(layer, Dense) for layer in layers):
        return False
    if getattr(model.loss, "custom", False):  # a user's loss runs on the ops tape
        return False
    if model.store.fixed:  # the compiled loop steps every weight: frozen layers run layer by layer
        return False
    if len(model.store.weights) != sum(len(layer.params) for layer in layers):
        return False  # a shared layer, whose uses' gradients add up
    return all(len(layer.input_shape) == 1 and batch_size * layer.input_shape[0] * layer.units < settings.SMALL_GEMM_MACS
               for layer in layers[1:] + ([] if sparse else layers[:1]))


class FastPath:
    """The tables and scratch buffers of one model at one batch size, and the two entry points."""

    def __init__(self, model, batch_size: int, sparse: bool):
        """`sparse`: whether the inputs this instance will see are CSR (sizes the input buffer)."""
        self.model, self.batch_size, self.sparse = model, batch_size, sparse
        store = model.store
        layers = model.layers
        self.ilayers = np.zeros((len(layers), 5), dtype=np.int64)
        self.flayers = np.zeros((len(layers), 5), dtype=np.float64)
        for i, layer in enumerate(layers):
            w = store.slice_of(layer.kernel)
            b = store.slice_of(layer.bias).start if layer.bias is not None else -1
            self.ilayers[i] = (layer.input_shape[0], layer.units, layer.act_code, w.start, b)
            reg_k, reg_b = layer.kernel.regularizer, layer.bias.regularizer if layer.bias is not None else None
            self.flayers[i] = (layer.alpha, reg_k.l1 if reg_k else 0, reg_k.l2 if reg_k else 0,
                               reg_b.l1 if reg_b else 0, reg_b.l2 if reg_b else 0)
        widest = max(int(self.ilayers[:, UNITS].max()), 1)
        first_in = 0 if sparse else int(self.ilayers[0, IN])
        self.zero_bias = np.zeros(widest, np.float32)
        self.dbuf = np.zeros(widest, np.float32)
        self.xbuf = np.zeros(max(batch_size * first_in, widest), np.float32)
        self.zbuf = np.zeros((len(layers), batch_size * widest), np.float32)
        self.ybuf = np.zeros_like(self.zbuf)
        widest_in = max(widest, int(self.ilayers[1:, IN].max()) if len(layers) > 1 else 0)
        self.gbuf = np.zeros((2, batch_size * widest_in), np.float32)
        # Per-batch gathers of targets, class ids and sample weights.
        self.tbuf = np.zeros((batch_size, int(self.ilayers[-1, UNITS])), np.float32)
        self.lbuf = np.zeros(batch_size, np.int64)
        self.wbuf = np.zeros(batch_size, np.float32)
        forward = [int(code) for code in self.ilayers[:, ACT]]
        backward = forward[:-1] + [LINEAR if model.loss_fused else forward[-1]]
        self.loop = _loop_module(LoopKind(tuple(sorted(set(forward))), tuple(sorted(set(backward))), model.loss_code,
                                          model.optimizer.code, sparse, bool(self.flayers[:, K_L1:].any()),
                                          model.optimizer.clip_mode != CLIP_NONE))

    def _x(self, x):
        assert isinstance(x, CSRMatrix) == self.sparse, "the input kind differs from the one buffers were sized for"
        if self.sparse:
            return np.zeros((1, 1), np.float32), x.indptr, x.indices, x.values
        return x, np.zeros(1, np.int64), np.zeros(1, np.int32), np.zeros(1, np.float32)

    def train(self, data, order, first, last, outputs, step_losses) -> None:
        model, opt = self.model, self.model.optimizer
        opt.iterations = self.loop.run_steps(
            True, *self._x(data.x), order, first, last, self.batch_size, self.ilayers, self.flayers,
            model.store.values, self.zero_bias, self.xbuf, self.zbuf, self.ybuf, self.tbuf, outputs, data.target,
            data.labels, model.loss.sparse, data.weight, model.loss.delta, model.loss_fused, model.store.grads,
            model.store.offsets, opt.hyperparameters(), opt.iterations, *opt.slots, opt.clip_mode, opt.clip,
            self.gbuf, self.dbuf, self.tbuf, self.lbuf, self.wbuf, step_losses)

    def predict(self, x, count, logits, outputs) -> None:
        """Inference over rows 0..count-1: the same compiled function, with placeholders of the same types
        (so nothing compiles twice) for the arguments only training reads."""
        model, opt = self.model, self.model.optimizer
        steps = -(-count // self.batch_size)
        self.loop.run_steps(
            False, *self._x(x), np.arange(count), 0, steps, self.batch_size, self.ilayers, self.flayers,
            model.store.values, self.zero_bias, self.xbuf, self.zbuf, self.ybuf, logits, outputs, self.tbuf[:0],
            self.lbuf[:0], model.loss.sparse, self.wbuf[:0], model.loss.delta, model.loss_fused, model.store.grads,
            model.store.offsets, opt.hyperparameters(), opt.iterations, *opt.slots, opt.clip_mode, opt.clip,
            self.gbuf, self.dbuf, self.tbuf, self.lbuf, self.wbuf, np.empty(steps))
