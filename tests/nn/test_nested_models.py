"""Models used as layers (nnctl/nn/functional.py's NestedModel): a graph or a stack inside another, gradients
through it by central differences, its trained weights kept, and `trainable = False` freezing it."""

import numpy as np
import pytest

import nnctl
from nnctl.errors import ShapeError
from nnctl.nn.layers import Add, Dense
from tests.nn.test_gradients import numeric_gradients

RNG = np.random.default_rng(12)
X = RNG.standard_normal((48, 6)).astype(np.float32)
T = (X[:, :1] - X[:, 1:2]).astype(np.float32)


def _encoder(seed=1, dtype="float32"):
    inputs = nnctl.Input((6,))
    hidden = Dense(5, activation="tanh")(inputs)
    return nnctl.Model(inputs, Add()([hidden, Dense(5)(hidden)]), name="encoder", seed=seed, dtype=dtype)


def test_gradients_flow_through_a_nested_graph_to_the_layers_before_it():
    inputs = nnctl.Input((6,))
    model = nnctl.Model(inputs, Dense(2)(_encoder(dtype="float64")(Dense(6, activation="tanh")(inputs))), seed=0,
                        dtype="float64")
    model.compile(optimizer="sgd", loss="mse")
    assert [name for name in model.get_weights()][2:4] == ["encoder/dense/kernel", "encoder/dense/bias"]
    assert model.summary(print_table=False)["rows"][1]["type"] == "Functional"  # as Keras's summary
    model.store.values += np.random.default_rng(3).normal(0, 0.1, model.store.values.size)
    x, y = RNG.standard_normal((5, 6)), RNG.standard_normal((5, 2))
    model.compute_gradients(x, y)
    analytic = model.store.grads.copy()
    assert np.abs(analytic[:42]).max() > 1e-6  # the first Dense, before the nested model, gets a gradient
    np.testing.assert_allclose(analytic, numeric_gradients(model, x, y), rtol=1e-5, atol=1e-7)


def test_a_trained_base_keeps_its_weights_and_trainable_false_freezes_it():
    base = nnctl.Sequential([Dense(8, activation="relu"), Dense(4, activation="relu")], input_shape=(6,), seed=2,
                            name="base")
    base.compile("rmsprop", "mse")
    base.fit(X, np.repeat(T, 4, axis=1), epochs=3, verbose=0)
    trained = {name: value.copy() for name, value in base.get_weights().items()}
    base.trainable = False
    model = nnctl.Sequential([base, Dense(1)], input_shape=(6,), seed=5)  # Keras: Sequential([base, head])
    model.compile("rmsprop", "mse")
    for name, value in trained.items():
        np.testing.assert_array_equal(model.get_weights()[f"base/{name}"], value)
    history = model.fit(X, T, epochs=3, verbose=0)
    assert history["loss"][-1] < history["loss"][0]
    for name, value in trained.items():
        np.testing.assert_array_equal(model.get_weights()[f"base/{name}"], value)
    info = model.summary(print_table=False)
    assert info["non_trainable_params"] == 56 + 36 and info["trainable_params"] == 5
    assert [(row["name"], row["type"]) for row in info["rows"]] == [("base", "Sequential"), ("dense", "Dense")]


def test_a_nested_model_must_get_its_input_shape():
    inputs = nnctl.Input((4,))
    with pytest.raises(ShapeError, match=r"model 'encoder' takes inputs of shape \(6,\), got \(4,\)"):
        _encoder()(inputs)


@pytest.mark.parametrize("graph_inside", [False, True], ids=["sequential", "graph"])
def test_a_nested_model_called_twice_adds_both_calls_rows_to_its_tables_gradient(graph_inside):
    """A nested encoder holding an Embedding, called on two inputs whose ids use other rows: the table's gradient
    has both calls' rows (the second call's Embedding adds to the first's instead of starting over), by central
    differences; a graph inside reads the outer calls' state too. Afterwards the encoder trains on its own as
    before (no flag left behind)."""
    from nnctl.nn.layers import Concatenate, Embedding, Flatten

    if graph_inside:
        ids = nnctl.Input((3,))
        encoder = nnctl.Model(ids, Flatten()(Embedding(10, 2)(ids)), name="encoder", seed=1, dtype="float64")
    else:
        encoder = nnctl.Sequential([Embedding(10, 2), Flatten()], input_shape=(3,), seed=1, name="encoder",
                                   dtype="float64")
    left, right = nnctl.Input((3,), name="left"), nnctl.Input((3,), name="right")
    model = nnctl.Model([left, right], Dense(1)(Concatenate()([encoder(left), encoder(right)])), seed=0,
                        dtype="float64")
    model.compile(optimizer="sgd", loss="mse")
    x = {"left": RNG.integers(0, 5, (4, 3)).astype(np.int32), "right": RNG.integers(5, 10, (4, 3)).astype(np.int32)}
    y = RNG.standard_normal((4, 1))
    model.compute_gradients(x, y)
    analytic = model.store.grads.copy()
    numeric = numeric_gradients(model, x, y)
    table = slice(0, 20)  # the encoder's table comes first in the store
    assert np.abs(analytic[table][10:]).max() > 1e-3  # rows 5-9: the right call's
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7)
    encoder.compile(optimizer="sgd", loss="mse")
    _, alone = encoder.compute_gradients(x["left"], RNG.standard_normal((4, 6)))
    assert not np.asarray(next(iter(alone.values())))[5:].any()  # the left ids' rows only
