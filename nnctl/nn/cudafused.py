"""`device: cuda` for a small Dense model: its steps in one launch (nnctl/engine/cuda/fused.py) instead of a couple
of dozen launches a step — what decides a small model's speed on a GPU, where each launch costs more host time
than its arithmetic takes on the device.

A model qualifies (`whole_steps`) when it is a chain of Dense layers on flat input (no dropout, regularizers,
frozen or shared layers, gradient clipping, sparse input, several outputs or a user's loss), trains with one
batch of at most 512 rows, and every layer's GEMMs are small enough for the layer-by-layer path to run them as
Numba kernels rather than cuBLAS (SMALL_GEMM_MACS) — so the one launch computes the same cells in the same order
and gives the same bytes (tests/engine/cuda_sim/test_cuda_fused.py). The Boston MLP is such a model; the MNIST
MLP's 784 × 512 layer goes to cuBLAS and stays on the layer-by-layer path. NNCTL_CUDA_FUSED=0 turns it off.
"""

from __future__ import annotations

import os

import numpy as np

from nnctl.engine import settings
from nnctl.engine.cpu.optim import CLIP_NONE, LR, WEIGHT_DECAY

ENABLED = os.environ.get("NNCTL_CUDA_FUSED", "1") != "0"
MAX_LAYERS = 4  # a launch's parameters are at most 4 KB: eight arrays a layer
MAX_PARAMS = 1 << 16  # one block updates them all, each step


def whole_steps(ctx) -> "WholeSteps | None":
    """The model's one-launch runner, or None when it does not qualify (the module's docstring)."""
    from nnctl.engine.cuda.dense import COLUMN_CHUNK
    from nnctl.nn.cudaops import DenseOp

    model, ops, heads = ctx.model, ctx.ops, ctx.heads
    opt = model.optimizer
    if not ENABLED or ctx.sparse or ctx.several or len(heads) != 1 or ctx.id_checks or ctx.again:
        return None
    head = heads[0]
    if head.steps != 1 or head.weight != 1.0 or head.node != len(ops) - 1:
        return None
    if head.loss is not None and head.loss.custom:
        return None
    if not 1 <= len(ops) <= MAX_LAYERS or ctx.sources != [[i - 1] for i in range(len(ops))] or ctx.ids[0]:
        return None
    if opt is not None and opt.clip_mode != CLIP_NONE:
        return None
    if model.store.fixed_values.shape[0] or model.store.values.shape[0] > MAX_PARAMS:
        return None
    if ctx.batch_size > 2 * COLUMN_CHUNK:  # the bias gradients' column sums: one pass over the rows
        return None
    for op in ops:
        if type(op) is not DenseOp or op.penalties or len(op.in_shape) != 1 or \
                ctx.batch_size * op.din * op.units >= settings.SMALL_GEMM_MACS:
            return None
    return WholeSteps(ctx)


class WholeSteps:
    """The kernel's arguments for one CudaPath, made once (the ops' own buffers and weight views), and `train` /
    `predict` in its terms."""

    def __init__(self, ctx):
        bs, ops, head = ctx.batch_size, ctx.ops, ctx.heads[0]
        self.ctx, self.k = ctx, ctx.k
        full = [(bs, op.units) for op in ops]
        self.xbuf = ops[0].view(ctx.xbufs[0], (bs, ctx.features[0]))
        self.kernels = tuple(op.weight(op.layer.kernel, ctx.values) for op in ops)
        self.biases = tuple(op.bias() for op in ops)
        self.dkernels = tuple(op.weight(op.layer.kernel, ctx.grads) for op in ops)
        self.dbiases = tuple(op.zero_grad if op.bias_param is None else op.weight(op.bias_param, ctx.grads)
                             for op in ops)
        self.zs = tuple(op.view(op.z, shape) for op, shape in zip(ops, full))
        self.ys = tuple(op.view(op.y, shape) for op, shape in zip(ops, full))
        self.dzs = tuple(op.view(op.dz, shape) for op, shape in zip(ops, full))
        nowhere = ctx.empty((1, 1))
        self.dxs = tuple(nowhere if op.dx is None else op.view(op.dx, (bs, op.din)) for op in ops)
        # Scalars as the layer-by-layer kernels get them (Python numbers: int64 and float64 on a GPU, and under the
        # simulator the weak scalars NumPy mixes into float32 arithmetic without widening it).
        self.acts, self.alphas = tuple(int(op.act) for op in ops), tuple(float(op.alpha) for op in ops)
        self.head = head
        self.target = head.target
        self.labels, self.weight = head.labels.reshape(bs), head.weights.reshape(bs)
        self.grad = head.grad[:bs * head.units].reshape(bs, head.units)
        self.sample_losses = ctx.empty(bs, np.float64)
        self.no_ids, self.no_targets = ctx.empty((1, 1), np.int64), ctx.empty((1, head.width))
        self.no_slot = ctx.empty(1)

    def _launch(self, training, x, order, first, last, step_losses, out, logits, out_first, opt, step_sizes,
                data=None):
        ctx, head = self.ctx, self.head
        if opt is None:  # inference without a compiled model
            code, hp, slots = 0, np.zeros(8), [self.no_slot] * 3
        else:
            code, hp, slots = opt.code, opt.hyperparameters(), ctx.slots
        f32 = np.float32
        sparse = bool(training and head.loss.sparse)
        target_data = data.get("target0", self.no_targets) if data else self.no_targets
        labels_data = data.get("labels0", self.no_ids) if data else self.no_ids
        weight_data = data["weight0"] if data else self.no_targets
        self.k.dense_steps(
            training, x, order, first, last, ctx.batch_size, self.xbuf, self.kernels, self.biases, self.dkernels,
            self.dbiases, self.zs, self.ys, self.dzs, self.dxs, self.acts, self.alphas,
            head.code if training else 0, float(head.loss.delta) if training else 0.0, bool(head.fused), sparse,
            target_data, labels_data, weight_data, self.target, self.labels, self.weight, self.grad,
            self.sample_losses, step_losses, out, logits, out_first, code, f32(hp[LR]),
            f32(1.0 - hp[LR] * hp[WEIGHT_DECAY]), step_sizes, f32(hp[2]), f32(hp[3]), f32(hp[4]), f32(hp[5]),
            ctx.values, ctx.grads, *slots)

    def train(self, data, order, first, last, step_losses, out, out_first) -> None:
        """Steps first..last − 1 (rows from the device `order`), each step's loss into step_losses[step] and the
        head's outputs into out (rows from out_first); the optimizer's step count moves on by the steps."""
        from nnctl.engine.cuda.optim import step_size

        opt = self.ctx.model.optimizer
        hp = opt.hyperparameters()
        sizes = np.array([step_size(opt.code, hp, opt.iterations + s) for s in range(last - first)], np.float32)
        self._launch(True, data["x0"], order, first, last, step_losses, out, out, out_first, opt,
                     self.ctx.cuda.to_device(sizes), data)
        opt.iterations += last - first

    def predict(self, x, rows, logits, out) -> None:
        """The head's logits and outputs for the rows `rows` (device row numbers) of x, a batch at a time."""
        batches = -(-rows.shape[0] // self.ctx.batch_size)
        self._launch(False, x, rows, 0, batches, self.sample_losses, out, logits, 0, self.ctx.model.optimizer,
                     self.no_slot)
