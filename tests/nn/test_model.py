"""Sequential end to end on tiny data: fast path == layered path, determinism, sparse == dense, errors."""

import numpy as np
import pytest

from nnctl.engine import settings
from nnctl.engine.csr import CSRMatrix
from nnctl.errors import ArgumentError, ShapeError, UnknownNameError
from nnctl.nn.callbacks import Callback
from nnctl.nn.layers import Dense, Dropout, Flatten, Input, Reshape
from nnctl.nn.model import Sequential

RNG = np.random.default_rng(0)
X = RNG.standard_normal((90, 13)).astype(np.float32)
Y = (X @ RNG.standard_normal(13) + 3).astype(np.float32)
SEQS = [RNG.choice(300, size=RNG.integers(5, 30), replace=False) for _ in range(120)]
X_TEXT = CSRMatrix.from_sequences(SEQS, 300)
Y_TEXT = np.array([float(np.sum(s % 7 == 0) > 2) for s in SEQS])


def regression_model(optimizer="rmsprop", seed=1, **dense):
    model = Sequential([Dense(16, activation="relu", **dense), Dense(16, activation="elu"), Dense(1)],
                       input_shape=(13,), seed=seed)
    model.compile(optimizer=optimizer, loss="mse", metrics=["mae"])
    return model


def text_model(seed=1):
    model = Sequential([Dense(8, activation="relu"), Dense(1, activation="sigmoid")], input_shape=(300,), seed=seed)
    model.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["accuracy", "auc"])
    return model


def without_times(history):
    return {k: v for k, v in history.items() if k != "epoch_time"}


@pytest.mark.parametrize("make, x, y, kwargs", [
    (regression_model, X, Y, {}),
    (lambda: regression_model({"type": "adam", "clipnorm": 1.0}, kernel_regularizer="l2"), X, Y, {}),
    (lambda: regression_model({"type": "sgd", "momentum": 0.9, "nesterov": True, "learning_rate": 1e-3}), X, Y, {}),
    (text_model, X_TEXT, Y_TEXT, {}),
    (text_model, X_TEXT, Y_TEXT, {"class_weight": {0: 1.0, 1: 3.0}}),
], ids=["rmsprop", "adam-clipnorm-l2", "nesterov", "csr-bce", "class-weight"])
def test_fast_path_matches_layered_path_bitwise(make, x, y, kwargs):
    runs = []
    for fast in (False, True):
        model = make()
        history = model.fit(x, y, epochs=3, batch_size=8, validation_data=(x, y), fast_path=fast, **kwargs)
        runs.append((model.get_weights(), without_times(history)))
    (w_layered, h_layered), (w_fast, h_fast) = runs
    for name in w_layered:
        assert w_layered[name].tobytes() == w_fast[name].tobytes(), name
    assert h_layered == h_fast


def test_sparse_softmax_classifier_fast_path_matches():
    y = RNG.integers(0, 4, len(X))
    runs = []
    for fast in (False, True):
        model = Sequential([Dense(8, activation="tanh"), Dense(4, activation="softmax")], input_shape=(13,), seed=5)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        runs.append(without_times(model.fit(X, y, epochs=2, batch_size=7, fast_path=fast)))
    assert runs[0] == runs[1]


def test_same_seed_same_bytes_and_other_seed_differs():
    def train(seed):
        model = Sequential([Dense(16, activation="relu"), Dropout(0.3), Dense(1)], input_shape=(13,), seed=seed)
        model.compile(optimizer="adam", loss="mse")
        history = model.fit(X, Y, epochs=3, batch_size=16)
        return model.get_weights(), without_times(history)
    (w1, h1), (w2, h2), (w3, _) = train(4), train(4), train(5)
    assert all(w1[k].tobytes() == w2[k].tobytes() for k in w1) and h1 == h2
    assert any(w1[k].tobytes() != w3[k].tobytes() for k in w1)


def test_sparse_input_trains_like_its_dense_twin(monkeypatch):
    monkeypatch.setattr(settings, "SPARSE_INPUT_DENSITY", 0.0)  # keep the dense twin dense
    histories = []
    for x in (X_TEXT, X_TEXT.to_dense()):
        model = text_model()
        histories.append(model.fit(x, Y_TEXT, epochs=2, batch_size=16, fast_path=False)["loss"])
    np.testing.assert_allclose(histories[0], histories[1], rtol=1e-5)


def test_mostly_zero_dense_input_runs_as_csr(monkeypatch):
    dense = X_TEXT.to_dense()  # 6 % non-zero
    model = text_model()
    assert isinstance(model._inputs(dense), CSRMatrix)
    assert isinstance(regression_model()._inputs(X), np.ndarray)  # standard normal: no zeros
    monkeypatch.setattr(settings, "SPARSE_INPUT_DENSITY", 0.0)
    assert isinstance(model._inputs(dense), np.ndarray)
    monkeypatch.undo()
    wide = Sequential([Dense(4)], input_shape=(300,), dtype="float64")  # gradient checks stay dense
    wide.compile(loss="mse")
    assert isinstance(wide._inputs(dense), np.ndarray)
    # The same bytes as handing over the CSR matrix: weights, history and predictions.
    runs = []
    for x in (dense, X_TEXT):
        model = text_model()
        history = model.fit(x, Y_TEXT, epochs=2, batch_size=16, fast_path=False, validation_data=(x, Y_TEXT))
        runs.append((model.get_weights(), without_times(history), model.predict(x).tobytes()))
    (w1, h1, p1), (w2, h2, p2) = runs
    assert all(w1[k].tobytes() == w2[k].tobytes() for k in w1) and h1 == h2 and p1 == p2


def test_training_learns_and_evaluate_predict_agree():
    model = text_model()
    history = model.fit(X_TEXT, Y_TEXT, epochs=30, batch_size=16)
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert history["accuracy"][-1] > 0.9
    results = model.evaluate(X_TEXT, Y_TEXT)
    p = model.predict(X_TEXT)[:, 0].astype(np.float64)
    assert p.shape == (len(Y_TEXT),)
    bce = -np.mean(Y_TEXT * np.log(p) + (1 - Y_TEXT) * np.log(1 - p))
    assert results["loss"] == pytest.approx(bce, rel=1e-4)
    assert results["accuracy"] == pytest.approx(np.mean((p > 0.5) == Y_TEXT))


def test_history_has_keras_keys_and_epoch_time():
    history = regression_model().fit(X, Y, epochs=2, batch_size=32, validation_data=(X[:10], Y[:10]))
    assert set(history) == {"loss", "mae", "val_loss", "val_mae", "epoch_time", "lr"}
    assert all(len(v) == 2 for v in history.values())


def test_summary_of_the_books_imdb_model():
    model = Sequential([Dense(16, activation="relu"), Dense(16, activation="relu"), Dense(1, activation="sigmoid")],
                       input_shape=(10000,))
    summary = model.summary()
    assert [(r["name"], r["output_shape"], r["params"]) for r in summary["rows"]] == [
        ("dense", (None, 16), 160016), ("dense_1", (None, 16), 272), ("dense_2", (None, 1), 17)]
    assert summary["total_params"] == 160305


def test_callbacks_see_every_hook_and_can_stop_training():
    class Recorder(Callback):
        def __init__(self):
            self.events = []

        def on_epoch_end(self, epoch, logs=None):
            self.events.append(("epoch", epoch, round(logs["loss"], 6)))
            self.model.stop_training = epoch == 2

        def on_train_batch_end(self, batch, logs=None):
            self.events.append(("batch", batch))

    recorder = Recorder()
    history = regression_model().fit(X, Y, epochs=10, batch_size=30, callbacks=[recorder])
    assert len(history["loss"]) == 3
    assert [e[1] for e in recorder.events if e[0] == "epoch"] == [0, 1, 2]
    end_of_first = next(i for i, e in enumerate(recorder.events) if e[0] == "epoch")
    first_epoch = [e[1] for e in recorder.events[:end_of_first]]
    assert first_epoch[0] == 0 and first_epoch[-1] == 2 and first_epoch == sorted(set(first_epoch))


def test_batch_callbacks_do_not_change_the_recorded_history():
    class Watcher(Callback):
        def on_train_batch_end(self, batch, logs=None):
            self.last = logs

    watcher = Watcher()
    watched = text_model().fit(X_TEXT, Y_TEXT, epochs=3, batch_size=7, callbacks=[watcher])
    plain = text_model().fit(X_TEXT, Y_TEXT, epochs=3, batch_size=7)
    assert without_times(watched) == without_times(plain)
    assert set(watcher.last) == {"loss", "accuracy", "auc"}
    assert watcher.params == {"epochs": 3, "steps": 18, "samples": 120, "batch_size": 7, "initial_epoch": 0}


def test_stop_during_an_epoch_keeps_only_whole_epochs():
    class StopMidway(Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.model.stop_training = self.epochs_done == 1

        def on_train_begin(self, logs=None):
            self.epochs_done = 0

        def on_epoch_end(self, epoch, logs=None):
            self.epochs_done += 1

    model = text_model()
    history = model.fit(X_TEXT, Y_TEXT, epochs=5, batch_size=7, callbacks=[StopMidway()])
    assert len(history["loss"]) == 1 and model.stopped_mid_epoch == 1


def test_shape_mismatch_names_both_layers():
    model = Sequential([Flatten(), Dense(6), Reshape([4, 2])], input_shape=(2, 3))
    with pytest.raises(ShapeError, match=r"layer 2 'reshape' \(Reshape\) cannot take the output of layer 1 "
                                         r"'dense' \(Dense\), shape \(6,\)"):
        model.build()


def test_data_and_target_errors_are_specific():
    model = regression_model()
    with pytest.raises(ShapeError, match=r"expects inputs of shape \(13,\) per sample, the data has \(12,\)"):
        model.fit(X[:, :12], Y)
    with pytest.raises(ShapeError, match="x has 90 samples but y has 10"):
        model.fit(X, Y[:10])
    clf = Sequential([Dense(3, activation="softmax")], input_shape=(13,))
    clf.compile(loss="sparse_categorical_crossentropy")
    with pytest.raises(ShapeError, match="expects integer class ids, got one-hot targets"):
        clf.fit(X, np.eye(3)[RNG.integers(0, 3, 90)])
    with pytest.raises(ShapeError, match=r"class ids must lie in \[0, 2\]"):
        clf.fit(X, np.full(90, 3))
    cce = Sequential([Dense(3, activation="softmax")], input_shape=(13,))
    cce.compile(loss="categorical_crossentropy")
    with pytest.raises(ShapeError, match="use sparse_categorical_crossentropy"):
        cce.fit(X, RNG.integers(0, 3, 90))
    with pytest.raises(ArgumentError, match="1-unit softmax output is always 1.0"):
        Sequential([Dense(1, activation="softmax")], input_shape=(13,)).compile(loss="binary_crossentropy")


def test_bad_layer_arguments_name_the_argument():
    with pytest.raises(ArgumentError, match=r"`units` must be a positive integer, got 0\."):
        Dense(0)
    with pytest.raises(ArgumentError, match=r"`rate` must be a float in \[0.0, 1.0\), got 1.5"):
        Dropout(1.5)
    with pytest.raises(UnknownNameError, match="unknown activation 'rleu' — did you mean 'relu'"):
        Dense(4, activation="rleu")
    with pytest.raises(UnknownNameError, match="unknown initializer 'glorot_unifrom' — did you mean 'glorot_uniform'"):
        Dense(4, kernel_initializer="glorot_unifrom")
    with pytest.raises(ShapeError, match="must come first"):
        Sequential([Dense(2), Input((3,))])
    with pytest.raises(ArgumentError, match="layer names must be unique, got a"):
        Sequential([Dense(2, name="a"), Dense(2, name="a")], input_shape=(3,)).build()


def test_layers_from_specs_and_get_config_round_trip():
    from nnctl.nn.layers import LAYERS
    for spec in [{"type": "dense", "units": 4, "activation": "relu", "kernel_regularizer": "l2"},
                 {"type": "dropout", "rate": 0.2}, {"type": "reshape", "target_shape": [2, -1]},
                 {"type": "activation", "activation": "softmax"}, {"type": "flatten"}]:
        layer = LAYERS.get(spec)
        again = type(layer)(**layer.get_config())
        assert again.get_config() == layer.get_config()


def test_csr_training_with_dense_validation_data():
    dense_val = X_TEXT.to_dense()[:40]
    history = text_model().fit(X_TEXT, Y_TEXT, epochs=2, batch_size=8, validation_data=(dense_val, Y_TEXT[:40]))
    model = text_model()
    model.fit(X_TEXT, Y_TEXT, epochs=2, batch_size=8)
    assert history["val_loss"][-1] == pytest.approx(model.evaluate(X_TEXT.take(np.arange(40)), Y_TEXT[:40],
                                                                   batch_size=8)["loss"], rel=1e-5)
