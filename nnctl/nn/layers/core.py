"""Core layers: Input, Dense, Activation, Dropout, Flatten, Reshape, Masking; each a forward and a backward.

Layers reach kernels only through `self.backend`; no layer imports Numba or a device module.
"""

from __future__ import annotations

import numpy as np

from nnctl.engine.cpu.dense import ACTIVATION_CODES
from nnctl.engine.csr import CSRBatch
from nnctl.errors import ArgumentError, ShapeError, check_float_range, check_positive_int
from nnctl.nn.activations import default_alpha, resolve_activation
from nnctl.nn.layers.arguments import (Bool, NamedSpec, Number, Optional, Rate, Shape, TargetShape, Text, Width,
                                       check_bool, check_initializer, check_regularizer)
from nnctl.nn.layers.base import Layer


class Input(Layer):
    """Declares the model's input shape (per sample); contributes no computation."""

    type_name = "input"

    def __init__(self, shape: Shape, **kwargs):
        super().__init__(**kwargs)
        if isinstance(shape, int):
            shape = (shape,)
        if not isinstance(shape, (list, tuple)) or not shape:
            raise ArgumentError(f"`shape` must be a non-empty list of positive integers, got {shape!r}.")
        self.shape = tuple(check_positive_int("shape", s) for s in shape)

    def get_config(self):
        return {"shape": list(self.shape), **self.base_config()}


class _Activated(Layer):
    """Shared by Dense, Activation and the convolutions: bias + activation through the fused kernels."""

    def _set_activation(self, activation, alpha):
        self.activation = resolve_activation(activation)
        self.alpha = default_alpha(self.activation) if alpha is None else float(alpha)
        self.act_code = ACTIVATION_CODES[self.activation]
        self.output_activation = self.activation

    def _set_kernel_and_bias(self, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                             bias_regularizer):
        """The arguments of a layer with a `kernel` and an optional `bias`, checked (errors name them)."""
        self.use_bias = check_bool("use_bias", use_bias)
        self.kernel_initializer = check_initializer("kernel_initializer", kernel_initializer)
        self.bias_initializer = check_initializer("bias_initializer", bias_initializer)
        self.kernel_regularizer = check_regularizer("kernel_regularizer", kernel_regularizer)
        self.bias_regularizer = check_regularizer("bias_regularizer", bias_regularizer)

    def _activate(self, z, bias):
        """z (n, units) gets the bias added in place; returns act(z)."""
        self.z = z
        y = z if self.activation == "linear" else self._buffer("y", z.shape)
        self.backend.bias_act_forward(z, bias, self.act_code, self.alpha, y)
        self.y = y
        return y

    def _deactivate(self, dy, from_preactivation, db):
        """dz from dy through the activation (skipped when the loss already gave dz); fills db."""
        dz = self._buffer("dz", dy.shape)
        code = ACTIVATION_CODES["linear"] if from_preactivation else self.act_code
        self.backend.bias_act_backward(dy, self.z, self.y, code, self.alpha, dz, db)
        return dz


class Dense(_Activated):
    """y = act(x @ kernel + bias); kernel (inputs, units). Accepts dense arrays or a CSR batch."""

    type_name = "dense"
    supports_masking = True

    def __init__(self, units: Width, activation: Optional[Text] = None, use_bias: Bool = True,
                 kernel_initializer: NamedSpec = "glorot_uniform", bias_initializer: NamedSpec = "zeros",
                 kernel_regularizer: Optional[NamedSpec] = None, bias_regularizer: Optional[NamedSpec] = None,
                 alpha: Optional[Number] = None, **kwargs):
        super().__init__(**kwargs)
        self.units = check_positive_int("units", units)
        self._set_kernel_and_bias(use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
                                  bias_regularizer)
        self._set_activation(activation, alpha)

    def build(self, input_shape):
        super().build(input_shape)
        self.kernel = self.add_weight("kernel", (input_shape[-1], self.units), self.kernel_initializer,
                                      self.kernel_regularizer)
        self.bias = (self.add_weight("bias", (self.units,), self.bias_initializer, self.bias_regularizer)
                     if self.use_bias else None)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def _bias_value(self):
        if self.bias is not None:
            return self.bias.value
        return self.__dict__.setdefault("_zero_bias", np.zeros(self.units, self.dtype))

    def forward(self, x, training):
        self.x = x
        if isinstance(x, CSRBatch):
            z = self._buffer("z", (len(x.rows), self.units))
            self.backend.csr_forward(x, self.kernel.value, z)
            return self._activate(z, self._bias_value())
        lead = x.shape[:-1]
        x2 = x.reshape(-1, x.shape[-1])  # Dense acts on the last axis, like Keras
        z = self._buffer("z", (x2.shape[0], self.units))
        self.backend.gemm(x2, self.kernel.value, z)
        return self._activate(z, self._bias_value()).reshape(lead + (self.units,))

    def backward(self, dy, from_preactivation=False):
        dy2 = dy.reshape(-1, self.units)
        db = self.bias.grad if self.bias is not None else self._buffer("db", (self.units,))
        dz = self._deactivate(dy2, from_preactivation, db)
        x = self.x
        if isinstance(x, CSRBatch):
            self.backend.csr_weight_grad(x, dz, self.kernel.grad)
            return None
        x2 = x.reshape(-1, x.shape[-1])
        self.backend.gemm_tn(x2, dz, self.kernel.grad)
        if not self.needs_input_grad:
            return None
        dx = self._buffer("dx", x2.shape)
        self.backend.gemm_nt(dz, self.kernel.value, dx)
        return dx.reshape(x.shape)

    def get_config(self):
        return {"units": self.units, "activation": self.activation, "use_bias": self.use_bias,
                "kernel_initializer": self.kernel_initializer, "bias_initializer": self.bias_initializer,
                "kernel_regularizer": self.kernel_regularizer, "bias_regularizer": self.bias_regularizer,
                "alpha": self.alpha, **self.base_config()}


class Activation(_Activated):
    """Applies an activation on the last axis (softmax: over the last axis)."""

    type_name = "activation"
    supports_masking = True

    def __init__(self, activation: Text, alpha: Optional[Number] = None, **kwargs):
        super().__init__(**kwargs)
        self._set_activation(activation, alpha)

    def forward(self, x, training):
        z = self._buffer("z", (int(np.prod(x.shape[:-1])), x.shape[-1]))
        z[...] = x.reshape(z.shape)
        zeros = self.__dict__.setdefault("_zero_bias", np.zeros(x.shape[-1], self.dtype))
        return self._activate(z, zeros).reshape(x.shape)

    def backward(self, dy, from_preactivation=False):
        dy2 = dy.reshape(-1, dy.shape[-1])
        return self._deactivate(dy2, from_preactivation, self._buffer("db", (dy.shape[-1],))).reshape(dy.shape)

    def get_config(self):
        return {"activation": self.activation, "alpha": self.alpha, **self.base_config()}


class Dropout(Layer):
    """Inverted dropout: zeroes a `rate` fraction in training and scales the rest by 1/(1−rate)."""

    type_name = "dropout"
    supports_masking = True

    def __init__(self, rate: Rate, **kwargs):
        super().__init__(**kwargs)
        self.rate = check_float_range("rate", rate, 0.0, 1.0, high_open=True)

    def forward(self, x, training):
        self.active = training and self.rate > 0
        if not self.active:
            return x
        flat = np.ascontiguousarray(x).reshape(-1)
        uniform = self.rng.random(flat.shape[0], dtype=np.float32).astype(self.dtype, copy=False)
        self.mask = np.empty_like(flat)
        y = np.empty_like(flat)
        self.backend.dropout_forward(flat, uniform, self.rate, y, self.mask)
        return y.reshape(x.shape)

    def backward(self, dy):
        if not self.active:
            return dy
        flat = np.ascontiguousarray(dy).reshape(-1)
        dx = np.empty_like(flat)
        self.backend.multiply(flat, self.mask, dx)
        return dx.reshape(dy.shape)

    def get_config(self):
        return {"rate": self.rate, **self.base_config()}


class Flatten(Layer):
    """(n, d1, d2, ...) → (n, d1·d2·...)."""

    type_name = "flatten"

    def compute_output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)

    def forward(self, x, training):
        self.in_shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy):
        return dy.reshape(self.in_shape)


class Reshape(Layer):
    """Reshapes each sample to `target_shape` (one entry may be -1, as in Keras)."""

    type_name = "reshape"

    def __init__(self, target_shape: TargetShape, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(target_shape, (list, tuple)) or not target_shape:
            raise ArgumentError(f"`target_shape` must be a non-empty list of integers, got {target_shape!r}.")
        if sum(1 for s in target_shape if s == -1) > 1 or any(
                isinstance(s, bool) or not isinstance(s, int) or (s <= 0 and s != -1) for s in target_shape):
            raise ArgumentError(f"`target_shape` takes positive integers and at most one -1, got {target_shape!r}.")
        self.target_shape = tuple(target_shape)

    def compute_output_shape(self, input_shape):
        size = int(np.prod(input_shape))
        known = int(np.prod([s for s in self.target_shape if s != -1]))
        shape = tuple(size // known if s == -1 else s for s in self.target_shape)
        if int(np.prod(shape)) != size or size % known:
            raise ShapeError(f"cannot reshape an input of shape {tuple(input_shape)} ({size} values) "
                             f"to {self.target_shape}")
        return shape

    def forward(self, x, training):
        self.in_shape = x.shape
        return x.reshape((x.shape[0],) + self.output_shape)

    def backward(self, dy):
        return dy.reshape(self.in_shape)

    def get_config(self):
        return {"target_shape": list(self.target_shape), **self.base_config()}


class Masking(Layer):
    """Marks as padding every step whose features all equal `mask_value`: such steps become zeros, and the
    output's mask (False there) tells the layers that follow (recurrent layers skip them), as Keras's Masking."""

    type_name = "masking"

    def __init__(self, mask_value: Number = 0.0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(mask_value, bool) or not isinstance(mask_value, (int, float)):
            raise ArgumentError(f"`mask_value` must be a number, got {mask_value!r}.")
        self.mask_value = float(mask_value)

    def forward(self, x, training):
        self.keep = np.any(x != self.mask_value, axis=-1)
        return x * self.keep[..., None].astype(x.dtype)

    def compute_mask(self, mask):
        return self.keep

    def backward(self, dy):
        return dy * self.keep[..., None].astype(dy.dtype)

    def get_config(self):
        return {"mask_value": self.mask_value, **self.base_config()}
