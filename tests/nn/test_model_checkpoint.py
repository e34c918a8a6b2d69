"""ModelCheckpoint (Keras semantics: best-only, every N epochs, formatted names) and the checkpoint format."""

import numpy as np
import pytest
import safetensors.numpy

from nnctl.errors import ArgumentError, NnctlError
from nnctl.nn import checkpoint
from nnctl.nn.callbacks import Callback, History, ModelCheckpoint
from nnctl.nn.layers import Dense
from nnctl.nn.model import Sequential

RNG = np.random.default_rng(0)
X = RNG.standard_normal((96, 4)).astype(np.float32)
Y = (X[:, 0] > 0).astype(np.float32)


class ScriptedLogs(Callback):
    """Replaces the epoch's val_loss with a scripted value before ModelCheckpoint sees it."""

    def __init__(self, values):
        self.values = values

    def on_epoch_end(self, epoch, logs=None):
        logs["val_loss"] = self.values[epoch]


def fit(callbacks, epochs=5):
    model = Sequential([Dense(3, activation="relu"), Dense(1, activation="sigmoid")], input_shape=(4,), seed=1)
    model.compile("rmsprop", "binary_crossentropy", metrics=["accuracy"])
    model.fit(X, Y, epochs=epochs, batch_size=16, validation_data=(X[:32], Y[:32]), callbacks=callbacks)
    return model


def test_save_best_only_writes_when_the_monitor_improves(tmp_path):
    saver = ModelCheckpoint(tmp_path / "best-{epoch}.safetensors", save_best_only=True)
    fit([ScriptedLogs([0.5, 0.4, 0.45, 0.3, 0.3]), saver])
    assert [p.split("/")[-1] for p in saver.saved] == ["best-1.safetensors", "best-2.safetensors",
                                                      "best-4.safetensors"]  # equal is not better
    assert saver.best == 0.3


def test_mode_auto_maximizes_accuracy_and_the_file_holds_that_epochs_weights(tmp_path):
    class Snap(Callback):
        def __init__(self):
            self.weights = {}

        def on_epoch_end(self, epoch, logs=None):
            self.weights[epoch] = (logs["val_accuracy"], self.model.get_weights())

    snap = Snap()
    saver = ModelCheckpoint(tmp_path / "best.safetensors", monitor="val_accuracy", save_best_only=True)
    fit([snap, saver], epochs=6)
    best_epoch = max(snap.weights, key=lambda e: (snap.weights[e][0], -e))
    saved = safetensors.numpy.load_file(str(tmp_path / "best.safetensors"))
    assert all(np.array_equal(saved[k], v) for k, v in snap.weights[best_epoch][1].items())


def test_every_n_epochs_and_formatting_with_logs(tmp_path):
    saver = ModelCheckpoint(str(tmp_path / "e{epoch:02d}-{loss:.2f}.safetensors"), every_n_epochs=2)
    fit([saver], epochs=5)
    names = [p.split("/")[-1] for p in saver.saved]
    assert [n[:3] for n in names] == ["e02", "e04"] and all(n.endswith(".safetensors") for n in names)


def test_an_unformattable_name_lists_the_available_keys(tmp_path):
    with pytest.raises(ArgumentError, match="available: epoch, accuracy, epoch_time, loss"):
        fit([ModelCheckpoint(str(tmp_path / "{val_auc}.safetensors"))], epochs=1)


@pytest.mark.parametrize("kwargs, name", [({"mode": "best"}, "mode"), ({"every_n_epochs": 0}, "every_n_epochs"),
                                          ({"save_best_only": "yes"}, "save_best_only")])
def test_bad_arguments_are_named(kwargs, name):
    with pytest.raises(ArgumentError, match=f"`{name}`"):
        ModelCheckpoint(**kwargs)


def test_capture_and_restore_round_trip_the_whole_training_state(tmp_path):
    model = fit([], epochs=2)
    history = History()
    history.history, history.epoch = {"loss": [0.7, 0.6]}, [0, 1]
    model.rng.random()  # move the generator, so restoring it is visible
    taken = checkpoint.capture(model, history)
    path = taken.save(tmp_path / "ckpt.safetensors")
    expected_next = model.rng.random()

    other = fit([], epochs=1)
    restored_history = History()
    checkpoint.restore(other, checkpoint.load(path), restored_history)
    assert other.rng.random() == expected_next
    assert all(np.array_equal(other.get_weights()[k], v) for k, v in model.get_weights().items())
    assert all(np.array_equal(a, b) for a, b in zip(other.optimizer.slots, model.optimizer.slots))
    assert other.optimizer.iterations == model.optimizer.iterations
    assert restored_history.history == history.history and restored_history.epoch == [0, 1]
    assert path.read_bytes() == taken.to_bytes()  # the same state always gives the same bytes


def test_restore_refuses_other_callbacks(tmp_path):
    model = fit([], epochs=1)
    path = checkpoint.capture(model, History(), [ModelCheckpoint()]).save(tmp_path / "c.safetensors")
    with pytest.raises(NnctlError, match=r"taken with callbacks \['ModelCheckpoint'\], this run has \[\]"):
        checkpoint.restore(model, checkpoint.load(path), History(), [])
