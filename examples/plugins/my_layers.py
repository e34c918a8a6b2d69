"""A plugin: the book's SimpleDense (Deep Learning with Python, 2nd ed., §3.6.1) written with nnctl.ops, a
loss and a metric. A config lists this file in `plugins:` and names its classes `my_layers.<Class>`
(see examples/plugins/simple_dense.yaml)."""

import numpy as np

from nnctl import ops
from nnctl.nn.layers import Layer
from nnctl.nn.losses import Loss
from nnctl.nn.metrics.base import Metric


class SimpleDense(Layer):
    """y = activation(x·W + b); `activation` by name (relu, sigmoid, tanh, softmax) or None."""

    def __init__(self, units: int = 32, activation: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.activation = activation

    def build(self, input_shape):
        input_dim = input_shape[-1]
        self.W = self.add_weight(shape=(input_dim, self.units), initializer="random_normal")
        self.b = self.add_weight(shape=(self.units,), initializer="zeros")

    def call(self, inputs):
        y = ops.matmul(inputs, self.W) + self.b
        if self.activation is not None:
            y = getattr(ops, self.activation)(y)
        return y

    def get_config(self):
        return {"units": self.units, "activation": self.activation}


class SquaredHinge(Loss):
    """mean(max(1 − y_true·y_pred, 0)²) over a sample's units, for targets in {−1, 1} (Keras's squared_hinge;
    0/1 targets are mapped to −1/1 as Keras does)."""

    def call(self, y_true, y_pred):
        signs = ops.where(y_true > 0.5, 1.0, -1.0)
        return ops.mean(ops.square(ops.relu(1.0 - signs * y_pred)), axis=-1)


class MeanPrediction(Metric):
    """The mean of the model's outputs (a check that a classifier's outputs stay calibrated)."""

    default_name = "mean_prediction"

    def reset(self):
        self.total, self.count = 0.0, 0

    def update_state(self, y_true, y_pred, sample_weight):
        self.total += float(np.sum(y_pred))
        self.count += int(np.size(y_pred))

    def result(self):
        return self.total / max(self.count, 1)
