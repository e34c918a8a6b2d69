"""The core layers on 3-D and 4-D inputs as Keras defines them: Dense on the last axis (shapes, gradients,
torch.nn.Linear parity), Flatten, Reshape, Dropout and Activation (gradients through a real Sequential)."""

import numpy as np
import pytest

from nnctl.engine.backend import get_backend
from nnctl.errors import ShapeError
from nnctl.nn.layers import Activation, Dense, Dropout, Flatten, Reshape
from nnctl.nn.model import Sequential
from tests.nn.test_gradients import check_model

RNG = np.random.default_rng(17)


class SeededDropout(Dropout):
    """Dropout that draws the same mask on every call, so central differences see one function."""

    def forward(self, x, training):
        self.rng = np.random.default_rng(4)
        return super().forward(x, training)


def _bind(layer, input_shape, dtype=np.float32):
    """Builds a layer alone with random weights and zeroed gradients, as a model would."""
    layer.backend, layer.dtype = get_backend("cpu"), dtype
    layer.name = layer.name or layer.type_name
    layer.build(input_shape)
    for p in layer.params:
        p.value = (RNG.standard_normal(p.shape) * 0.5).astype(dtype)
        p.grad = np.zeros(p.shape, dtype)
    return layer


@pytest.mark.parametrize("input_shape", [(7, 5), (4, 3, 5), (2, 3, 2, 5)])
def test_dense_acts_on_the_last_axis(input_shape):
    model = Sequential([Dense(6), Flatten()], input_shape=input_shape, seed=0)
    model.compile("sgd", "mse")
    assert model.layers[0].output_shape == input_shape[:-1] + (6,)
    assert model.layers[0].kernel.shape == (5, 6)  # Keras's kernel: (last axis, units), whatever the rank
    assert model.layers[0].param_count() == 5 * 6 + 6
    x = RNG.standard_normal((3,) + input_shape).astype(np.float32)
    weights = model.get_weights()
    expected = x @ weights["dense/kernel"] + weights["dense/bias"]
    np.testing.assert_allclose(model.predict(x), expected.reshape(3, -1), rtol=1e-5, atol=1e-6)


def test_predict_with_an_nd_dense_output():
    model = Sequential([Dense(6)], input_shape=(4, 5), seed=0)
    model.compile("sgd", "mse")
    x = RNG.standard_normal((3, 4, 5)).astype(np.float32)
    weights = model.get_weights()
    expected = x @ weights["dense/kernel"] + weights["dense/bias"]
    np.testing.assert_allclose(model.predict(x).reshape(expected.shape), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("activation, loss", [("softmax", "categorical_crossentropy"),
                                              ("sigmoid", "binary_crossentropy")])
def test_fused_loss_on_a_sequence_output_is_per_step(activation, loss):
    model = Sequential([Dense(4, activation=activation)], input_shape=(5, 3), seed=0)
    model.compile("sgd", loss)
    x = RNG.standard_normal((2, 5, 3)).astype(np.float32)
    weights = model.get_weights()
    z = x @ weights["dense/kernel"] + weights["dense/bias"]
    if activation == "softmax":
        y = np.eye(4)[RNG.integers(0, 4, (2, 5))]
        p = np.exp(z - z.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        expected = -(y * np.log(p)).sum(-1).mean()
    else:
        y = (RNG.random((2, 5, 4)) < 0.5).astype(np.float64)
        p = 1 / (1 + np.exp(-z))
        expected = -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean()
    assert model.compute_gradients(x, y)[0] == pytest.approx(expected, rel=1e-5)


def test_sparse_labels_per_step_weights_and_metrics_on_a_sequence_output():
    """(n, t) class ids for an (n, t, classes) output: the loss and accuracy are per step, averaged as in
    Keras, and a sample weight weighs all of its steps."""
    model = Sequential([Dense(3, activation="softmax")], input_shape=(4, 2), seed=1)
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x = RNG.standard_normal((5, 4, 2)).astype(np.float32)
    y = RNG.integers(0, 3, (5, 4))
    p = model.predict(x).astype(np.float64)
    nll = -np.log(np.take_along_axis(p, y[..., None], -1)[..., 0])
    results = model.evaluate(x, y, batch_size=2)
    assert results["loss"] == pytest.approx(nll.mean(), rel=1e-5)
    assert results["accuracy"] == pytest.approx((p.argmax(-1) == y).mean())
    weights = np.array([1.0, 0.0, 2.0, 1.0, 0.5])
    weighted = model.evaluate(x, y, sample_weight=weights)["loss"]
    assert weighted == pytest.approx((nll * weights[:, None]).mean(), rel=1e-5)
    with pytest.raises(ShapeError, match=r"targets need shape \(4, 3\)"):
        model.evaluate(x, y[:, :3])
    history = model.fit(x, y, epochs=2, batch_size=2)
    assert len(history["accuracy"]) == 2


GRADIENT_CASES = {
    "dense-3d-sequence-output": ([Dense(4, activation="tanh"), Dense(3)], (5, 3), (4, 5, 3)),
    "dense-4d-flatten": ([Dense(3, activation="relu"), Flatten(), Dense(2)], (3, 4, 2), (4, 2)),
    "dense-4d-image-output": ([Dense(3, activation="sigmoid"), Dense(2)], (2, 3, 4), (4, 2, 3, 2)),
    "flatten-3d": ([Flatten(), Dense(3)], (4, 3), (4, 3)),
    "reshape-3d-to-4d": ([Dense(4), Reshape([3, 2, 4]), Dense(2), Flatten(), Dense(2)], (6, 3), (4, 2)),
    "reshape-4d-to-3d-minus-one": ([Dense(3), Reshape([-1, 3]), Dense(2, activation="elu")], (2, 2, 2), (4, 4, 2)),
    "activation-softmax-3d": ([Dense(4), Activation("softmax"), Flatten(), Dense(2)], (3, 2), (4, 2)),
    "activation-gelu-4d": ([Dense(3), Activation("gelu"), Dense(2)], (2, 3, 2), (4, 2, 3, 2)),
    "dropout-3d": ([Dense(4), SeededDropout(0.4), Dense(2)], (5, 3), (4, 5, 2)),
    "dropout-4d": ([Dense(3), SeededDropout(0.5), Flatten(), Dense(2)], (2, 3, 2), (4, 2)),
}


@pytest.mark.parametrize("case", GRADIENT_CASES)
def test_gradients_on_nd_inputs(case):
    layers, input_shape, target_shape = GRADIENT_CASES[case]
    x = RNG.standard_normal((target_shape[0],) + input_shape)
    check_model(layers, input_shape, "mse", x, RNG.standard_normal(target_shape))


def test_activation_softmax_normalizes_the_last_axis_only():
    layer = _bind(Activation("softmax"), (3, 4, 5))
    x = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)
    y = layer.forward(x, training=True)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    np.testing.assert_allclose(y, e / e.sum(axis=-1, keepdims=True), rtol=1e-5, atol=1e-7)


def test_dropout_keeps_the_nd_shape_and_mask():
    layer = _bind(Dropout(0.5), (4, 3, 2))
    layer.rng = np.random.default_rng(0)
    x = RNG.standard_normal((6, 4, 3, 2)).astype(np.float32)
    y = layer.forward(x, training=True)
    assert y.shape == x.shape
    kept = y != 0
    np.testing.assert_allclose(y[kept], 2 * x[kept])
    dy = RNG.standard_normal(x.shape).astype(np.float32)
    np.testing.assert_allclose(layer.backward(dy), np.where(kept, 2 * dy, 0))


def test_flatten_and_reshape_shapes():
    assert Flatten().compute_output_shape((26, 26, 32)) == (21632,)
    assert Reshape([28, 28, 1]).compute_output_shape((784,)) == (28, 28, 1)
    assert Reshape([-1, 8]).compute_output_shape((4, 5, 2)) == (5, 8)


@pytest.mark.parametrize("shape", [(6, 9, 7), (4, 5, 6, 7)], ids=["3d", "4d"])
@pytest.mark.parametrize("activation", [None, "relu", "tanh"])
def test_dense_matches_torch_linear(shape, activation):
    torch = pytest.importorskip("torch")
    layer = _bind(Dense(8, activation=activation), shape[1:])
    x = RNG.standard_normal(shape).astype(np.float32)
    y = layer.forward(x, training=True).copy()
    dy = RNG.standard_normal(y.shape).astype(np.float32)
    dx = layer.backward(dy).copy()

    linear = torch.nn.Linear(shape[-1], 8)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor(layer.kernel.value.T))
        linear.bias.copy_(torch.tensor(layer.bias.value))
    xt = torch.tensor(x, requires_grad=True)
    act = {None: lambda t: t, "relu": torch.relu, "tanh": torch.tanh}[activation]
    yt = act(linear(xt))
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(layer.kernel.grad, linear.weight.grad.numpy().T, rtol=1e-5, atol=2e-5)
    np.testing.assert_allclose(layer.bias.grad, linear.bias.grad.numpy(), rtol=1e-5, atol=2e-5)
