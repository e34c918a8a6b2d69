"""Layers written the Keras way (`build` + `call` on nnctl.ops), their backward from the tape: the book's
SimpleDense against `dense`, central differences through a custom layer, shape inference, `training`,
graphs, frozen weights, a hand-written backward; and the book's linear classifier from scratch."""

import sys
from pathlib import Path

import numpy as np
import pytest

from nnctl import ops
from nnctl.errors import ShapeError
from nnctl.nn.functional import Input, Model
from nnctl.nn.layers import Add, Dense, Layer
from nnctl.nn.model import Sequential
from tests.nn.test_gradients import numeric_gradients


class SimpleDense(Layer):
    """The book's SimpleDense (Deep Learning with Python, 2nd ed., 3.6.1), with nnctl.ops for tf."""

    def __init__(self, units, activation=None, **kwargs):
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
            y = self.activation(y)
        return y


class Gated(Layer):
    """Many ops at once: tanh(x·W) ⊙ sigmoid(x·V) + b, its first half softmaxed, squared and concatenated."""

    def build(self, input_shape):
        super().build(input_shape)  # either way works
        self.W = self.add_weight("W", (input_shape[-1], 4), "glorot_uniform")
        self.V = self.add_weight("V", (input_shape[-1], 4), "glorot_uniform")
        self.b = self.add_weight("b", (4,), "ones")

    def call(self, inputs):
        h = ops.tanh(inputs @ self.W) * ops.sigmoid(ops.matmul(inputs, self.V)) + self.b
        return ops.concatenate([ops.softmax(h[:, :2]), ops.square(h[:, 2:]) / 2.0, ops.mean(h, axis=1,
                                                                                           keepdims=True)], axis=1)


RNG = np.random.default_rng(4)
X = RNG.standard_normal((96, 6)).astype(np.float32)
Y = (X[:, 0] + X[:, 1] > 0).astype(np.float32)


def test_the_books_simple_dense_trains_like_dense():
    custom = Sequential([SimpleDense(16, activation=ops.relu), SimpleDense(1, activation=ops.sigmoid)],
                        input_shape=(6,), seed=2)
    builtin = Sequential([Dense(16, activation="relu", kernel_initializer="random_normal"),
                          Dense(1, activation="sigmoid", kernel_initializer="random_normal")], input_shape=(6,), seed=2)
    for model in (custom, builtin):
        model.compile("rmsprop", "binary_crossentropy", ["accuracy"])
    a, b = (model.fit(X, Y, epochs=4, batch_size=16) for model in (custom, builtin))
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-5)
    assert a["loss"][-1] < a["loss"][0]
    ours, theirs = list(custom.get_weights().values()), list(builtin.get_weights().values())
    for mine, reference in zip(ours, theirs):
        np.testing.assert_allclose(mine, reference, rtol=1e-4, atol=1e-6)
    assert list(custom.get_weights()) == ["simple_dense/variable", "simple_dense/variable_1",
                                          "simple_dense_1/variable", "simple_dense_1/variable_1"]
    assert [row["output_shape"] for row in custom.summary()["rows"]] == [(None, 16), (None, 1)]


def test_a_custom_layer_gradient_matches_central_differences():
    model = Sequential([Dense(5, activation="tanh"), Gated(), Dense(2)], input_shape=(3,), seed=1, dtype="float64")
    model.compile(optimizer="sgd", loss="mse")
    model.store.values += np.random.default_rng(1).normal(0, 0.1, model.store.values.size)
    x, y = RNG.standard_normal((5, 3)), RNG.standard_normal((5, 2))
    model.compute_gradients(x, y)
    analytic = model.store.grads.copy()
    assert np.abs(analytic).max() > 1e-6
    np.testing.assert_allclose(analytic, numeric_gradients(model, x, y), rtol=1e-5, atol=1e-7)


def test_the_output_shape_comes_from_one_call_and_a_failing_call_is_a_located_shape_error():
    model = Sequential([Gated(), Dense(1)], input_shape=(6,), seed=0)
    model.build()
    assert model.layers[0].output_shape == (5,)

    class Broken(Layer):
        def build(self, input_shape):
            self.W = self.add_weight(shape=(3, 2))

        def call(self, inputs):
            return ops.matmul(inputs, self.W)

    with pytest.raises(ShapeError, match=r"layer 0 'broken' \(Broken\).*Broken.call fails on inputs of shape \(6,\)"):
        Sequential([Broken()], input_shape=(6,)).build()


def test_call_gets_training_and_a_graph_takes_custom_layers():
    class Noisy(Layer):
        def call(self, inputs, training=None):
            return inputs * (0.5 if training else 1.0)

    inputs = Input((6,))
    hidden = SimpleDense(4)(inputs)
    model = Model(inputs, Dense(1)(Add()([hidden, Noisy()(hidden)])), seed=0)
    model.compile("sgd", "mse")
    model.build()
    assert model.layers[1].type_name == "noisy"
    out_inference = model.predict(X[:4])
    hidden_value = X[:4] @ model.get_weights()["simple_dense/variable"]
    kernel, bias = model.get_weights()["dense/kernel"], model.get_weights()["dense/bias"]
    np.testing.assert_allclose(out_inference, (2 * hidden_value) @ kernel + bias, rtol=1e-5)
    model.fit(X, Y[:, None], epochs=1, batch_size=32)  # trains through both uses of `hidden`


def test_frozen_custom_weights_stay_and_a_hand_written_backward_is_used():
    class Scale(Layer):
        def build(self, input_shape):
            self.gain = self.add_weight("gain", input_shape[-1:], "ones")

        def call(self, inputs):
            return inputs * self.gain

        def backward(self, dy):  # "for speed": replaces the tape's
            self.gain.grad[...] = 0.0
            return dy * self.gain.value * 10.0

    frozen = SimpleDense(4, trainable=False)
    model = Sequential([frozen, Scale(), Dense(1)], input_shape=(6,), seed=0)
    model.compile("sgd", "mse")
    model.build()
    before = model.get_weights()
    model.fit(X, Y, epochs=1, batch_size=32)
    after = model.get_weights()
    np.testing.assert_array_equal(after["simple_dense/variable"], before["simple_dense/variable"])
    np.testing.assert_array_equal(after["scale/gain"], before["scale/gain"])
    assert model.summary()["non_trainable_params"] == 28


def test_the_books_linear_classifier_from_scratch_over_seeds():
    """Seeds 0–4, fixed in advance: the book's loss settles near 0.025 and the classes separate."""
    sys.path.insert(0, str(Path(__file__).parents[2] / "examples"))
    try:
        import linear_classifier
    finally:
        sys.path.pop(0)
    results = [linear_classifier.train(seed) for seed in range(5)]
    finals = [losses[-1] for losses, _ in results]
    assert all(losses[-1] < losses[0] / 5 for losses, _ in results)
    assert np.mean(finals) < 0.035 and min(accuracy for _, accuracy in results) > 0.99
