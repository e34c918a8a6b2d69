"""Convolution layers: Conv1D and Conv2D, one `BaseConv(rank)` as in Keras 3 (channels-last).

The math lives in nnctl/engine/convolution.py (GEMMs per chunk of images); bias and activation run on each
chunk's rows of the (batch·positions, filters) matrix with Dense's fused kernels, and the loss can fuse with
the output activation as it does with Dense.
"""

from __future__ import annotations

import numpy as np

from nnctl.engine.cpu.dense import ACTIVATION_CODES
from nnctl.engine.convolution import ConvPlan, output_length
from nnctl.errors import ArgumentError, ShapeError, check_positive_int
from nnctl.nn.layers.arguments import (Bool, CausalPadding, Literal, NamedSpec, Number, Optional, Padding, Sizes,
                                       Text, Width, check_choice, check_sizes)
from nnctl.nn.layers import conv_pool
from nnctl.nn.layers.core import _Activated


class BaseConv(_Activated):
    """An N-d convolution (rank 1 or 2): y = act(conv(x, kernel) + bias); kernel (*kernel_size, in, filters).

    Conv1D runs as a 2-D convolution of height 1.
    """

    rank = 2
    paddings = ("valid", "same")

    def __init__(self, filters, kernel_size, strides=1, padding="valid", data_format="channels_last",
                 dilation_rate=1, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, alpha=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = check_positive_int("filters", filters)
        self.kernel_size = check_sizes("kernel_size", kernel_size, self.rank)
        self.strides = check_sizes("strides", strides, self.rank)
        self.dilation_rate = check_sizes("dilation_rate", dilation_rate, self.rank)
        self.padding = check_choice("padding", padding.lower() if isinstance(padding, str) else padding,
                                    self.paddings)
        self.data_format = check_choice("data_format", data_format, ("channels_last",))
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ArgumentError(f"`strides > 1` not supported in conjunction with `dilation_rate > 1`, got "
                                f"strides={list(self.strides)} and dilation_rate={list(self.dilation_rate)}.")
        self._set_kernel_and_bias(use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                                  bias_regularizer)
        self._set_activation(activation, alpha)
        self.plan = None
        self.pool_after = None  # the max pooling this layer runs fused with (nnctl/nn/layers/conv_pool.py)
        self.fused = self.winograd = False  # winograd: the fused pair's last forward ran by Winograd

    def _as_2d(self, values):
        """Conv1D's shapes and sizes with a leading height of 1: (length, channels) → (1, length, channels)."""
        return tuple(values) if self.rank == 2 else (1,) + tuple(values)

    def _paddings_2d(self):
        return (self.padding,) * 2 if self.rank == 2 else ("valid", self.padding)

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != self.rank + 1:
            raise ShapeError(f"{self.type_name} `{self.name}` takes inputs of shape ({self._axes()}, channels), "
                             f"got {input_shape}")
        out = []
        for axis in range(self.rank):
            length, _ = output_length(input_shape[axis], self.kernel_size[axis], self.strides[axis],
                                      self.dilation_rate[axis], self.padding)
            out.append(length)
        if min(out) <= 0:
            raise ShapeError(f"{self.type_name} `{self.name}`: an input of shape {input_shape} is too small for "
                             f"kernel_size {list(self.kernel_size)} with dilation_rate {list(self.dilation_rate)} "
                             f"and padding '{self.padding}' (the output would have shape {tuple(out)})")
        return tuple(out) + (self.filters,)

    def _axes(self):
        return "length" if self.rank == 1 else "height, width"

    def build(self, input_shape):
        super().build(input_shape)
        shape = tuple(self.kernel_size) + (input_shape[-1], self.filters)
        self.kernel = self.add_weight("kernel", shape, self.kernel_initializer, self.kernel_regularizer)
        self.bias = (self.add_weight("bias", (self.filters,), self.bias_initializer, self.bias_regularizer)
                     if self.use_bias else None)
        self.plan = None  # made on the first call, when the backend is known

    def _plan(self):
        crop = conv_pool.read_by(self.pool_after, self._as_2d(self.output_shape[:-1]))
        if self.plan is None or self.plan.backend is not self.backend or self.plan.crop != crop:
            self.plan = ConvPlan(self.backend, self._as_2d(self.input_shape), self._as_2d(self.kernel_size),
                                 self._as_2d(self.strides), self._as_2d(self.dilation_rate),
                                 self._paddings_2d(), self.filters, crop=crop)
        return self.plan

    def _bias_value(self):
        if self.bias is not None:
            return self.bias.value
        return self.__dict__.setdefault("_zero_bias", np.zeros(self.filters, self.dtype))

    def forward(self, x, training):
        plan = self._plan()
        x4 = np.ascontiguousarray(x).reshape((x.shape[0],) + plan.in_shape)
        self.x4 = x4
        self.fused = self.pool_after is not None
        if self.fused:
            return conv_pool.forward(self, x4, training)
        z = self._buffer("z", (x.shape[0] * plan.positions, self.filters))
        y = z if self.activation == "linear" else self._buffer("y", z.shape)
        self.z, self.y = z, y  # as _Activated keeps them: the loss may read z as logits
        bias, backend = self._bias_value(), self.backend

        def activate(index, rows):
            backend.bias_act_forward(z[rows], bias, self.act_code, self.alpha, y[rows])

        plan.forward(x4, self.kernel.value.reshape(plan.depth, self.filters), z, activate, keep=training)
        return y.reshape((x.shape[0],) + self.output_shape)

    def backward(self, dy, from_preactivation=False):
        if self.fused:
            return conv_pool.backward(self, dy)
        plan, x4, z, y, backend = self.plan, self.x4, self.z, self.y, self.backend
        dy2 = np.ascontiguousarray(dy).reshape(-1, self.filters)
        dz = self._buffer("dz", dy2.shape)
        code = ACTIVATION_CODES["linear"] if from_preactivation else self.act_code
        chunks = len(plan.chunks(x4.shape[0]))
        db_parts = self._buffer(("db", chunks), (chunks, 1, self.filters))  # summed in chunk order below

        def deactivate(index, rows):
            backend.bias_act_backward(dy2[rows], z[rows], y[rows], code, self.alpha, dz[rows], db_parts[index, 0])

        dkernel = self.kernel.grad.reshape(plan.depth, self.filters)
        dx = self._buffer("dx", x4.shape) if self.needs_input_grad else None
        plan.backward(x4, dz, self.kernel.value.reshape(plan.depth, self.filters), dkernel, dx, deactivate)
        db = self.bias.grad if self.bias is not None else self._buffer("db", (self.filters,))
        backend.sum_partials(db_parts, chunks, db.reshape(1, self.filters))
        return None if dx is None else dx.reshape((x4.shape[0],) + tuple(self.input_shape))

    def get_config(self):
        def sizes(values):
            return list(values)
        return {"filters": self.filters, "kernel_size": sizes(self.kernel_size), "strides": sizes(self.strides),
                "padding": self.padding, "data_format": self.data_format,
                "dilation_rate": sizes(self.dilation_rate), "activation": self.activation,
                "use_bias": self.use_bias, "kernel_initializer": self.kernel_initializer,
                "bias_initializer": self.bias_initializer, "kernel_regularizer": self.kernel_regularizer,
                "bias_regularizer": self.bias_regularizer, "alpha": self.alpha, **self.base_config()}


class Conv1D(BaseConv):
    """1-D convolution over (length, channels); kernel (kernel_size, in, filters). 'causal' pads
    (kernel_size − 1)·dilation_rate zeros before the sequence, so output t sees inputs ≤ t."""

    type_name = "conv1d"
    rank = 1
    paddings = ("valid", "same", "causal")

    def __init__(self, filters: Width, kernel_size: Sizes, strides: Sizes = 1, padding: CausalPadding = "valid",
                 data_format: Literal["channels_last"] = "channels_last", dilation_rate: Sizes = 1,
                 activation: Optional[Text] = None, use_bias: Bool = True,
                 kernel_initializer: NamedSpec = "glorot_uniform", bias_initializer: NamedSpec = "zeros",
                 kernel_regularizer: Optional[NamedSpec] = None, bias_regularizer: Optional[NamedSpec] = None,
                 alpha: Optional[Number] = None, **kwargs):
        super().__init__(filters, kernel_size, strides, padding, data_format, dilation_rate, activation, use_bias,
                         kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer, alpha,
                         **kwargs)


class Conv2D(BaseConv):
    """2-D convolution over (height, width, channels); kernel (kh, kw, in, filters)."""

    type_name = "conv2d"
    rank = 2

    def __init__(self, filters: Width, kernel_size: Sizes, strides: Sizes = 1, padding: Padding = "valid",
                 data_format: Literal["channels_last"] = "channels_last", dilation_rate: Sizes = 1,
                 activation: Optional[Text] = None, use_bias: Bool = True,
                 kernel_initializer: NamedSpec = "glorot_uniform", bias_initializer: NamedSpec = "zeros",
                 kernel_regularizer: Optional[NamedSpec] = None, bias_regularizer: Optional[NamedSpec] = None,
                 alpha: Optional[Number] = None, **kwargs):
        super().__init__(filters, kernel_size, strides, padding, data_format, dilation_rate, activation, use_bias,
                         kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer, alpha,
                         **kwargs)
