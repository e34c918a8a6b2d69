"""Normalization layers: BatchNormalization (batch statistics in training, moving ones in inference) and
LayerNormalization (per-sample statistics) — one fused kernel forward and one backward each.
"""

from __future__ import annotations

import numpy as np

from nnctl.engine import threads
from nnctl.errors import ArgumentError, ShapeError, check_float_range, show
from nnctl.nn.layers.arguments import (Axis, Bool, NamedSpec, Optional, PositiveNumber, Rate, check_bool,
                                       check_initializer, check_regularizer)
from nnctl.nn.layers.base import Layer

# Work per value handed to threads.parts (in its multiply-add units): calls of 1M values and more are split
# over threads. Each split call wakes the sleeping threads twice (~0.5 ms of work per pass pays for that);
# measured on a shared 2-core machine, a 0.5M-value BatchNormalization step was 15 % slower split than not.
_WORK_PER_VALUE = 2


def _is_axis(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _resolve_axes(axes, input_shape) -> list[int]:
    """Axes (counting the batch as axis 0, as Keras) as increasing positive numbers, or a ShapeError."""
    rank = len(input_shape) + 1
    resolved = []
    for axis in axes:
        if not -rank <= axis < rank or axis % rank == 0:
            raise ShapeError(f"`axis` {axis} is out of range for an input of rank {rank} (allowed: 1 to {rank - 1} "
                             f"or -{rank - 1} to -1; axis 0 is the batch)")
        resolved.append(axis % rank)
    if any(b <= a for a, b in zip(resolved, resolved[1:])):
        raise ShapeError(f"`axis` must list distinct axes in increasing order, got {show(list(axes))}")
    return resolved


class _RowView:
    """A batch seen as (rows, width) with the normalized axes last and contiguous, the layout the kernels take.
    The usual case (the last axes) is a free reshape; other axes are moved last and back (a copy each way)."""

    def __init__(self, rank: int, axes: list[int]):
        self.perm = tuple([a for a in range(rank) if a not in axes] + axes)
        self.inverse = tuple(int(i) for i in np.argsort(self.perm))
        self.moves = self.perm != tuple(range(rank))

    def to_rows(self, x, width):
        moved = np.ascontiguousarray(x.transpose(self.perm) if self.moves else x)
        return moved.reshape(-1, width), moved.shape

    def from_rows(self, rows, moved_shape):
        moved = rows.reshape(moved_shape)
        return np.ascontiguousarray(moved.transpose(self.inverse)) if self.moves else moved


class _Normalization(Layer):
    """Shared by both layers: the arguments they share, gamma/beta (or constants when off), the row view."""

    def _set_common(self, epsilon, center, scale, beta_initializer, gamma_initializer, beta_regularizer,
                    gamma_regularizer):
        self.epsilon = check_float_range("epsilon", epsilon, 0.0, float("inf"), low_open=True)
        self.center = check_bool("center", center)
        self.scale = check_bool("scale", scale)
        self.beta_initializer = check_initializer("beta_initializer", beta_initializer)
        self.gamma_initializer = check_initializer("gamma_initializer", gamma_initializer)
        self.beta_regularizer = check_regularizer("beta_regularizer", beta_regularizer)
        self.gamma_regularizer = check_regularizer("gamma_regularizer", gamma_regularizer)

    def _add_gamma_beta(self, shape):
        """Keras's order: gamma (if scale), then beta (if center)."""
        self.gamma = (self.add_weight("gamma", shape, self.gamma_initializer, self.gamma_regularizer)
                      if self.scale else None)
        self.beta = (self.add_weight("beta", shape, self.beta_initializer, self.beta_regularizer)
                     if self.center else None)

    def _values(self, width):
        """gamma and beta as (width,) arrays; ones and zeros in place of a switched-off one."""
        gamma = self.gamma.value.reshape(width) if self.gamma is not None else self._constant("ones", width, 1.0)
        beta = self.beta.value.reshape(width) if self.beta is not None else self._constant("zeros", width, 0.0)
        return gamma, beta

    def _grads(self, width):
        """Where the kernels write dgamma and dbeta: the weights' gradients, or scratch for a switched-off one."""
        dgamma = self.gamma.grad.reshape(width) if self.gamma is not None else self._buffer("dgamma", (width,))
        dbeta = self.beta.grad.reshape(width) if self.beta is not None else self._buffer("dbeta", (width,))
        return dgamma, dbeta

    def _constant(self, key, width, value):
        buf = self._buffer(key, (width,))
        buf.fill(value)
        return buf

    def _common_config(self) -> dict:
        return {"epsilon": self.epsilon, "center": self.center, "scale": self.scale,
                "beta_initializer": self.beta_initializer, "gamma_initializer": self.gamma_initializer,
                "beta_regularizer": self.beta_regularizer, "gamma_regularizer": self.gamma_regularizer}


class BatchNormalization(_Normalization):
    """Normalizes each channel (`axis`) by the batch's mean and variance in training, by the moving averages
    of those in inference; then y = gamma·x̂ + beta. A frozen layer (`trainable: false`) always runs in
    inference mode and leaves its moving statistics alone, as in Keras 3."""

    type_name = "batch_normalization"
    supports_masking = True

    def __init__(self, axis: Axis = -1, momentum: Rate = 0.99, epsilon: PositiveNumber = 0.001, center: Bool = True,
                 scale: Bool = True, beta_initializer: NamedSpec = "zeros", gamma_initializer: NamedSpec = "ones",
                 moving_mean_initializer: NamedSpec = "zeros", moving_variance_initializer: NamedSpec = "ones",
                 beta_regularizer: Optional[NamedSpec] = None, gamma_regularizer: Optional[NamedSpec] = None,
                 **kwargs):
        super().__init__(**kwargs)
        if not _is_axis(axis):
            raise ArgumentError(f"`axis` must be an integer (the channel axis, -1 for the last), got {show(axis)}.")
        self.axis = axis
        self.momentum = check_float_range("momentum", momentum, 0.0, 1.0, high_open=True)
        self._set_common(epsilon, center, scale, beta_initializer, gamma_initializer, beta_regularizer,
                         gamma_regularizer)
        self.moving_mean_initializer = check_initializer("moving_mean_initializer", moving_mean_initializer)
        self.moving_variance_initializer = check_initializer("moving_variance_initializer",
                                                             moving_variance_initializer)

    def build(self, input_shape):
        super().build(input_shape)
        axes = _resolve_axes([self.axis], input_shape)
        self.view = _RowView(len(input_shape) + 1, axes)
        self.channels = input_shape[axes[0] - 1]
        self._add_gamma_beta((self.channels,))
        # Written by the layer itself during training, never by the optimizer.
        self.moving_mean = self.add_weight("moving_mean", (self.channels,), self.moving_mean_initializer,
                                           trainable=False)
        self.moving_variance = self.add_weight("moving_variance", (self.channels,),
                                               self.moving_variance_initializer, trainable=False)

    def forward(self, x, training):
        channels = self.channels
        x2, self.moved_shape = self.view.to_rows(x, channels)
        y2 = self._buffer("y", x2.shape)
        gamma, beta = self._values(channels)
        self.batch_mode = bool(training and self.trainable)
        if not self.batch_mode:
            self.backend.batch_norm_inference(x2, gamma, beta, self.moving_mean.value, self.moving_variance.value,
                                              self.epsilon, y2)
            return self.view.from_rows(y2, self.moved_shape)
        self.x2 = x2
        self.mean = self._buffer("mean", (channels,), np.float64)
        self.inv_std = self._buffer("inv_std", (channels,), np.float64)
        args = (x2, gamma, beta, self.momentum, self.epsilon, self.moving_mean.value, self.moving_variance.value,
                self.mean, self.inv_std, y2)
        parts = threads.parts(x2.size * _WORK_PER_VALUE)
        if parts > 1:
            self.backend.batch_norm_forward_split(*args, parts)
        else:
            self.backend.batch_norm_forward(*args)
        return self.view.from_rows(y2, self.moved_shape)

    def backward(self, dy):
        channels = self.channels
        dy2, _ = self.view.to_rows(dy, channels)
        gamma, _ = self._values(channels)
        dx2 = self._buffer("dx", dy2.shape)
        if not self.batch_mode:  # frozen: the moving statistics are constants, and so are gamma and beta
            if not self.needs_input_grad:
                return None
            self.backend.batch_norm_inference_backward(dy2, gamma, self.moving_variance.value, self.epsilon, dx2)
            return self.view.from_rows(dx2, self.moved_shape)
        dgamma, dbeta = self._grads(channels)
        args = (dy2, self.x2, gamma, self.mean, self.inv_std, dgamma, dbeta, self.needs_input_grad, dx2)
        parts = threads.parts(dy2.size * _WORK_PER_VALUE)
        if parts > 1:
            self.backend.batch_norm_backward_split(*args, parts)
        else:
            self.backend.batch_norm_backward(*args)
        return self.view.from_rows(dx2, self.moved_shape) if self.needs_input_grad else None

    def get_config(self):
        return {"axis": self.axis, "momentum": self.momentum, **self._common_config(),
                "moving_mean_initializer": self.moving_mean_initializer,
                "moving_variance_initializer": self.moving_variance_initializer, **self.base_config()}


class LayerNormalization(_Normalization):
    """Normalizes each sample over `axis` (an axis or a list of them) by its own mean and variance, then
    y = gamma·x̂ + beta with gamma and beta shaped like the normalized axes (Keras 3)."""

    type_name = "layer_normalization"
    supports_masking = True

    def __init__(self, axis: Axis = -1, epsilon: PositiveNumber = 0.001, center: Bool = True, scale: Bool = True,
                 beta_initializer: NamedSpec = "zeros", gamma_initializer: NamedSpec = "ones",
                 beta_regularizer: Optional[NamedSpec] = None, gamma_regularizer: Optional[NamedSpec] = None,
                 **kwargs):
        super().__init__(**kwargs)
        if not (_is_axis(axis) or (isinstance(axis, (list, tuple)) and axis and all(map(_is_axis, axis)))):
            raise ArgumentError(f"`axis` must be an integer or a non-empty list of integers, got {show(axis)}.")
        self.axis = list(axis) if isinstance(axis, (list, tuple)) else axis
        self._set_common(epsilon, center, scale, beta_initializer, gamma_initializer, beta_regularizer,
                         gamma_regularizer)

    def build(self, input_shape):
        super().build(input_shape)
        axes = _resolve_axes(self.axis if isinstance(self.axis, list) else [self.axis], input_shape)
        self.view = _RowView(len(input_shape) + 1, axes)
        shape = tuple(input_shape[a - 1] for a in axes)
        self.width = int(np.prod(shape))
        self._add_gamma_beta(shape)

    def forward(self, x, training):
        x2, self.moved_shape = self.view.to_rows(x, self.width)
        y2 = self._buffer("y", x2.shape)
        gamma, beta = self._values(self.width)
        self.x2 = x2
        self.mean = self._buffer("mean", (x2.shape[0],), np.float64)
        self.inv_std = self._buffer("inv_std", (x2.shape[0],), np.float64)
        args = (x2, gamma, beta, self.epsilon, self.mean, self.inv_std, y2)
        parts = threads.parts(x2.size * _WORK_PER_VALUE)
        if parts > 1:
            self.backend.layer_norm_forward_split(*args, parts)
        else:
            self.backend.layer_norm_forward(*args)
        return self.view.from_rows(y2, self.moved_shape)

    def backward(self, dy):
        dy2, _ = self.view.to_rows(dy, self.width)
        gamma, _ = self._values(self.width)
        dgamma, dbeta = self._grads(self.width)
        dx2 = self._buffer("dx", dy2.shape)
        args = (dy2, self.x2, gamma, self.mean, self.inv_std, dgamma, dbeta, self.needs_input_grad, dx2)
        parts = threads.parts(dy2.size * _WORK_PER_VALUE)
        if parts > 1:
            self.backend.layer_norm_backward_split(*args, parts)
        else:
            self.backend.layer_norm_backward(*args)
        return self.view.from_rows(dx2, self.moved_shape) if self.needs_input_grad else None

    def get_config(self):
        return {"axis": self.axis, **self._common_config(), **self.base_config()}
