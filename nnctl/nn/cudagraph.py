"""`device: cuda`: a model's training steps replayed as a CUDA graph (nnctl/engine/cuda/graphs.py) — on a GPU, the
first full batch of a runner call runs launch by launch, the second is recorded into a graph, and every later
full batch is one launch of that graph; the short last batch runs launch by launch. A step of a few dozen small
launches (a convnet's, a recurrent model's) then costs one driver call of host time instead of a few dozen of
numba-cuda's. Inference (validation, `evaluate`, `predict`) replays its batches the same way.

Every step of a runner call, replayed or not, runs the same launches with the same arguments (`ReplayedSteps`):
the batch's row numbers, the step's losses and outputs, the optimizer's step size and dropout's draw number are
found on the device from the step number kept there, so the launches of one full step are those of the next
(tested under the simulator, launch by launch). A model replays when nothing in its step is decided on the host
each step (`replayable`): not with computed token ids, layers or losses run by their CPU code or on GPU arrays,
or a streamed dataset; those run launch by launch as before.
NNCTL_CUDA_GRAPHS=0 turns it off. Where recording fails (a driver that refuses), a warning says so and the steps
run launch by launch.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from nnctl.nn.cudaviews import first_rows, reshaped

ENABLED = os.environ.get("NNCTL_CUDA_GRAPHS", "1") != "0"
_FAILED: list = [None]  # why recording failed in this process (later paths then do not try)
_ERROR: list = [None]  # the error itself, traceback and all (bench/gpu_check.sh prints it)


def replayable(ctx) -> bool:
    """Whether `ctx`'s (a CudaPath's) training steps can run as `ReplayedSteps` (the module's docstring)."""
    if not ENABLED or ctx.id_checks or ctx.model.optimizer is None:
        return False
    if any(head.loss is not None and head.loss.custom for head in ctx.heads):
        return False
    return all(op.replayable for op in ctx.ops)


def recorder():
    """graphs.record on a GPU; None under the simulator, or once recording failed (tests put a stand-in here)."""
    from nnctl.engine.cuda import graphs
    from nnctl.engine.cuda.launch import SIMULATED

    return None if SIMULATED or _FAILED[0] else graphs.record


class ReplayedSteps:
    """A CudaPath's training steps with the step number on the device (state), each step's launches the same."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.state = ctx.empty(1, np.int64)
        self.rows = ctx.empty(ctx.batch_size, np.int64)
        # The step's losses before they go to their column of the call's table: one head's; or each head's, then
        # the penalties.
        self.values = ctx.cuda.to_device(np.zeros(len(ctx.heads) + 1 if ctx.several else 1))
        heads = len(ctx.heads)
        self.sinks = ((self.values, self.values[:heads].reshape(heads, 1), self.values[heads:]) if ctx.several else
                      (self.values, None, None))

    def train(self, data, order, first, last, table, outputs, first_row) -> None:
        """Steps first..last−1 of the epoch's `order` (device rows), their losses into `table` (heads (+ penalties)
        × steps) and the outputs the metrics read into `outputs` from `first_row` on."""
        from nnctl.engine.cuda.optim import step_size

        ctx, n, bs = self.ctx, order.shape[0], self.ctx.batch_size
        opt = ctx.model.optimizer
        hp = opt.hyperparameters()
        sizes = [step_size(opt.code, hp, opt.iterations + s) for s in range(last - first)]
        step_sizes = ctx.cuda.to_device(np.array(sizes or [0.0], np.float32))
        self.state.copy_to_device(np.array([first], np.int64))

        def update():
            ctx.k.optimizer_step_at(opt.code, hp, step_sizes, self.state, first, ctx.offsets, ctx.values, ctx.grads,
                                    *ctx.slots, opt.clip_mode, opt.clip)

        def step(m):
            rows = first_rows(self.rows, m)
            ctx.k.next_rows(order, self.state, bs, rows)
            ctx._step(data, rows, 0, self.sinks, update=update)
            for head, out in zip(ctx.heads, outputs):
                ctx.k.place_rows(head.output(ctx, m), out, self.state, bs, first_row)
            ctx.k.record_step(self.values, table, self.state)

        ctx.counter = (self.state, opt.iterations - first)  # dropout's draws numbered by the step on the device
        try:
            self._steps(step, n, first, last)
        finally:
            ctx.counter = None
        opt.iterations += last - first

    def predict(self, data, rows, count, logits, outputs, masks) -> None:
        """Inference over `count` rows (`rows`: their device row numbers), each batch's logits, outputs and Keras
        masks into the heads' `logits`, `outputs` and `masks` (a head's made at its first batch that has one)."""
        ctx, bs = self.ctx, self.ctx.batch_size
        self.state.copy_to_device(np.zeros(1, np.int64))

        def step(m):
            batch = first_rows(self.rows, m)
            ctx.k.next_rows(rows, self.state, bs, batch)
            ctx._forward(data, batch)
            for index, head in enumerate(ctx.heads):
                ctx.k.place_rows(head.logits(ctx, m), logits[index], self.state, bs, 0)
                ctx.k.place_rows(head.output(ctx, m), outputs[index], self.state, bs, 0)
                mask = ctx.node_masks[head.node] if head.steps > 1 else None
                if mask is not None:
                    if masks[index] is None:
                        masks[index] = ctx.empty((max(1, count), head.steps), np.uint8)
                    ctx.k.place_rows(reshaped(mask, (m, head.steps)), masks[index], self.state, bs, 0)
            ctx.k.next_step(self.state)

        self._steps(step, count, 0, -(-count // bs))

    def _steps(self, step, n, first, last) -> None:
        """step(m) for each step first..last−1: the second full one recorded, the later full ones replayed."""
        bs, graph, full = self.ctx.batch_size, None, 0
        for s in range(first, last):
            m = min(n, (s + 1) * bs) - s * bs
            if m == bs:
                full += 1
                if graph is not None and not graph.valid():  # a scratch buffer it reads was replaced
                    graph = None
                if graph is None and full >= 2:  # (the first full step ran launch by launch: kernels compiled)
                    graph = self._record(lambda: step(bs))
                if graph is not None:
                    graph.launch()
                    continue
            step(m)

    def _record(self, run):
        """run()'s graph, or None (recording unavailable or refused: then a warning, once a process)."""
        record = recorder()
        if record is None:
            return None
        try:
            return record(run)
        except Exception as error:  # the driver's or cuda.core's: any refusal means launch by launch
            _FAILED[0], _ERROR[0] = f"{type(error).__name__}: {error}", error
            warnings.warn(f"device cuda: the steps run launch by launch: recording them as a CUDA graph failed "
                          f"({_FAILED[0]})", RuntimeWarning, stacklevel=5)
            return None
