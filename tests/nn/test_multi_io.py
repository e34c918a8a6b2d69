"""Models with several inputs and outputs (nnctl/nn/multi.py): losses and metrics against values computed here
by hand from the model's own predictions, gradients by finite differences (float64), Keras's log keys, the
ways data is given (dicts, lists), and the mistakes a user makes."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.errors import ArgumentError, ShapeError
from nnctl.named import NamedArrays
from nnctl.nn.functional import Input, Model
from nnctl.nn.layers import LAYERS, Dense
from nnctl.nn.multi import MultiModel

Concatenate, Add = LAYERS.lookup("concatenate"), LAYERS.lookup("add")
N = 96


def _data(seed=0, n=N):
    rng = np.random.default_rng(seed)
    title = rng.normal(size=(n, 7)).astype(np.float32)
    tags = (rng.random((n, 3)) < 0.4).astype(np.float32)
    priority = (1 / (1 + np.exp(-title[:, :1] - tags[:, :1]))).astype(np.float32)
    department = np.eye(4, dtype=np.float32)[(title[:, 1] > 0).astype(int) + 2 * (tags[:, 2] > 0)]
    return {"title": title, "tags": tags}, {"priority": priority, "department": department}


def _model(seed=0, dtype="float32", shared=False, head_read=False):
    title, tags = Input((7,), name="title"), Input((3,), name="tags")
    if shared:  # one layer applied to both inputs (padded to one width): its gradient sums over the uses
        wide = Dense(7, name="widen")(tags)
        encoder = Dense(5, activation="tanh", name="encoder")
        features = Add()([encoder(title), encoder(wide)])
    else:
        features = Dense(8, activation="relu")(Concatenate()([title, tags]))
    priority = Dense(1, activation="sigmoid", name="priority")(features)
    reads = Concatenate()([features, priority]) if head_read else features  # the output is also a hidden value
    department = Dense(4, activation="softmax", name="department")(reads)
    return Model([title, tags], [priority, department], seed=seed, dtype=dtype)


def _compiled(weights=(1.0, 0.5), **kwargs):
    model = _model(**kwargs)
    model.compile(optimizer={"type": "sgd", "learning_rate": 0.1},
                  loss={"priority": "mse", "department": "categorical_crossentropy"},
                  loss_weights={"priority": weights[0], "department": weights[1]},
                  metrics={"priority": ["mae"], "department": ["accuracy"]})
    return model


def test_several_inputs_or_outputs_make_a_multi_model_and_one_of_each_stays_a_model():
    assert isinstance(_model(), MultiModel)
    inputs = Input((3,))
    single = Model(inputs, Dense(1)(inputs))
    assert type(single) is Model


def test_losses_and_metrics_are_the_hand_computed_ones():
    model = _compiled(weights=(2.0, 0.5))
    x, y = _data()
    priority, department = model.predict(x, batch_size=17)
    mse = float(np.mean((priority - y["priority"]) ** 2))
    probs = np.clip(department.astype(np.float64), 1e-7, 1 - 1e-7)
    cce = float(np.mean(-np.sum(y["department"] * np.log(probs), axis=1)))
    results = model.evaluate(x, y, batch_size=13)
    assert results["priority_loss"] == pytest.approx(2.0 * mse, rel=1e-5)
    assert results["department_loss"] == pytest.approx(0.5 * cce, rel=1e-4)
    assert results["loss"] == pytest.approx(2.0 * mse + 0.5 * cce, rel=1e-4)
    assert results["priority_mae"] == pytest.approx(float(np.mean(np.abs(priority - y["priority"]))), rel=1e-5)
    assert results["department_accuracy"] == pytest.approx(
        float(np.mean(department.argmax(1) == y["department"].argmax(1))))
    assert list(results) == ["loss", "priority_loss", "department_loss", "priority_mae", "department_accuracy"]


@pytest.mark.parametrize("variant", [{}, {"shared": True}, {"head_read": True}])
def test_gradients_match_finite_differences(variant):
    model = _model(dtype="float64", **variant)
    model.compile(optimizer="sgd", loss={"priority": "binary_crossentropy", "department": "categorical_crossentropy"},
                  loss_weights={"priority": 0.7, "department": 1.3})
    x, y = _data(n=12)
    x = {k: v.astype(np.float64) for k, v in x.items()}
    _, grads = model.compute_gradients(x, y)
    weights = model.get_weights()
    rng = np.random.default_rng(1)
    checked = 0
    for name, value in weights.items():
        for flat in rng.choice(value.size, size=min(3, value.size), replace=False):
            index = np.unravel_index(flat, value.shape)
            step = 1e-3  # the engine's float64 exp/sigmoid are exact to ~1e-10: a smaller step measures that
            losses = []
            for sign in (1, -1):
                moved = {k: v.copy() for k, v in weights.items()}
                moved[name][index] += sign * step
                model.set_weights(moved)
                losses.append(model.compute_gradients(x, y)[0])
            model.set_weights(weights)
            numeric = (losses[0] - losses[1]) / (2 * step)
            assert grads[name][index] == pytest.approx(numeric, rel=2e-4, abs=1e-6), (name, index)
            checked += 1
    assert checked >= 12


def test_fit_logs_keras_keys_and_learns_both_outputs():
    model = _compiled()
    x, y = _data()
    history = model.fit(x, y, epochs=6, batch_size=16, validation_split=0.25, shuffle=True)
    keys = ["loss", "priority_loss", "department_loss", "priority_mae", "department_accuracy"]
    assert [k for k in history if k not in ("epoch_time", "lr")] == keys + [f"val_{k}" for k in keys]
    assert history["priority_loss"][-1] < history["priority_loss"][0]
    assert history["department_loss"][-1] < history["department_loss"][0]
    for epoch in range(6):  # the total is the sum of the weighted output losses (no regularization here)
        assert history["loss"][epoch] == pytest.approx(history["priority_loss"][epoch]
                                                       + history["department_loss"][epoch], rel=1e-5)


def test_dicts_lists_and_named_arrays_give_the_same_bytes():
    x, y = _data()
    runs = []
    for given_x, given_y in ((x, y), ([x["title"], x["tags"]], [y["priority"], y["department"]]),
                             (NamedArrays(x), NamedArrays(y))):
        model = _compiled()
        model.fit(given_x, given_y, epochs=2, batch_size=16)
        runs.append(model.get_weights())
    for other in runs[1:]:
        assert all(np.array_equal(runs[0][k], other[k]) for k in runs[0])


def test_batch_callbacks_see_the_same_epoch_figures():
    from nnctl.nn.callbacks import Callback

    class Batches(Callback):
        def on_train_batch_end(self, batch, logs=None):
            self.seen = logs

    x, y = _data()
    plain, watched = _compiled(), _compiled()
    first = plain.fit(x, y, epochs=2, batch_size=16)
    watcher = Batches()
    second = watched.fit(x, y, epochs=2, batch_size=16, callbacks=[watcher])
    assert first["loss"] == second["loss"] and first["department_accuracy"] == second["department_accuracy"]
    assert set(watcher.seen) >= {"loss", "priority_loss", "department_loss", "department_accuracy"}


def test_mistakes_are_named():
    x, y = _data()
    model = _compiled()
    with pytest.raises(ShapeError, match="no 'tags'.*unknown 'tag'"):
        model.fit({"title": x["title"], "tag": x["tags"]}, y)
    with pytest.raises(ShapeError, match="2 inputs .*3 arrays"):
        model.fit([x["title"], x["tags"], x["tags"]], y)
    with pytest.raises(ShapeError, match="input 'tags' takes shape"):
        model.predict({"title": x["title"], "tags": x["title"]})
    with pytest.raises(ArgumentError, match="class_weight"):
        model.fit(x, y, class_weight={0: 1.0})
    fresh = _model()
    with pytest.raises(ArgumentError, match="'priorty', which is not an output"):
        fresh.compile(loss={"priorty": "mse", "department": "categorical_crossentropy"})
    with pytest.raises(ArgumentError, match="no loss for output 'department'"):
        _model().compile(loss={"priority": "mse"})
    with pytest.raises(ArgumentError, match="dict by output name"):
        _model().compile(loss="mse", metrics=["mae"])
    title, tags = Input((2,), name="same"), Input((2,), name="same")
    with pytest.raises(ArgumentError, match="distinct names"):
        Model([title, tags], [Dense(1)(Add()([title, tags])), Dense(1)(title)])


def test_one_loss_applies_to_every_output_and_predict_gives_a_list():
    model = _model()
    model.compile(loss="mse", metrics=[["mae"], ["mse"]])
    x, y = _data()
    model.fit(x, y, epochs=1, batch_size=32)
    priority, department = model.predict(x)
    assert priority.shape == (N, 1) and department.shape == (N, 4)
    assert set(model.evaluate(x, y)) == {"loss", "priority_loss", "department_loss", "priority_mae",
                                         "department_mse"}


@pytest.mark.parametrize("regularized", [False, True])
def test_a_shared_embedding_sums_its_uses_over_sequences_of_other_lengths(regularized):
    Embedding, Pool = LAYERS.lookup("embedding"), LAYERS.lookup("global_average_pooling1d")
    title, body = Input((5,), name="title"), Input((4,), name="body")
    table = Embedding(12, 3, embeddings_regularizer={"type": "l2", "l2": 0.01} if regularized else None)
    merged = Add()([Pool()(table(title)), Pool()(table(body))])
    model = Model([title, body], Dense(1, activation="sigmoid")(merged), seed=0, dtype="float64")
    model.compile("sgd", "binary_crossentropy")
    assert [row["name"] for row in model.summary()["rows"]].count("embedding") == 1
    rng = np.random.default_rng(0)
    x = {"title": rng.integers(0, 12, (8, 5)), "body": rng.integers(0, 12, (8, 4))}
    y = rng.integers(0, 2, (8, 1)).astype(float)
    model.compute_gradients({"title": rng.integers(0, 12, (8, 5)), "body": x["body"]}, y)  # a step before
    _, grads = model.compute_gradients(x, y)
    weights, key = model.get_weights(), "embedding/embeddings"
    numeric = np.zeros_like(weights[key])
    for index in np.ndindex(numeric.shape):
        losses = []
        for sign in (1, -1):
            moved = {name: value.copy() for name, value in weights.items()}
            moved[key][index] += sign * 1e-3
            model.set_weights(moved)
            losses.append(model.compute_gradients(x, y)[0])
        numeric[index] = (losses[0] - losses[1]) / 2e-3
    model.set_weights(weights)
    assert np.abs(grads[key]).max() > 1e-3
    np.testing.assert_allclose(grads[key], numeric, rtol=1e-4, atol=1e-6)
    unused = sorted(set(range(12)) - set(x["title"].ravel()) - set(x["body"].ravel()))
    if unused and not regularized:
        assert not grads[key][unused].any()  # rows neither use read get no gradient (the last step's are cleared)


def test_the_python_face_saves_loads_and_reopens_a_several_output_model(tmp_path):
    import nnctl

    title, tags = nnctl.Input((7,), name="title"), nnctl.Input((3,), name="tags")
    features = Dense(8, activation="relu")(Concatenate()([title, tags]))
    model = nnctl.Model([title, tags], [Dense(1, activation="sigmoid", name="priority")(features),
                                        Dense(4, activation="softmax", name="department")(features)], seed=0)
    assert isinstance(model, nnctl.Model) and isinstance(model, MultiModel)
    model.compile("rmsprop", {"priority": "mse", "department": "categorical_crossentropy"},
                  metrics={"department": ["accuracy"]}, loss_weights={"department": 0.5})
    x, y = _data()
    history = model.fit(x, y, epochs=2, verbose=0)
    assert history.history["department_accuracy"] == history["department_accuracy"]
    assert model.summary(print_table=False)["rows"][0]["connected_to"] == ["title", "tags"]
    model.save(tmp_path / "m.safetensors")
    back = nnctl.load_model(tmp_path / "m.safetensors")
    assert back.input_names == ["title", "tags"] and back.output_names == ["priority", "department"]
    for mine, theirs in zip(model.predict(x), back.predict(x)):
        np.testing.assert_array_equal(mine, theirs)
    assert back.evaluate(x, y) == model.evaluate(x, y)  # compiled again with the same loss weights
