"""`device: cuda` for a Dense model of moderate size: its steps in one launch (nnctl/engine/cuda/fused.py) instead
of a dozen to a couple of dozen launches a step — what decides such a model's speed on a GPU, where each launch
costs more host time than its arithmetic takes on the device.

A model qualifies (`whole_steps`) when it is a chain of at most four Dense layers on flat input, or after a
leading Flatten, each Dense optionally followed by a Dropout (no regularizers, frozen or shared layers, gradient
clipping, sparse input, several outputs or a user's loss) and trains with batches of at most 512 rows. A Dropout's
masks are the Dropout op's counter-based draws (nnctl/engine/cuda/dropout.py), drawn in the forward and again in
the backward instead of stored. Where every layer's GEMMs are small enough for the layer-by-layer path to run them
as Numba kernels (SMALL_GEMM_MACS; the Boston MLP) the launch is one block, whose threads meet at `syncthreads`
between phases. Larger ones, up to GRID_MACS multiply-adds a GEMM and MAX_GRID_PARAMS parameters (the MNIST MLP:
128 × 784 × 512), run on a cooperative grid of one block a multiprocessor meeting at the grid's barrier, the GEMMs
as the same Numba cells instead of cuBLAS: on the simulator the same bytes as the layer-by-layer path
(tests/engine/cuda_sim/test_cuda_fused.py), on a GPU the same to float32 rounding (cuBLAS sums in another order).
Where a GPU refuses a cooperative launch (too many blocks: halved until it fits; no grid support at all), the path
goes layer by layer, with a warning. NNCTL_CUDA_FUSED=0 turns all of it off, NNCTL_CUDA_FUSED=block keeps
the one-block launches only.
"""

from __future__ import annotations

import os

import numpy as np

from nnctl.engine import settings
from nnctl.engine.cpu.optim import CLIP_NONE

ENABLED = os.environ.get("NNCTL_CUDA_FUSED", "1") != "0"
GRID = os.environ.get("NNCTL_CUDA_FUSED", "1") != "block"  # the cooperative-grid form (tests turn it on and off)
MAX_LAYERS = 4  # a launch's parameters within 4 KB (tests/engine/cuda_compile.py): nine arrays a layer
MAX_PARAMS = 1 << 16  # one block updates them all, each step
GRID_MACS = 1 << 26  # a GEMM's multiply-adds a grid-wide launch takes (beyond, cuBLAS layer by layer is faster)
MAX_GRID_PARAMS = 1 << 24


# What this process's GPU allowed: the most blocks a cooperative launch ran with (None: not limited yet), and
# whether it refused the grid outright (later paths then do not ask again).
_FITTING_BLOCKS: list = [None]
_REFUSED: list = [False]


class GridUnavailable(RuntimeError):
    """The GPU refused the first cooperative launch of a path (its reason): the path goes layer by layer."""


def whole_steps(ctx) -> "WholeSteps | None":
    """The model's one-launch runner, or None when it does not qualify (the module's docstring)."""
    from nnctl.engine.cuda import columns
    from nnctl.nn.cudaops import DenseOp, FlattenOp
    from nnctl.nn.cudaops_dropout import DropoutOp

    model, ops, heads = ctx.model, ctx.ops, ctx.heads
    opt = model.optimizer
    if not ENABLED or ctx.sparse or ctx.several or len(heads) != 1 or ctx.id_checks or ctx.again:
        return None
    head = heads[0]
    if head.steps != 1 or head.weight != 1.0 or head.node != len(ops) - 1:
        return None
    if head.loss is not None and head.loss.custom:
        return None
    if ctx.sources != [[i - 1] for i in range(len(ops))] or ctx.ids[0]:
        return None
    if opt is not None and opt.clip_mode != CLIP_NONE:
        return None
    if model.store.fixed_values.shape[0] or columns.tall(ctx.batch_size):  # (bias sums: one thread's walk)
        return None
    dense, drops = [], []  # the Dense ops, and the Dropout after each (or None)
    for op in ops[1:] if type(ops[0]) is FlattenOp else ops:  # a leading Flatten: the batch's rows are flat already
        if type(op) is DenseOp and not op.penalties and len(op.in_shape) == 1:
            dense.append(op)
            drops.append(None)
        elif type(op) is DropoutOp and drops and drops[-1] is None and op is not ops[-1]:
            drops[-1] = op
        else:
            return None
    if not 1 <= len(dense) <= MAX_LAYERS:
        return None
    params, macs = model.store.values.shape[0], max(ctx.batch_size * op.din * op.units for op in dense)
    if macs < settings.SMALL_GEMM_MACS and params <= MAX_PARAMS:
        return WholeSteps(ctx, dense, drops, 0)
    if GRID and not _REFUSED[0] and macs <= GRID_MACS and params <= MAX_GRID_PARAMS:
        return WholeSteps(ctx, dense, drops, grid_blocks(ctx))
    return None


def grid_blocks(ctx) -> int:
    """A cooperative grid's blocks: one a multiprocessor (all resident at once, as a grid barrier needs); one
    under the simulator, whose grid barrier is its block's."""
    from nnctl.engine.cuda.launch import SIMULATED

    blocks = 1 if SIMULATED else int(ctx.cuda.get_current_device().MULTIPROCESSOR_COUNT)
    return min(blocks, _FITTING_BLOCKS[0] or blocks)


class WholeSteps:
    """The kernel's arguments for one CudaPath, made once (the ops' own buffers and weight views), and `train` /
    `predict` in its terms."""

    def __init__(self, ctx, ops, drops, blocks: int):
        bs, head = ctx.batch_size, ctx.heads[0]
        self.ctx, self.k = ctx, ctx.k
        self.blocks, self.launched = blocks, False  # a cooperative grid's blocks (0: one block); one launch done
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
        # Each layer's Dropout: its output buffer, rate (0: none) and key; its masks are drawn again backward.
        self.outs = tuple(y if drop is None else drop.view(drop.y, shape)
                          for drop, y, shape in zip(drops, self.ys, full))
        self.rates = tuple(0.0 if drop is None else float(drop.rate) for drop in drops)
        self.keys = tuple(np.uint64(0 if drop is None else drop.key) for drop in drops)
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
                data=None, counter0=0):
        from nnctl.engine.cuda.optim import update_scalars

        ctx, head = self.ctx, self.head
        if opt is None:  # inference without a compiled model
            code, hp, slots = 0, np.zeros(8), [self.no_slot] * 3
        else:
            code, hp, slots = opt.code, opt.hyperparameters(), ctx.slots
        lr, keep, a, b, c, d = update_scalars(hp)
        sparse = bool(training and head.loss.sparse)
        target_data = data.get("target0", self.no_targets) if data else self.no_targets
        labels_data = data.get("labels0", self.no_ids) if data else self.no_ids
        weight_data = data["weight0"] if data else self.no_targets
        args = (
            training, x, order, first, last, ctx.batch_size, self.xbuf, self.kernels, self.biases, self.dkernels,
            self.dbiases, self.zs, self.ys, self.dzs, self.dxs, self.acts, self.alphas, self.outs, self.rates,
            self.keys, np.int64(counter0),
            head.code if training else 0, float(head.loss.delta) if training else 0.0, bool(head.fused), sparse,
            target_data, labels_data, weight_data, self.target, self.labels, self.weight, self.grad,
            self.sample_losses, step_losses, out, logits, out_first, code, lr, keep, step_sizes, a, b, c, d,
            ctx.values, ctx.grads, *slots)
        while True:
            try:
                self.k.dense_steps(self.blocks, *args)
                self.launched = True
                return
            except Exception as error:  # noqa: BLE001 - the driver's refusal, whatever its class
                if not self.blocks or self.launched:
                    raise
                if "TOO_LARGE" in str(error) and self.blocks > 1:  # fewer blocks fit at once on this GPU
                    self.blocks = _FITTING_BLOCKS[0] = self.blocks // 2
                    continue
                _REFUSED[0] = True
                raise GridUnavailable(str(error).splitlines()[0] if str(error) else type(error).__name__) from error

    def train(self, data, order, first, last, step_losses, out, out_first) -> None:
        """Steps first..last − 1 (rows from the device `order`), each step's loss into step_losses[step] and the
        head's outputs into out (rows from out_first); the optimizer's step count moves on by the steps."""
        from nnctl.engine.cuda.optim import step_size

        opt = self.ctx.model.optimizer
        hp = opt.hyperparameters()
        sizes = np.array([step_size(opt.code, hp, opt.iterations + s) for s in range(last - first)], np.float32)
        self._launch(True, data["x0"], order, first, last, step_losses, out, out, out_first, opt,
                     self.ctx.cuda.to_device(sizes), data, opt.iterations - first)  # dropout's draw: the step count
        opt.iterations += last - first

    def predict(self, x, rows, logits, out) -> None:
        """The head's logits and outputs for the rows `rows` (device row numbers) of x, a batch at a time."""
        batches = -(-rows.shape[0] // self.ctx.batch_size)
        self._launch(False, x, rows, 0, batches, self.sample_losses, out, logits, 0, self.ctx.model.optimizer,
                     self.no_slot)
