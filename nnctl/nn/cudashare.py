"""Shared weights on the CUDA path (nn/cudapath.py, and inside a nested model, nn/cudaops_nested.py): a layer
called at several nodes has one set of weights, so its uses' gradients add up. In the backward, before a later use
writes its weights' gradients, the earlier uses' are kept aside and the gradients zeroed; after it they are added
back (an embedding table's gradient is written whole, so it adds up the same). Its regularizers count once, at its
first use."""

from __future__ import annotations

import numpy as np

from nnctl.nn.cudaviews import reshaped


def shared_weights(ctx, ops, first_use) -> dict:
    """{node: [(span of a weight in ctx.grads, room to keep its gradient)]} for every use of a layer used at
    several nodes; the later uses' penalties dropped."""
    uses: dict = {}
    for index, owner in enumerate(first_use):
        uses.setdefault(owner, []).append(index)
        if owner != index:
            ops[index].penalties = []
    store, again = ctx.model.store, {}
    for group in (group for group in uses.values() if len(group) > 1):
        params = [p for p in ops[group[0]].layer.params if p.trainable]
        spans = [store.slice_of(p) for p in params]
        sizes = [span.stop - span.start for span in spans]
        rows = [(size // width, width) for size, width in zip(sizes, map(_width, params))]
        for index in group:
            room = ctx.empty(max(1, sum(sizes)))
            again[index] = [(span, room[a:a + size], shape)
                            for span, a, size, shape in zip(spans, np.cumsum([0] + sizes), sizes, rows)]
    return again


def _width(param) -> int:
    """A weight's last axis: its gradient is copied as rows of that width (one launch's threads across a row;
    a million-weight table as a single row would leave 15 of a block's 16 rows of threads idle)."""
    return int(param.shape[-1]) if param.shape and param.shape[-1] > 0 else 1


def backward_adding(ctx, again, written: set, index, op, dy, m, fused=False):
    """op.backward(dy, m, fused) for node `index`, its weights' gradients added to what an earlier use wrote in this
    backward (`written`: the spans written so far, updated)."""
    kept = [(ctx.grads[span], room, rows) for span, room, rows in again.get(index, []) if span.start in written]
    for grad, room, rows in kept:  # (copies by kernels, in order with the others: a step replayed as a CUDA graph too)
        ctx.k.copy_columns(reshaped(grad, rows), reshaped(room, rows), 0)
        ctx.k.copy_columns(reshaped(_zeros(ctx, grad.shape[0]), rows), reshaped(grad, rows), 0)
    dx = op.backward(dy, m, fused=fused)
    for grad, room, _ in kept:
        ctx.k.add(grad, room, grad)
    written.update(span.start for span, *_ in again.get(index, []))
    return dx


def _zeros(ctx, size):
    zeros = getattr(ctx, "shared_zeros", None)
    if zeros is None or zeros.shape[0] < size:
        zeros = ctx.shared_zeros = ctx.zeros(size)
    return zeros[:size]
