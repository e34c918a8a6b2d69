"""SpatialDropout1D/2D: dropout of whole channels (feature maps), one draw per sample and channel.

(Dropout itself is in core.py.) The draws come from the model's seeded generator, so a seed fixes every byte.
"""

from __future__ import annotations

import numpy as np

from nnctl.errors import ShapeError, check_float_range
from nnctl.nn.layers.arguments import Rate
from nnctl.nn.layers.base import Layer


class SpatialDropout(Layer):
    """Base of SpatialDropout1D/2D (`rank` spatial axes, channels last): in training, keeps each (sample,
    channel) with probability 1 − rate and scales the survivors by 1/(1 − rate), the same for every step or
    pixel of that channel; the identity in inference. Neighbouring steps/pixels are correlated, so plain
    dropout of single values barely regularizes a convolution; dropping whole maps does."""

    rank = 0
    supports_masking = True

    def __init__(self, rate: Rate, **kwargs):
        super().__init__(**kwargs)
        self.rate = check_float_range("rate", rate, 0.0, 1.0, high_open=True)

    def build(self, input_shape):
        if len(input_shape) != self.rank + 1:
            axes = "steps, channels" if self.rank == 1 else "height, width, channels"
            raise ShapeError(f"{type(self).__name__} takes {self.rank + 2}-D inputs (batch, {axes}), "
                             f"got per-sample shape {tuple(input_shape)}")
        super().build(input_shape)

    def forward(self, x, training):
        self.active = training and self.rate > 0
        if not self.active:
            return x
        x3 = np.ascontiguousarray(x).reshape(x.shape[0], -1, x.shape[-1])
        uniform = self.rng.random((x3.shape[0], x3.shape[2]), dtype=np.float32)
        # The same rule as Dropout's kernel: keep where uniform ≥ rate.
        self.scale = np.where(uniform >= self.rate, 1.0 / (1.0 - self.rate), 0.0).astype(self.dtype)
        y = self._buffer("y", x3.shape)
        self.backend.scale_channels(x3, self.scale, y)
        return y.reshape(x.shape)

    def backward(self, dy):
        if not self.active:
            return dy
        dy3 = np.ascontiguousarray(dy).reshape(dy.shape[0], -1, dy.shape[-1])
        dx = self._buffer("dx", dy3.shape)
        self.backend.scale_channels(dy3, self.scale, dx)
        return dx.reshape(dy.shape)

    def get_config(self):
        return {"rate": self.rate, **self.base_config()}


class SpatialDropout1D(SpatialDropout):
    """Drops whole channels of (batch, steps, channels) inputs."""

    type_name = "spatial_dropout1d"
    rank = 1


class SpatialDropout2D(SpatialDropout):
    """Drops whole feature maps of (batch, height, width, channels) inputs."""

    type_name = "spatial_dropout2d"
    rank = 2
