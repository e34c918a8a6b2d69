"""Central-difference gradient checks, in float64, through the real layer/loss code of a Sequential."""

import numpy as np
import pytest

from nnctl.nn.activations import ACTIVATIONS
from nnctl.nn.layers import Activation, Dense, Dropout, Flatten, Reshape
from nnctl.nn.model import Sequential


def numeric_gradients(model, x, y, h=1e-6):
    values = model.store.values
    numeric = np.zeros_like(values)
    for i in range(values.size):
        keep = values[i]
        values[i] = keep + h
        up = model.compute_gradients(x, y)[0]
        values[i] = keep - h
        down = model.compute_gradients(x, y)[0]
        values[i] = keep
        numeric[i] = (up - down) / (2 * h)
    return numeric


def check_model(layers, input_shape, loss, x, y, **loss_args):
    model = Sequential(layers, input_shape=input_shape, seed=3, dtype="float64")
    model.compile(optimizer="sgd", loss={"type": loss, **loss_args} if loss_args else loss)
    # Zero biases put whole rows exactly on ReLU's kink, where the two one-sided slopes differ.
    model.store.values += np.random.default_rng(1).normal(0, 0.1, model.store.values.size)
    model.compute_gradients(x, y)
    analytic = model.store.grads.copy()
    numeric = numeric_gradients(model, x, y)
    assert np.abs(analytic).max() > 1e-6, "a gradient check on all-zero gradients proves nothing"
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7)


RNG = np.random.default_rng(7)
X = RNG.standard_normal((6, 5))


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS.entries))
def test_dense_activation_gradients(activation):
    # Two Dense layers, so the first layer's gradient also checks the second one's input gradient.
    check_model([Dense(4, activation=activation), Dense(3, activation=activation)], (5,), "mse",
                X, RNG.standard_normal((6, 3)))


def test_activation_flatten_reshape_and_regularizer_gradients():
    layers = [Flatten(), Dense(6, activation="tanh", kernel_regularizer={"type": "l1_l2", "l1": 0.01, "l2": 0.02},
                                bias_regularizer="l2"),
              Reshape([2, 3]), Activation("softmax"), Flatten(), Dense(2, use_bias=False)]
    check_model(layers, (2, 3), "mse", RNG.standard_normal((4, 2, 3)), RNG.standard_normal((4, 2)))


def _probs(n, units):
    p = RNG.random((n, units)) + 0.1
    return p / p.sum(axis=1, keepdims=True)


LOSS_CASES = [
    # (output activation, units, loss, loss args, targets) — fused and unfused paths of each loss
    ("sigmoid", 3, "binary_crossentropy", {}, (RNG.random((6, 3)) < 0.5).astype(float)),
    ("linear", 3, "binary_crossentropy", {"from_logits": True}, (RNG.random((6, 3)) < 0.5).astype(float)),
    ("softmax", 3, "binary_crossentropy", {}, (RNG.random((6, 3)) < 0.5).astype(float)),
    ("softmax", 4, "categorical_crossentropy", {}, _probs(6, 4)),
    ("linear", 4, "categorical_crossentropy", {"from_logits": True}, np.eye(4)[RNG.integers(0, 4, 6)]),
    ("sigmoid", 4, "categorical_crossentropy", {}, np.eye(4)[RNG.integers(0, 4, 6)]),
    ("softmax", 4, "sparse_categorical_crossentropy", {}, RNG.integers(0, 4, 6)),
    ("linear", 4, "sparse_categorical_crossentropy", {"from_logits": True}, RNG.integers(0, 4, 6)),
    ("sigmoid", 4, "sparse_categorical_crossentropy", {}, RNG.integers(0, 4, 6)),
    ("linear", 2, "mean_squared_error", {}, RNG.standard_normal((6, 2))),
    ("linear", 2, "mean_absolute_error", {}, RNG.standard_normal((6, 2)) * 3),
    ("linear", 2, "huber", {"delta": 0.5}, RNG.standard_normal((6, 2)) * 2),
    ("linear", 2, "log_cosh", {}, RNG.standard_normal((6, 2))),
    ("softmax", 4, "kl_divergence", {}, _probs(6, 4)),
    ("linear", 3, "cosine_similarity", {}, RNG.standard_normal((6, 3))),
]


@pytest.mark.parametrize("activation, units, loss, args, y", LOSS_CASES,
                         ids=[f"{c[2]}-{c[0]}" for c in LOSS_CASES])
def test_loss_gradients(activation, units, loss, args, y):
    check_model([Dense(5, activation="tanh"), Dense(units, activation=activation)], (5,), loss, X, y, **args)


def test_dropout_backward_uses_the_forward_mask():
    layer = Dropout(0.5)
    layer.backend = Sequential([Dense(1)], input_shape=(1,)).backend
    layer.rng, layer.dtype = np.random.default_rng(0), np.float64
    x = RNG.standard_normal((50, 4))
    y = layer.forward(x, training=True)
    kept = y != 0
    assert 0.3 < kept.mean() < 0.7
    np.testing.assert_allclose(y[kept], 2 * x[kept])  # survivors scaled by 1/(1−rate)
    dy = RNG.standard_normal(x.shape)
    np.testing.assert_allclose(layer.backward(dy), np.where(kept, 2 * dy, 0))
    assert layer.forward(x, training=False) is x
