"""The functional API (nnctl/nn/functional.py): graphs of layer calls train, evaluate and predict as
Sequential does; gradients through residual connections and branches against central differences."""

import numpy as np
import pytest

import nnctl
from nnctl.errors import ArgumentError, NnctlError, ShapeError
from nnctl.nn.functional import Input, Model
from nnctl.nn.layers import Add, Concatenate, Dense, Dropout, Multiply
from nnctl.nn.model import Sequential
from tests.nn.test_gradients import numeric_gradients

RNG = np.random.default_rng(11)
X = RNG.standard_normal((64, 6)).astype(np.float32)
Y = (X[:, 0] - X[:, 1] > 0).astype(np.float32)


def test_a_chain_graph_trains_to_the_bytes_of_the_same_sequential():
    inputs = Input((6,))
    outputs = Dense(1, activation="sigmoid")(Dense(8, activation="relu")(inputs))
    graph = Model(inputs, outputs, seed=5)
    stack = Sequential([Dense(8, activation="relu"), Dense(1, activation="sigmoid")], input_shape=(6,), seed=5)
    for model in (graph, stack):
        model.compile("rmsprop", "binary_crossentropy", ["accuracy"])
    a = graph.fit(X, Y, epochs=3, batch_size=16, validation_data=(X[:16], Y[:16]))
    b = stack.fit(X, Y, epochs=3, batch_size=16, validation_data=(X[:16], Y[:16]))
    assert a["loss"] == b["loss"] and a["val_accuracy"] == b["val_accuracy"]
    for name, value in graph.get_weights().items():
        np.testing.assert_array_equal(value, stack.get_weights()[name])
    np.testing.assert_array_equal(graph.predict(X), stack.predict(X))


def _residual(dtype="float32", seed=3):
    inputs = Input((6,))
    a = Dense(5, activation="tanh")(inputs)
    b = Dense(5, activation="tanh")(a)
    outputs = Dense(1)(Add()([a, b]))  # a reaches the sum directly and through b
    return Model(inputs, outputs, seed=seed, dtype=dtype)


def _branches(dtype="float32", seed=3):
    inputs = Input((6,))
    left = Dense(4, activation="tanh")(inputs)
    right = Dense(3, activation="sigmoid")(inputs)
    joined = Concatenate()([left, right, inputs])  # the model input itself is merged too
    gated = Multiply()([Dense(4, activation="tanh")(joined), Dense(4)(joined)])
    return Model(inputs, Dense(2)(gated), seed=seed, dtype=dtype)


@pytest.mark.parametrize("build, units", [(_residual, 1), (_branches, 2)], ids=["residual", "branches"])
def test_graph_gradients_match_central_differences(build, units):
    """A node read by several layers receives the sum of their gradients."""
    model = build("float64")
    model.compile(optimizer="sgd", loss="mse")
    model.store.values += np.random.default_rng(1).normal(0, 0.1, model.store.values.size)
    x = RNG.standard_normal((7, 6))
    y = RNG.standard_normal((7, units))
    model.compute_gradients(x, y)
    analytic = model.store.grads.copy()
    assert np.abs(analytic).max() > 1e-6
    np.testing.assert_allclose(analytic, numeric_gradients(model, x, y), rtol=1e-5, atol=1e-7)


def test_a_residual_graph_learns_and_predicts():
    model = _residual()
    model.compile("rmsprop", "mse")
    target = (X[:, :1] * 0.5).astype(np.float32)
    history = model.fit(X, target, epochs=30, batch_size=16)
    assert history["loss"][-1] < 0.2 * history["loss"][0]
    assert model.predict(X).shape == (64, 1)
    assert model.evaluate(X, target)["loss"] == pytest.approx(history["loss"][-1], rel=0.5)


def test_only_layers_with_trainable_weights_upstream_compute_an_input_gradient():
    model = _branches()
    model.build()
    first = {layer.name: layer.needs_input_grad for layer in model.layers}
    assert first["dense"] is False and first["dense_1"] is False  # they read the model input
    assert first["concatenate"] is True and first["multiply"] is True


def test_summary_has_keras_connected_to_column():
    rows = {row["name"]: row for row in _residual().summary()["rows"]}
    assert rows["dense"]["connected_to"] == ["input_layer"]
    assert rows["add"]["connected_to"] == ["dense", "dense_1"]
    assert rows["add"]["output_shape"] == (None, 5)
    assert sum(row["params"] for row in rows.values()) == 35 + 30 + 6


def test_only_dense_readers_of_the_input_let_it_run_as_csr():
    assert _residual()._dense_reads_input()
    assert not _branches()._dense_reads_input()  # the input also goes into a Concatenate


def test_dropout_in_a_graph_uses_the_run_generator():
    def build():
        inputs = Input((6,))
        return Model(inputs, Dense(1)(Dropout(0.5)(Dense(8)(inputs))), seed=9)
    losses = []
    for _ in range(2):
        model = build()
        model.compile("sgd", "mse")
        losses.append(model.fit(X, Y, epochs=2, batch_size=16)["loss"])
    assert losses[0] == losses[1]


def test_the_package_exports_the_keras_names_lazily():
    assert nnctl.Input is Input and issubclass(nnctl.Model, Model) and issubclass(nnctl.Sequential, Sequential)
    with pytest.raises(AttributeError):
        nnctl.NoSuchThing  # noqa: B018


def test_graph_mistakes_are_named():
    inputs = Input((6,))
    with pytest.raises(ArgumentError, match="called on ndarray"):
        Dense(2)(X)
    with pytest.raises(ArgumentError, match="takes one input"):
        Dense(2)([inputs, inputs])
    with pytest.raises(ArgumentError, match="merges a list"):
        Add()(inputs)
    with pytest.raises(ShapeError, match=r"\(4,\).*\(3,\)"):
        Add()([Dense(4)(inputs), Dense(3)(inputs)])
    other = Input((6,), name="other")
    with pytest.raises(ArgumentError, match="reads input 'other'"):
        Model(inputs, Add()([Dense(2)(inputs), Dense(2)(other)]))
    with pytest.raises(ArgumentError, match="from Input"):
        Model(Dense(2)(inputs), Dense(1)(inputs))
    with pytest.raises(ArgumentError, match="no layers"):
        Model(inputs, inputs)
    with pytest.raises(ArgumentError, match="no output depends on input .other."):
        Model([inputs, other], Dense(1)(inputs))
    with pytest.raises(NnctlError, match="call layers on tensors"):
        Model(inputs, Dense(1)(inputs)).add(Dense(1))


def _shared(dtype="float32", seed=3):
    """One Dense applied to two branches and then to its own output: three uses of one kernel."""
    inputs = Input((6,))
    shared = Dense(6, activation="tanh", name="shared")
    left, right = shared(inputs), shared(Dense(6, activation="tanh")(inputs))
    twice = shared(Add()([left, right]))
    return Model(inputs, Dense(1)(twice), seed=seed, dtype=dtype), shared


def test_a_shared_layer_owns_its_weights_once_and_their_gradient_sums_its_uses():
    from nnctl.config.footprint import estimate

    model, shared = _shared("float64")
    assert estimate(model.layers, (6,), 8, 3, model.sources).params == 42 + 42 + 7  # the memory check, too
    model.compile(optimizer="sgd", loss="mse")
    assert [p.name for p in model.store.weights].count("shared/kernel") == 1
    rows = {row["name"]: row for row in model.summary()["rows"]}
    assert rows["shared"]["connected_to"] == ["input_layer", "dense_1", "add"]
    assert rows["shared"]["params"] == 42 and model.summary()["total_params"] == 42 + 42 + 7
    model.store.values += np.random.default_rng(2).normal(0, 0.1, model.store.values.size)
    x, y = RNG.standard_normal((5, 6)), RNG.standard_normal((5, 1))
    model.compute_gradients(x, y)
    analytic = model.store.grads.copy()
    np.testing.assert_allclose(analytic, numeric_gradients(model, x, y), rtol=1e-5, atol=1e-7)


def test_a_shared_layer_trains_and_its_uses_must_agree_on_shapes():
    model, _ = _shared()
    model.compile("rmsprop", "mse")
    target = (X[:, :1] * 0.5).astype(np.float32)
    history = model.fit(X, target, epochs=5, batch_size=16)
    assert history["loss"][-1] < history["loss"][0]
    inputs = Input((6,))
    shared = Dense(6)
    wide = shared(Dense(4)(inputs))  # built for (4,) at its first use
    with pytest.raises(ShapeError, match=r"shared: it was built for inputs of shape \(4,\)"):
        Model(inputs, Add()([wide, shared(inputs)])).build()
