"""Keras masks' own layers on the CUDA path (see nn/cudaops.py): Masking, which makes a mask from its input, and
GlobalAveragePooling1D, whose mean covers a sequence's real steps only when a mask reaches it."""

from __future__ import annotations

import numpy as np

from nnctl.nn.cudaops import Op, PoolOp, _size


class MaskedMeanOp(Op):
    """GlobalAveragePooling1D: the mean over the steps; with a mask, over the real steps only (each real step's
    share of its sequence's mean, as the CPU layer), else the pooling op's mean."""

    def __init__(self, ctx, layer, index):
        super().__init__(ctx, layer, index)
        self.pool = PoolOp(ctx, layer, index)
        self.steps, self.channels = self.in_shape
        self.share = self.buffer((self.steps,))
        self.y, self.dx = self.buffer((self.channels,)), self.buffer(self.in_shape)

    def forward(self, x, m, training):
        self.masked = self.in_mask is not None
        if not self.masked:
            return self.pool.forward(x, m, training)
        k, share = self.ctx.k, self.view(self.share, (m, self.steps))
        k.step_shares(self.in_mask.reshape(m, self.steps), share)
        k.masked_mean(share, x.reshape(m, self.steps, self.channels), y := self.view(self.y, (m, self.channels)))
        return y

    def backward(self, dy, m, fused=False):
        if not self.masked:
            return self.pool.backward(dy, m, fused)
        if not self.needs_dx:
            return None
        dx = self.view(self.dx, (m, self.steps, self.channels))
        self.ctx.k.spread_steps(self.view(self.share, (m, self.steps)), dy.reshape(m, self.channels), dx)
        return dx


class MaskingOp(Op):
    """Masking: the steps whose features all equal mask_value become zeros and are masked for the layers after."""

    def __init__(self, ctx, layer, index):
        super().__init__(ctx, layer, index)
        self.steps = _size(self.in_shape[:-1])
        self.keep, self.y = self.buffer((self.steps,), np.uint8), self.buffer(self.in_shape)
        self.dx = self.buffer(self.in_shape)

    def forward(self, x, m, training):
        shape = (m, self.steps, self.in_shape[-1])
        self.mask = self.view(self.keep, (m, self.steps))
        self.ctx.k.mask_values(x.reshape(shape), self.layer.mask_value, self.mask, y := self.view(self.y, shape))
        return y.reshape((m,) + self.out_shape)

    def out_mask(self, mask):
        return self.mask.reshape((-1,) + self.in_shape[:-1])

    def backward(self, dy, m, fused=False):
        if not self.needs_dx:
            return None
        shape = (m, self.steps, self.in_shape[-1])
        self.ctx.k.mask_steps(dy.reshape(shape), self.view(self.keep, (m, self.steps)), dx := self.view(self.dx, shape))
        return dx.reshape((m,) + self.in_shape)
