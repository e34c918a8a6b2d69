"""Pooling layers: Max/AveragePooling1D/2D and GlobalMax/AveragePooling1D/2D, channels-last as in Keras 3.

One base class per family, parametrized by rank; a 1-D input runs through the 2-D kernels as a (n, 1, t, c) view.
"""

from __future__ import annotations

import numpy as np

from nnctl.engine.chunks import even_chunks, run_chunks
from nnctl.errors import ShapeError
from nnctl.nn.layers.arguments import (Bool, Literal, Optional, Padding, Sizes, check_bool, check_choice,
                                       check_sizes)
from nnctl.nn.layers.base import Layer

_AXES = {1: "(steps, channels)", 2: "(height, width, channels)"}
# A batch is pooled in CHUNKS chunks of images, on the chunk pool's threads when the input holds at least
# POOL_MIN_VALUES values (a hand-off costs ~20 µs; pooling runs at about a value a nanosecond).
CHUNKS = 8
POOL_MIN_VALUES = 1 << 17


def _who(layer) -> str:
    return f"{layer.type_name} `{layer.name or layer.type_name}`"


def pooled_size(size: int, pool: int, stride: int, padding: str) -> tuple[int, int]:
    """(output length, padding before) along one axis, as TF/Keras: 'same' pads max((out−1)·stride + pool − in,
    0) cells in total, the odd one after."""
    if padding == "valid":
        return (size - pool) // stride + 1 if size >= pool else 0, 0
    out = (size + stride - 1) // stride
    return out, max((out - 1) * stride + pool - size, 0) // 2


class _Pooled(Layer):
    """Runs a pooling layer through the 2-D kernels; subclasses plan the window in `_plan(input_shape)`."""

    rank = 2
    average = False

    def _plan(self, input_shape):
        """(kernel window (ph, pw, sh, sw, pt, pl), 4-D input shape, 4-D output shape), without the batch."""
        raise NotImplementedError

    def build(self, input_shape):
        super().build(input_shape)
        self.window, self.in4, self.out4 = self._plan(tuple(input_shape))

    prepooled = None  # the output the conv layer below computed for this layer (nnctl/nn/layers/conv_pool.py)
    passed = False

    def forward(self, x, training):
        self.passed, self.prepooled = x is self.prepooled, None
        if self.passed:
            return x
        n = x.shape[0]
        x4 = np.ascontiguousarray(x).reshape((n,) + self.in4)
        y = self._buffer("y", (n,) + self.out4)
        backend, window = self.backend, self.window
        if self.average:
            def run(index, first, count):
                backend.average_pool2d_forward(x4[first:first + count], *window, y[first:first + count])
        else:
            argmax = self.argmax = self._buffer("argmax", y.shape, np.int32)

            def run(index, first, count):
                images = slice(first, first + count)
                backend.max_pool2d_forward(x4[images], *window, y[images], argmax[images])
        self._run(run, x4)
        return y.reshape((n,) + self.output_shape)

    def backward(self, dy):
        if not self.needs_input_grad:
            return None
        if self.passed:  # the conv layer below unpools
            return dy
        n = dy.shape[0]
        dx = self._buffer("dx", (n,) + self.in4)
        dy = np.ascontiguousarray(dy)
        backend, window = self.backend, self.window
        if self.average:
            dy4 = dy.reshape((n,) + self.out4)

            def run(index, first, count):
                backend.average_pool2d_backward(dy4[first:first + count], *window, dx[first:first + count])
        else:
            dy2, argmax2, dx2 = dy.reshape(n, -1), self.argmax.reshape(n, -1), dx.reshape(n, -1)

            def run(index, first, count):
                images = slice(first, first + count)
                backend.max_pool_backward(dy2[images], argmax2[images], dx2[images])
        self._run(run, dx)
        return dx.reshape((n,) + self.input_shape)

    @staticmethod
    def _run(run, images):
        """Runs `run` over fixed chunks of the batch's images (nnctl/engine/chunks.py): each image is pooled
        alone, so the bytes never depend on the threads; calls under POOL_MIN_VALUES stay on this thread."""
        chunks = even_chunks(images.shape[0], CHUNKS)
        run_chunks(run, chunks, parallel=images.size >= POOL_MIN_VALUES)

    def _check_rank(self, shape):
        if len(shape) != self.rank + 1:
            raise ShapeError(f"{_who(self)} takes inputs of shape {_AXES[self.rank]}, got {shape}")


class _Pooling(_Pooled):
    """Max or average pooling over windows of `pool_size` cells moved by `strides` along each spatial axis."""

    def _configure(self, pool_size, strides, padding, data_format):
        self.pool_size = check_sizes("pool_size", pool_size, self.rank)
        self.strides = self.pool_size if strides is None else check_sizes("strides", strides, self.rank)
        self.padding = check_choice("padding", padding, ("valid", "same"))
        self.data_format = check_choice("data_format", data_format, ("channels_last",))

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        self._check_rank(shape)
        spatial = [pooled_size(s, p, k, self.padding) for s, p, k in zip(shape[:-1], self.pool_size, self.strides)]
        if any(out <= 0 for out, _ in spatial):
            raise ShapeError(f"{_who(self)}: an input of shape {shape} is too small for pool_size "
                             f"{list(self.pool_size)} with padding '{self.padding}' (the output would have shape "
                             f"{tuple(out for out, _ in spatial) + shape[-1:]})")
        return tuple(out for out, _ in spatial) + shape[-1:]

    def _plan(self, input_shape):
        pads = tuple(pooled_size(s, p, k, self.padding)[1]
                     for s, p, k in zip(input_shape[:-1], self.pool_size, self.strides))
        # A 1-D layer pools along w of a (n, 1, t, c) view, with a window one row high.
        lead = (1,) * (2 - self.rank)
        window = (*(lead + self.pool_size), *(lead + self.strides), *((0,) * len(lead) + pads))
        return window, lead + input_shape, lead + self.output_shape

    def get_config(self):
        return {"pool_size": list(self.pool_size), "strides": list(self.strides), "padding": self.padding,
                "data_format": self.data_format, **self.base_config()}


class MaxPooling1D(_Pooling):
    """(n, steps, channels) → the maximum of each window of `pool_size` steps."""

    type_name = "max_pooling1d"
    rank = 1

    def __init__(self, pool_size: Sizes = 2, strides: Optional[Sizes] = None, padding: Padding = "valid",
                 data_format: Literal["channels_last"] = "channels_last", **kwargs):
        super().__init__(**kwargs)
        self._configure(pool_size, strides, padding, data_format)


class AveragePooling1D(_Pooling):
    """(n, steps, channels) → the mean of each window of `pool_size` steps (real steps only under 'same')."""

    type_name = "average_pooling1d"
    rank = 1
    average = True

    def __init__(self, pool_size: Sizes = 2, strides: Optional[Sizes] = None, padding: Padding = "valid",
                 data_format: Literal["channels_last"] = "channels_last", **kwargs):
        super().__init__(**kwargs)
        self._configure(pool_size, strides, padding, data_format)


class MaxPooling2D(_Pooling):
    """(n, height, width, channels) → the maximum of each pool_size window."""

    type_name = "max_pooling2d"

    def __init__(self, pool_size: Sizes = (2, 2), strides: Optional[Sizes] = None, padding: Padding = "valid",
                 data_format: Literal["channels_last"] = "channels_last", **kwargs):
        super().__init__(**kwargs)
        self._configure(pool_size, strides, padding, data_format)


class AveragePooling2D(_Pooling):
    """(n, height, width, channels) → the mean of each pool_size window (real cells only under 'same')."""

    type_name = "average_pooling2d"
    average = True

    def __init__(self, pool_size: Sizes = (2, 2), strides: Optional[Sizes] = None, padding: Padding = "valid",
                 data_format: Literal["channels_last"] = "channels_last", **kwargs):
        super().__init__(**kwargs)
        self._configure(pool_size, strides, padding, data_format)


class _GlobalPooling(_Pooled):
    """Max or mean over every spatial position: (n, ..., channels) → (n, channels), or (n, 1, ..., 1, channels)
    with `keepdims`."""

    def __init__(self, data_format: Literal["channels_last"] = "channels_last", keepdims: Bool = False, **kwargs):
        super().__init__(**kwargs)
        self.data_format = check_choice("data_format", data_format, ("channels_last",))
        self.keepdims = check_bool("keepdims", keepdims)

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        self._check_rank(shape)
        return (1,) * self.rank + shape[-1:] if self.keepdims else shape[-1:]

    def _plan(self, input_shape):
        in4 = (1,) * (2 - self.rank) + input_shape
        h, w = in4[:2]
        return (h, w, h, w, 0, 0), in4, (1, 1, in4[-1])  # one window over the whole image

    def get_config(self):
        return {"data_format": self.data_format, "keepdims": self.keepdims, **self.base_config()}


class GlobalMaxPooling1D(_GlobalPooling):
    """(n, steps, channels) → the maximum over the steps, per channel."""

    type_name = "global_max_pooling1d"
    rank = 1


class GlobalAveragePooling1D(_GlobalPooling):
    """(n, steps, channels) → the mean over the steps, per channel; with a mask (Embedding's mask_zero,
    Masking), the mean over the real steps only, as in Keras (a sequence with none gives zeros)."""

    type_name = "global_average_pooling1d"
    rank = 1
    average = True

    def forward(self, x, training):
        self.step_share = None
        if self.input_mask is None:
            return super().forward(x, training)
        mask = self.input_mask.reshape(x.shape[0], -1).astype(x.dtype)
        self.step_share = mask / np.maximum(mask.sum(axis=1, keepdims=True), 1)  # each real step's share
        y = np.einsum("nt,ntc->nc", self.step_share, x)
        return y.reshape((x.shape[0],) + self.output_shape)

    def backward(self, dy):
        if self.step_share is None:
            return super().backward(dy)
        if not self.needs_input_grad:
            return None
        n = dy.shape[0]
        return (self.step_share[:, :, None] * dy.reshape(n, 1, -1)).astype(dy.dtype, copy=False)


class GlobalMaxPooling2D(_GlobalPooling):
    """(n, height, width, channels) → the maximum over the image, per channel."""

    type_name = "global_max_pooling2d"


class GlobalAveragePooling2D(_GlobalPooling):
    """(n, height, width, channels) → the mean over the image, per channel."""

    type_name = "global_average_pooling2d"
    average = True
