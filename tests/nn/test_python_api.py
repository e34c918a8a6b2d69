"""The Python API's face (nnctl.Sequential / nnctl.Model in nnctl/api.py) and what `fit` returns: Keras's
History (also the plain dict it always was), `validation_split`, `verbose` progress, a printed `summary()`."""

import json

import numpy as np
import pytest

import nnctl
from nnctl.engine.csr import CSRMatrix
from nnctl.errors import ArgumentError, ShapeError
from nnctl.nn.functional import Model as GraphModel
from nnctl.nn.layers import Dense
from nnctl.nn.model import Sequential as EngineSequential

RNG = np.random.default_rng(8)
X = RNG.standard_normal((100, 6)).astype(np.float32)
Y = (X[:, 0] > 0).astype(np.float32)


def _model(cls=nnctl.Sequential):
    model = cls([Dense(4, activation="relu"), Dense(1, activation="sigmoid")], input_shape=(6,), seed=0)
    model.compile("rmsprop", "binary_crossentropy", ["accuracy"])
    return model


def test_fit_returns_keras_history_that_is_also_the_dict():
    history = _model(EngineSequential).fit(X, Y, epochs=3, batch_size=16)
    assert history.history is history and history.epoch == [0, 1, 2]
    assert history.params["epochs"] == 3 and history.params["samples"] == 100
    assert json.loads(json.dumps(history))["loss"] == history["loss"]
    assert isinstance(history, dict) and len(history["accuracy"]) == 3


def test_validation_split_holds_out_the_last_rows_before_shuffling():
    split = _model(EngineSequential).fit(X, Y, epochs=2, batch_size=16, validation_split=0.2)
    explicit = _model(EngineSequential).fit(X[:80], Y[:80], epochs=2, batch_size=16,
                                            validation_data=(X[80:], Y[80:]))
    timeless = [{k: v for k, v in h.items() if k != "epoch_time"} for h in (split, explicit)]
    assert timeless[0] == timeless[1] and split.params["samples"] == 80
    sparse = CSRMatrix.from_dense(np.where(X > 1, X, 0).astype(np.float32))
    assert _model(EngineSequential).fit(sparse, Y, epochs=1, batch_size=16, validation_split=0.25).params[
        "samples"] == 75
    for bad in (-1.0, 1.0, "half", 0.999):  # 0.999 of 100 rows leaves none to train on
        with pytest.raises(ShapeError, match="validation_split"):
            _model(EngineSequential).fit(X, Y, validation_split=bad)


def test_verbose_prints_as_keras_and_the_engine_never_prints(capsys):
    _model(EngineSequential).fit(X, Y, epochs=2, batch_size=16)
    _model().fit(X, Y, epochs=2, batch_size=16, verbose=0)
    assert capsys.readouterr().out == ""
    _model().fit(X, Y, epochs=2, batch_size=16, verbose=2, validation_split=0.2)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1].startswith("Epoch 2/2") and "val_accuracy" in lines[1]
    _model().fit(X, Y, epochs=2, batch_size=16)  # "auto": not a terminal here, so one line per epoch
    assert capsys.readouterr().out.count("Epoch") == 2
    with pytest.raises(ArgumentError, match="verbose"):
        _model().fit(X, Y, verbose=3)


def test_summary_prints_the_table_and_returns_it(capsys):
    info = _model().summary()
    out = capsys.readouterr().out
    assert 'Model: "sequential"' in out and "dense_1 (Dense)" in out and "Total params: 33" in out
    assert info["total_params"] == 33
    assert _model().summary(print_table=False) == info and capsys.readouterr().out == ""


def test_the_package_names_are_the_faces_of_the_engine_models():
    assert issubclass(nnctl.Sequential, EngineSequential) and issubclass(nnctl.Model, GraphModel)
    inputs = nnctl.Input((6,))
    model = nnctl.Model(inputs, Dense(1)(inputs), seed=0)
    model.compile("sgd", "mse")
    assert model.fit(X, Y, epochs=1, verbose=0).epoch == [0]
