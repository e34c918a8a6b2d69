"""Dropout and SpatialDropout1D/2D on the CUDA path (see nn/cudaops.py): masks from the counter-based generator
(nnctl/engine/cuda/dropout.py), keyed by the run's seed and the layer's index, the draw numbered by the optimizer
step, so a resumed GPU run draws what it would have drawn had it never stopped."""

from __future__ import annotations

import numpy as np

from nnctl.nn.cudaops import Op, _size


class DropoutOp(Op):
    """Masks from the counter-based generator (nnctl/engine/cuda/dropout.py): key from the run's seed and the
    layer's index, the draw numbered by the optimizer step."""

    def __init__(self, ctx, layer, index):
        super().__init__(ctx, layer, index)
        self.rate, self.key = layer.rate, dropout_key(ctx.model, index)
        self.y, self.mask, self.dx = (self.buffer(self.in_shape) for _ in range(3))
        self.active = False

    def forward(self, x, m, training):
        self.active = training and self.rate > 0
        if not self.active:
            return x
        size = m * _size(self.in_shape)
        draw(self.ctx, x.reshape(size), self.key, self.rate, self.y[:size], self.mask[:size])
        return self.y[:size].reshape((m,) + self.out_shape)

    def backward(self, dy, m, fused=False):
        if not self.active:
            return dy
        size = m * _size(self.in_shape)
        self.ctx.k.multiply(dy.reshape(size), self.mask[:size], self.dx[:size])
        return self.dx[:size].reshape((m,) + self.in_shape)


def draw_multipliers(ctx, key: int, rate: float, out) -> None:
    """out (1-D) = dropout multipliers of the current step under `key`: 0 or 1/(1 − rate), as the masks of
    Dropout's kernel (the counter-based uniforms drawn over ones: the products are the multipliers)."""
    size = out.shape[0]
    ones = getattr(ctx, "dropout_ones", None)  # one buffer of ones for every dropout op of the model
    if ones is None or ones.shape[0] < size:
        ones = ctx.dropout_ones = ctx.cuda.to_device(np.ones(size, np.float32))
    draw(ctx, ones[:size], key, rate, out, out)


def draw(ctx, x, key: int, rate: float, y, mask) -> None:
    """Dropout's counter-based draw numbered by the optimizer step: the host's count; or, in a step replayed as a
    CUDA graph (nn/cudagraph.py), the count on the device (ctx.counter: the step-number array and the optimizer
    step less the step number)."""
    if ctx.counter is None:
        ctx.k.dropout_counter_forward(x, key, ctx.model.optimizer.iterations, rate, y, mask)
    else:
        ctx.k.dropout_counter_forward_at(x, key, ctx.counter[0], ctx.counter[1], rate, y, mask)


class SpatialDropoutOp(DropoutOp):
    """SpatialDropout1D/2D: one draw per (sample, channel) from the counter-based generator, that channel's
    multiplier applied at every step or pixel."""

    def __init__(self, ctx, layer, index):
        super().__init__(ctx, layer, index)
        self.channels = self.in_shape[-1]
        self.scale = ctx.empty(ctx.batch_size * self.channels, np.float32)

    def forward(self, x, m, training):
        self.active = training and self.rate > 0
        if not self.active:
            return x
        k, size, c = self.ctx.k, m * self.channels, self.channels
        draw_multipliers(self.ctx, self.key, self.rate, self.scale[:size])
        y = self.view(self.y, (m, _size(self.in_shape) // c, c))
        k.scale_channels(x.reshape(y.shape), self.scale[:size].reshape(m, c), y)
        return y.reshape((m,) + self.out_shape)

    def backward(self, dy, m, fused=False):
        if not self.active:
            return dy
        c = self.channels
        dx = self.view(self.dx, (m, _size(self.in_shape) // c, c))
        self.ctx.k.scale_channels(dy.reshape(dx.shape), self.scale[:m * c].reshape(m, c), dx)
        return dx.reshape((m,) + self.in_shape)


def dropout_key(model, index: int) -> int:
    """The key of the Dropout layer at `index`: from the run's seed (a seeded run drops the same units on every
    run, and on resuming), else drawn from the model's generator."""
    seed = model.seed if model.seed is not None else int(model.rng.integers(1 << 62))
    return (seed * 0x9E3779B97F4A7C15 + (index + 1) * 0xBF58476D1CE4E5B9) % (1 << 64)
