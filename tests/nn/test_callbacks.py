"""Built-in callbacks against Keras's documented semantics: scripted log sequences through a fake model,
hand-computed schedules, a few real `fit` runs, files (CSV, TensorBoard events) and exact resume."""

import csv
import json
import math
import re
import struct
from types import SimpleNamespace

import numpy as np
import pytest

from nnctl.errors import ArgumentError, NnctlError, UnknownNameError
from nnctl.nn.callbacks import (CALLBACKS, CSVLogger, Callback, CallbackList, EarlyStopping, LearningRateScheduler,
                                ReduceLROnPlateau, TensorBoard, TerminateOnNaN, higher_is_better)
from nnctl.nn.layers import Dense
from nnctl.nn.model import Sequential
from nnctl.nn.schedules import SCHEDULES, CosineDecay, LinearWarmup, PiecewiseConstant, StepDecay

RNG = np.random.default_rng(3)
X = RNG.standard_normal((48, 5)).astype(np.float32)
Y = (X @ RNG.standard_normal(5) + 1).astype(np.float32)


# ---- scripted runs -----------------------------------------------------------------------------------

class FakeModel:
    """What the callbacks touch: `stop_training`, `optimizer.learning_rate`, weights by name."""

    def __init__(self, learning_rate=1.0):
        self.stop_training = False
        self.optimizer = SimpleNamespace(learning_rate=learning_rate)
        self.weights = {"dense/kernel": np.zeros(2, np.float32)}

    def get_weights(self):
        return {name: value.copy() for name, value in self.weights.items()}

    def set_weights(self, weights):
        self.weights = {name: np.array(value) for name, value in weights.items()}


def drive(callback, values, monitor="val_loss", model=None, initial_epoch=0):
    """Epochs initial_epoch, ... with logs {monitor: values[i]}; the weights during epoch e are all e.

    Returns the model, the epochs run and the learning rate after each epoch's callbacks.
    """
    model = model or FakeModel()
    callbacks = CallbackList([callback], model)
    callbacks.set_params({"epochs": initial_epoch + len(values), "initial_epoch": initial_epoch})
    model.stop_training = False
    callbacks.on_train_begin()
    epochs, lrs = [], []
    for epoch, value in enumerate(values, start=initial_epoch):
        callbacks.on_epoch_begin(epoch)
        model.weights = {"dense/kernel": np.full(2, epoch, np.float32)}
        callbacks.on_epoch_end(epoch, {monitor: value, "lr": model.optimizer.learning_rate})
        epochs.append(epoch)
        lrs.append(model.optimizer.learning_rate)
        if model.stop_training:
            break
    callbacks.on_train_end()
    return SimpleNamespace(model=model, epochs=epochs, lrs=lrs, weights=model.weights["dense/kernel"][0])


@pytest.mark.parametrize("kwargs, values, stopped_epoch", [
    ({"patience": 2}, [1.0, 0.9, 0.95, 0.93, 0.92, 0.5], 3),
    ({"patience": 0}, [1.0, 0.9, 0.95, 0.5], 2),
    ({"patience": 0}, [math.nan, 1.0, 0.5], None),  # never stops after epoch 0, even without improvement
    ({"patience": 1, "min_delta": 0.1}, [1.0, 0.95, 0.85], 1),  # 0.95 is not 0.1 better than 1.0
    ({"patience": 1, "min_delta": 0.01}, [1.0, 0.95, 0.85], None),
    ({"patience": 2}, [1.0, 0.9, 0.95, 0.3], None),
    ({"patience": 2, "baseline": 0.5}, [1.0, 0.9, 0.95, 0.3], 2),  # wait never reset: 0.5 never beaten
    ({"patience": 0, "baseline": 0.5}, [1.0, 0.9, 1.2, 0.3], 2),  # but an improvement on best never stops
    ({"patience": 0}, [5.0, 6.0, 1.0, 2.0, 3.0], 1),
    ({"patience": 0, "start_from_epoch": 2}, [5.0, 6.0, 1.0, 2.0, 3.0], 3),  # epochs 0 and 1 are ignored
    ({"patience": 3, "mode": "max"}, [1.0, 0.9, 0.8, 0.7, 0.6], 3),
])
def test_early_stopping_follows_keras(kwargs, values, stopped_epoch):
    stopper = EarlyStopping(**kwargs)
    run = drive(stopper, values)
    assert run.model.stop_training is (stopped_epoch is not None)
    assert run.epochs[-1] == (len(values) - 1 if stopped_epoch is None else stopped_epoch)
    assert stopper.stopped_epoch == (stopped_epoch or 0)


def test_early_stopping_max_mode_auto_with_min_delta():
    values = [0.5, 0.55, 0.56, 0.565, 0.6]  # +0.05 counts, +0.01 and +0.015 do not, +0.035 does
    patient = EarlyStopping(monitor="val_accuracy", min_delta=0.02, patience=3)
    run = drive(patient, values, monitor="val_accuracy")
    assert run.epochs == [0, 1, 2, 3, 4] and not run.model.stop_training
    assert (patient.best, patient.best_epoch) == (0.6, 4)
    impatient = EarlyStopping(monitor="val_accuracy", min_delta=0.02, patience=2)
    assert drive(impatient, values, monitor="val_accuracy").epochs[-1] == 3
    assert (impatient.stopped_epoch, impatient.best, impatient.best_epoch) == (3, 0.55, 1)


@pytest.mark.parametrize("monitor, maximize", [
    ("val_loss", False), ("loss", False), ("mae", False), ("val_mean_absolute_error", False), ("mse", False),
    ("accuracy", True), ("val_binary_accuracy", True), ("val_sparse_categorical_accuracy", True),
    ("top_k_categorical_accuracy", True), ("acc", True), ("val_auc", True), ("precision", True),
    ("val_recall", True),
])
def test_mode_auto_infers_the_direction_from_the_name(monitor, maximize):
    assert higher_is_better(monitor) is maximize
    assert EarlyStopping(monitor=monitor).maximize is maximize
    assert ReduceLROnPlateau(monitor=monitor).maximize is maximize


def test_restore_best_weights_when_stopping_and_when_patience_never_ran_out():
    stopped = drive(EarlyStopping(patience=2, restore_best_weights=True), [1.0, 0.5, 0.7, 0.8, 0.1])
    assert stopped.epochs[-1] == 3 and stopped.weights == 1
    finished = drive(EarlyStopping(patience=10, restore_best_weights=True), [1.0, 0.5, 0.7])
    assert not finished.model.stop_training and finished.weights == 1  # keras#12511: restored anyway
    kept = drive(EarlyStopping(patience=10), [1.0, 0.5, 0.7])
    assert kept.weights == 2


def test_first_monitored_epoch_counts_as_best_until_one_improves():
    run = drive(EarlyStopping(patience=5, restore_best_weights=True, start_from_epoch=1), [0.1, math.nan, math.nan])
    assert run.weights == 1  # epoch 0 is not monitored; nan never improves


def test_missing_monitor_warns_with_the_available_keys_and_skips_the_epoch():
    stopper = EarlyStopping(monitor="val_loss", patience=0)
    with pytest.warns(UserWarning, match=r"`val_loss`.*available: loss"):
        run = drive(stopper, [1.0, 2.0, 3.0], monitor="loss")
    assert run.epochs == [0, 1, 2] and stopper.wait == 0
    with pytest.warns(UserWarning, match="available: loss"):
        drive(ReduceLROnPlateau(patience=0), [1.0, 2.0], monitor="loss")


def test_reduce_lr_on_plateau_factor_cooldown_min_lr_sequence():
    plateau = ReduceLROnPlateau(factor=0.5, patience=2, cooldown=2, min_lr=0.2, min_delta=0.0)
    run = drive(plateau, [1.0] * 13)
    # e0 best; e1 wait 1; e2 wait 2 -> 0.5, cooldown 2; e3 in cooldown; e4 cooldown ends, wait 1 (Keras counts
    # the epoch the cooldown ends in); e5 -> 0.25; e8 -> max(0.125, 0.2); at min_lr nothing more happens.
    assert run.lrs == [1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.2, 0.2, 0.2, 0.2, 0.2]
    assert plateau.wait == 3 and plateau.cooldown_counter == 0


def test_reduce_lr_on_plateau_improvement_and_min_delta():
    assert drive(ReduceLROnPlateau(factor=0.1, patience=2, min_delta=0.0), [1.0, 1.0, 0.5, 0.5, 0.5]).lrs == \
        pytest.approx([1.0, 1.0, 1.0, 1.0, 0.1])
    assert drive(ReduceLROnPlateau(factor=0.1, patience=2, min_delta=0.6), [1.0, 1.0, 0.5, 0.5, 0.5]).lrs == \
        pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01])
    rising = drive(ReduceLROnPlateau(monitor="val_accuracy", factor=0.5, patience=1), [0.5, 0.6, 0.6, 0.7],
                   monitor="val_accuracy")
    assert rising.lrs == [1.0, 1.0, 0.5, 0.5]


# ---- schedules ---------------------------------------------------------------------------------------

SCHEDULE_CASES = [
    ({"type": "step_decay", "factor": 0.5, "every": 2}, 0.8, [0.8, 0.8, 0.4, 0.4, 0.2, 0.2]),
    ({"type": "exponential_decay", "decay_rate": 0.5, "decay_epochs": 2}, 1.0,
     [1.0, 0.5 ** 0.5, 0.5, 0.5 ** 1.5, 0.25]),
    ({"type": "exponential_decay", "decay_rate": 0.5, "decay_epochs": 2, "staircase": True}, 1.0,
     [1.0, 1.0, 0.5, 0.5, 0.25]),
    ({"type": "cosine_decay", "decay_epochs": 4, "alpha": 0.1}, 1.0,
     [1.0, 0.9 * (1 + 0.5 ** 0.5) / 2 + 0.1, 0.55, 0.9 * (1 - 0.5 ** 0.5) / 2 + 0.1, 0.1, 0.1]),
    ({"type": "cosine_decay", "decay_epochs": 2, "warmup_epochs": 2, "warmup_target": 1.0}, 0.1,
     [0.1, 0.55, 1.0, 0.5, 0.0, 0.0]),
    ({"type": "linear_warmup", "warmup_epochs": 4}, 1.0, [0.25, 0.5, 0.75, 1.0, 1.0]),
    ({"type": "linear_warmup", "warmup_epochs": 2, "start_factor": 0.2}, 1.0, [0.6, 1.0, 1.0]),
    ({"type": "piecewise_constant", "boundaries": [2, 4], "values": [1.0, 0.5, 0.1]}, 9.0,
     [1.0, 1.0, 1.0, 0.5, 0.5, 0.1, 0.1]),
    ({"type": "polynomial_decay", "decay_epochs": 4, "end_learning_rate": 0.0, "power": 2.0}, 1.0,
     [1.0, 0.5625, 0.25, 0.0625, 0.0, 0.0]),
    ({"type": "polynomial_decay", "decay_epochs": 4, "end_learning_rate": 0.0, "cycle": True}, 1.0,
     [1.0, 0.75, 0.5, 0.25, 0.0, 0.375]),
    ({"type": "inverse_time_decay", "decay_rate": 1.0, "decay_epochs": 2}, 1.0, [1.0, 1 / 1.5, 0.5, 0.4]),
    ({"type": "inverse_time_decay", "decay_rate": 1.0, "decay_epochs": 2, "staircase": True}, 1.0,
     [1.0, 1.0, 0.5, 0.5]),
]


@pytest.mark.parametrize("spec, initial_lr, expected", SCHEDULE_CASES)
def test_schedule_values_hand_computed(spec, initial_lr, expected):
    schedule = SCHEDULES.get(spec)
    assert [schedule(epoch, initial_lr) for epoch in range(len(expected))] == pytest.approx(expected, abs=1e-12)
    rebuilt = SCHEDULES.get(schedule.spec())  # get_config mirrors __init__
    assert rebuilt.get_config() == schedule.get_config()
    assert json.loads(json.dumps(schedule.spec())) == schedule.spec()


def test_every_schedule_has_a_hand_computed_case_and_keras_names_resolve():
    assert {SCHEDULES.canonical(spec["type"]) for spec, _, _ in SCHEDULE_CASES} == set(SCHEDULES.entries)
    assert isinstance(SCHEDULES.get({"type": "CosineDecay", "decay_epochs": 3}), CosineDecay)
    assert isinstance(SCHEDULES.get({"type": "PiecewiseConstantDecay", "boundaries": [], "values": [1.0]}),
                      PiecewiseConstant)
    assert isinstance(SCHEDULES.get({"type": "warmup", "warmup_epochs": 3}), LinearWarmup)


def test_scheduler_in_a_fake_run_uses_the_initial_rate_or_the_current_one():
    run = drive(LearningRateScheduler({"type": "step", "factor": 0.5, "every": 1}), [1.0] * 3,
                model=FakeModel(0.4))
    assert run.lrs == [0.4, 0.2, 0.1]
    keras_style = drive(LearningRateScheduler(lambda epoch, lr: lr if epoch < 1 else lr * 0.5), [1.0] * 3,
                        model=FakeModel(0.4))
    assert keras_style.lrs == [0.4, 0.2, 0.1]
    with pytest.raises(ArgumentError, match="`schedule` must return"):
        drive(LearningRateScheduler(lambda epoch, lr: "fast"), [1.0])


# ---- end to end --------------------------------------------------------------------------------------

def tiny_model(learning_rate=0.05, seed=1):
    model = Sequential([Dense(4, activation="tanh"), Dense(1)], input_shape=(5,), seed=seed)
    model.compile(optimizer={"type": "sgd", "learning_rate": learning_rate}, loss="mse", metrics=["mae"])
    return model


class WeightRecorder(Callback):
    def __init__(self):
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(self.model.get_weights())


def same_weights(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_scheduler_rate_is_in_history_and_takes_effect_next_epoch():
    history = tiny_model(0.1).fit(X, Y, epochs=3, batch_size=16, callbacks=[
        LearningRateScheduler({"type": "step_decay", "factor": 0.5, "every": 1})])
    assert history["lr"] == [0.1, 0.05, 0.025]
    history = tiny_model(0.1).fit(X, Y, epochs=3, batch_size=16, callbacks=[
        LearningRateScheduler(lambda epoch, lr: lr if epoch < 1 else lr * 0.5)])
    assert history["lr"] == [0.1, 0.05, 0.025]
    recorder = WeightRecorder()
    frozen = {"type": "piecewise_constant", "boundaries": [0], "values": [0.1, 0.0]}
    history = tiny_model(0.1).fit(X, Y, epochs=3, batch_size=16, callbacks=[LearningRateScheduler(frozen), recorder])
    assert history["lr"] == [0.1, 0.0, 0.0]
    assert same_weights(recorder.weights[0], recorder.weights[2])  # a rate of 0 froze the weights


def test_early_stopping_in_fit_stops_and_restores_the_best_weights():
    recorder = WeightRecorder()
    # Training loss falls every epoch here, so in max mode epoch 0 stays best and patience runs out at 2.
    stopper = EarlyStopping(monitor="loss", mode="max", patience=2, restore_best_weights=True)
    model = tiny_model()
    history = model.fit(X, Y, epochs=6, batch_size=16, callbacks=[recorder, stopper])
    assert np.all(np.diff(history["loss"]) < 0)
    assert len(history["loss"]) == 3 and stopper.stopped_epoch == 2 and stopper.best_epoch == 0
    assert same_weights(model.get_weights(), recorder.weights[0])

    recorder, model = WeightRecorder(), tiny_model()
    stopper = EarlyStopping(monitor="val_loss", patience=10, restore_best_weights=True)
    history = model.fit(X, Y, epochs=4, batch_size=16, validation_data=(X[:12], -Y[:12]),
                        callbacks=[recorder, stopper])
    assert len(history["loss"]) == 4 and stopper.stopped_epoch == 0
    best = int(np.argmin(history["val_loss"]))
    assert stopper.best_epoch == best and same_weights(model.get_weights(), recorder.weights[best])


def test_reduce_lr_on_plateau_in_fit():
    plateau = ReduceLROnPlateau(monitor="loss", mode="max", factor=0.5, patience=1)
    history = tiny_model(0.1).fit(X, Y, epochs=5, batch_size=16, callbacks=[plateau])
    assert np.all(np.diff(history["loss"]) < 0)
    assert history["lr"] == [0.1, 0.1, 0.05, 0.025, 0.0125]  # the rate each epoch trained with


def test_terminate_on_nan_stops_a_diverging_run():
    assert TerminateOnNaN.stops_on_nonfinite and not Callback.stops_on_nonfinite
    assert CallbackList([Callback(), TerminateOnNaN()], None).stops_on_nonfinite
    assert not CallbackList([Callback()], None).stops_on_nonfinite
    model = tiny_model(learning_rate=1e6)
    history = model.fit(X, Y, epochs=4, batch_size=16, callbacks=[TerminateOnNaN()])
    assert model.stop_training and len(history.get("loss", [])) < 4
    assert all(math.isfinite(loss) for loss in history.get("loss", []))


def test_find_nonfinite_names_the_step_or_at_the_epochs_end_the_weight():
    from nnctl.nn.callbacks.monitors import find_nonfinite

    model = tiny_model()
    model._ready()
    losses = np.array([0.5, np.nan, np.inf, 0.2])
    assert find_nonfinite(2, losses, 0, 1, model.store) is None
    found = find_nonfinite(2, losses, 0, 3, model.store)
    assert (found["epoch"], found["step"], found["steps"]) == (3, 2, 4) and math.isnan(found["loss"])
    finite = np.array([0.5, 0.4])
    assert find_nonfinite(0, finite, 0, 2, model.store) is None
    param = model.store.params[-1]
    param.value.flat[-1] = -np.inf
    assert find_nonfinite(0, finite, 0, 1, model.store) is None  # weights are checked at the epoch's end only
    assert find_nonfinite(0, finite, 1, 2, model.store) == {"epoch": 1, "weights": param.name, "value": "-inf"}


# ---- exact resume ------------------------------------------------------------------------------------

def transferred(callback, factory):
    """A new callback with `callback`'s state, passed through JSON as a checkpoint would."""
    state, tensors = json.loads(json.dumps(callback.get_state())), callback.get_tensors()
    fresh = factory()
    fresh.set_state(state, tensors)
    return fresh


RESUME_FACTORIES = {
    "early_stopping": lambda: EarlyStopping(patience=2, min_delta=0.01, restore_best_weights=True, baseline=0.75),
    "reduce_lr": lambda: ReduceLROnPlateau(factor=0.5, patience=1, cooldown=2, min_lr=0.1),
    "schedule": lambda: LearningRateScheduler({"type": "cosine_decay", "decay_epochs": 6, "alpha": 0.2}),
    "keras_callable": lambda: LearningRateScheduler(lambda epoch, lr: lr * 0.5 if epoch % 2 else lr),
}
VALUES = [1.0, 0.8, 0.85, 0.9, 0.7, 0.75, 0.8, 0.9, 0.95, 1.0]


@pytest.mark.parametrize("name", list(RESUME_FACTORIES))
def test_scripted_resume_after_every_epoch_decides_like_one_run(name):
    factory = RESUME_FACTORIES[name]
    whole = drive(factory(), VALUES)
    for k in range(1, len(whole.epochs)):
        model, first = FakeModel(), factory()
        head = drive(first, VALUES[:k], model=model)
        tail = drive(transferred(first, factory), VALUES[k:], model=model, initial_epoch=k)
        assert head.epochs + tail.epochs == whole.epochs, k
        assert head.lrs + tail.lrs == whole.lrs, k
        assert tail.weights == whole.weights, k


def test_set_state_skips_one_reset_only():
    stopper = EarlyStopping(patience=5)
    drive(stopper, [1.0, 2.0, 3.0])
    resumed = transferred(stopper, lambda: EarlyStopping(patience=5))
    drive(resumed, [4.0], initial_epoch=3)
    assert (resumed.wait, resumed.best) == (3, 1.0)
    drive(resumed, [4.0])  # a later fit without set_state starts afresh, as in Keras
    assert (resumed.wait, resumed.best) == (0, 4.0)


RESUME_FIT_CALLBACKS = {
    "early_stopping": lambda: EarlyStopping(monitor="loss", mode="max", patience=4),
    "reduce_lr": lambda: ReduceLROnPlateau(monitor="loss", mode="max", factor=0.5, patience=1, cooldown=2),
    "schedule": lambda: LearningRateScheduler({"type": "step_decay", "factor": 0.5, "every": 2}),
    "keras_callable": lambda: LearningRateScheduler(lambda epoch, lr: lr * 0.5 if epoch % 2 else lr),
}


@pytest.mark.parametrize("name", list(RESUME_FIT_CALLBACKS))
def test_fit_resumed_at_epoch_3_with_callback_state_matches_the_uninterrupted_run(name):
    factory = RESUME_FIT_CALLBACKS[name]
    model_a = tiny_model()
    whole = model_a.fit(X, Y, epochs=6, batch_size=16, callbacks=[factory()])
    model_b, first = tiny_model(), factory()
    head = model_b.fit(X, Y, epochs=3, batch_size=16, callbacks=[first])
    tail = model_b.fit(X, Y, epochs=6, initial_epoch=3, batch_size=16, callbacks=[transferred(first, factory)])
    for key in ("loss", "mae", "lr"):
        assert head[key] + tail[key] == whole[key], key
    assert same_weights(model_a.get_weights(), model_b.get_weights())
    if name == "early_stopping":
        assert len(whole["loss"]) == 5  # the stop falls after the resume point
        restarted = tiny_model()
        restarted.fit(X, Y, epochs=3, batch_size=16)
        assert len(restarted.fit(X, Y, epochs=6, initial_epoch=3, batch_size=16, callbacks=[factory()])["loss"]) == 3


# ---- CSV and TensorBoard -----------------------------------------------------------------------------

def read_csv(path, separator=","):
    with open(path, newline="") as file:
        return list(csv.reader(file, delimiter=separator))


def test_csv_logger_writes_history_rows_in_fit(tmp_path):
    path = tmp_path / "logs" / "history.csv"
    history = tiny_model().fit(X, Y, epochs=3, batch_size=16, validation_data=(X[:12], Y[:12]),
                               callbacks=[CSVLogger(str(path))])
    rows = read_csv(path)
    assert rows[0] == ["epoch", *sorted(history)]
    assert [row[0] for row in rows[1:]] == ["0", "1", "2"]
    for index, row in enumerate(rows[1:]):
        assert [float(value) for value in row[1:]] == [history[key][index] for key in sorted(history)]


def test_csv_logger_header_once_append_and_flush(tmp_path):
    path = tmp_path / "h.csv"
    logger = CSVLogger(path, separator=";")
    model = FakeModel()
    callbacks = CallbackList([logger], model)
    callbacks.on_train_begin()
    callbacks.on_epoch_end(0, {"val_loss": 0.5, "loss": 0.25})
    assert read_csv(path, ";") == [["epoch", "loss", "val_loss"], ["0", "0.25", "0.5"]]  # flushed already
    callbacks.on_train_end()
    with pytest.warns(UserWarning, match="no column for lr"):  # appending keeps the file's columns
        drive(CSVLogger(path, separator=";", append=True), [0.125], initial_epoch=1)
    assert read_csv(path, ";") == [["epoch", "loss", "val_loss"], ["0", "0.25", "0.5"], ["1", "NA", "0.125"]]
    drive(CSVLogger(path, separator=";"), [0.75])  # append=False starts over
    assert read_csv(path, ";") == [["epoch", "lr", "val_loss"], ["0", "1.0", "0.75"]]
    path.write_text("")
    drive(CSVLogger(path, append=True), [0.75])
    assert read_csv(path)[0] == ["epoch", "lr", "val_loss"]


def test_csv_logger_resume_appends_and_replaces_the_redone_epochs(tmp_path):
    path = tmp_path / "h.csv"
    first = CSVLogger(path)
    drive(first, [1.0, 2.0, 3.0, 4.0])  # the checkpoint was taken after epoch 1, then the run died
    resumed = transferred(first, lambda: CSVLogger(path))
    drive(resumed, [20.0, 30.0], initial_epoch=2)
    rows = read_csv(path)
    assert rows[0] == ["epoch", "lr", "val_loss"] and [r[0] for r in rows[1:]] == ["0", "1", "2", "3"]
    assert [r[2] for r in rows[1:]] == ["1.0", "2.0", "20.0", "30.0"]


def read_events(folder):
    """(tag, step, value) of every scalar in the TFRecord event files of `folder`."""
    from tensorboardX.proto import event_pb2

    found = []
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data, pos = path.read_bytes(), 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            event = event_pb2.Event()
            event.ParseFromString(data[pos + 12:pos + 12 + length])  # after length and its crc
            pos += 12 + length + 4
            found.extend((value.tag, event.step, value.simple_value) for value in event.summary.value)
    return sorted(found)


def test_tensorboard_writes_keras_layout(tmp_path):
    pytest.importorskip("tensorboardX")
    board = TensorBoard(tmp_path / "tb")
    model = FakeModel(0.5)
    callbacks = CallbackList([board], model)
    callbacks.on_train_begin()
    for epoch in range(2):
        callbacks.on_epoch_end(epoch, {"loss": 1.0 / (epoch + 1), "accuracy": 0.5, "val_loss": 2.0,
                                       "val_accuracy": 0.25, "epoch_time": 3.0, "lr": 0.5})
    callbacks.on_train_end()
    assert read_events(tmp_path / "tb" / "train") == [
        ("epoch_accuracy", 0, 0.5), ("epoch_accuracy", 1, 0.5), ("epoch_learning_rate", 0, 0.5),
        ("epoch_learning_rate", 1, 0.5), ("epoch_loss", 0, 1.0), ("epoch_loss", 1, 0.5)]
    assert read_events(tmp_path / "tb" / "validation") == [
        ("epoch_accuracy", 0, 0.25), ("epoch_accuracy", 1, 0.25), ("epoch_loss", 0, 2.0), ("epoch_loss", 1, 2.0)]


def test_tensorboard_in_fit_and_resumed(tmp_path):
    pytest.importorskip("tensorboardX")
    model = tiny_model()
    board = TensorBoard(str(tmp_path))
    model.fit(X, Y, epochs=2, batch_size=16, validation_data=(X[:12], Y[:12]), callbacks=[board])
    model.fit(X, Y, epochs=3, initial_epoch=2, batch_size=16, validation_data=(X[:12], Y[:12]),
              callbacks=[transferred(board, lambda: TensorBoard(str(tmp_path)))])
    steps = [step for tag, step, _ in read_events(tmp_path / "validation") if tag == "epoch_mae"]
    assert steps == [0, 1, 2]


def test_tensorboard_without_the_extra_names_it(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "tensorboardX", None)
    with pytest.raises(NnctlError, match=re.escape("pip install 'nnctl[tensorboard]'")):
        TensorBoard()


# ---- arguments, configs, registry --------------------------------------------------------------------

@pytest.mark.parametrize("factory, kwargs, argument", [
    (EarlyStopping, {"patience": -1}, "patience"),
    (EarlyStopping, {"patience": 1.5}, "patience"),
    (EarlyStopping, {"mode": "best"}, "mode"),
    (EarlyStopping, {"min_delta": -0.1}, "min_delta"),
    (EarlyStopping, {"monitor": ""}, "monitor"),
    (EarlyStopping, {"baseline": "low"}, "baseline"),
    (EarlyStopping, {"restore_best_weights": "yes"}, "restore_best_weights"),
    (EarlyStopping, {"start_from_epoch": -2}, "start_from_epoch"),
    (EarlyStopping, {"verbose": -1}, "verbose"),
    (ReduceLROnPlateau, {"factor": 1.0}, "factor"),
    (ReduceLROnPlateau, {"factor": 0.0}, "factor"),
    (ReduceLROnPlateau, {"cooldown": -1}, "cooldown"),
    (ReduceLROnPlateau, {"min_lr": -1e-3}, "min_lr"),
    (ReduceLROnPlateau, {"mode": "up"}, "mode"),
    (LearningRateScheduler, {"schedule": 3}, "schedule"),
    (LearningRateScheduler, {"schedule": {"type": "cosine_decay"}}, "schedule"),
    (LearningRateScheduler, {"schedule": {"type": "cosine_decay", "decay_epochs": 3, "warmup": 2}}, "schedule"),
    (LearningRateScheduler, {"schedule": {"decay_epochs": 3}}, "schedule"),
    (LearningRateScheduler, {"schedule": {"type": "cosine_decay", "decay_epochs": 3, "warmup_epochs": 2}},
     "warmup_epochs"),
    (CSVLogger, {"separator": ";;"}, "separator"),
    (CSVLogger, {"append": 1}, "append"),
    (CSVLogger, {"filename": ""}, "filename"),
    (StepDecay, {"factor": 0.0}, "factor"),
    (StepDecay, {"every": 0}, "every"),
    (SCHEDULES.lookup("exponential_decay"), {"decay_rate": 0.0}, "decay_rate"),
    (SCHEDULES.lookup("exponential_decay"), {"decay_rate": 0.5, "staircase": "no"}, "staircase"),
    (CosineDecay, {"decay_epochs": 0}, "decay_epochs"),
    (CosineDecay, {"decay_epochs": 3, "alpha": 2.0}, "alpha"),
    (LinearWarmup, {"warmup_epochs": 2, "start_factor": 1.5}, "start_factor"),
    (PiecewiseConstant, {"boundaries": [2, 4], "values": [1.0, 0.5]}, "values"),
    (PiecewiseConstant, {"boundaries": [4, 2], "values": [1.0, 0.5, 0.1]}, "boundaries"),
    (SCHEDULES.lookup("polynomial_decay"), {"decay_epochs": 3, "power": 0}, "power"),
])
def test_bad_arguments_name_the_argument(factory, kwargs, argument):
    with pytest.raises(ArgumentError, match=re.escape(f"`{argument}`")):
        factory(**kwargs)


def test_unknown_schedule_name_suggests_one():
    with pytest.raises(UnknownNameError, match="cosine_decay"):
        LearningRateScheduler("cosine_decy")


@pytest.mark.parametrize("callback", [
    EarlyStopping(monitor="val_accuracy", min_delta=0.01, patience=3, mode="max", baseline=0.5,
                  restore_best_weights=True, start_from_epoch=2),
    ReduceLROnPlateau(monitor="loss", factor=0.2, patience=4, min_delta=0.0, cooldown=1, min_lr=1e-5),
    LearningRateScheduler({"type": "cosine_decay", "decay_epochs": 20, "warmup_epochs": 2, "warmup_target": 0.1}),
    TerminateOnNaN(),
    CSVLogger("h.csv", separator="\t", append=True),
], ids=lambda callback: type(callback).__name__)
def test_get_config_mirrors_init_and_registry_builds_it(callback):
    config = callback.get_config()
    assert type(callback)(**config).get_config() == config
    name = CALLBACKS.canonical(type(callback).__name__)
    assert type(CALLBACKS.get({"type": name, **config})) is type(callback)


def test_registry_names_and_aliases():
    assert set(CALLBACKS.entries) == {"early_stopping", "reduce_lr_on_plateau", "learning_rate_scheduler",
                                      "terminate_on_nan", "csv_logger", "tensorboard", "model_checkpoint"}
    for alias, name in [("reduce_lr", "reduce_lr_on_plateau"), ("lr_scheduler", "learning_rate_scheduler"),
                        ("csv", "csv_logger"), ("ReduceLROnPlateau", "reduce_lr_on_plateau"),
                        ("TerminateOnNaN", "terminate_on_nan"), ("CSVLogger", "csv_logger")]:
        assert CALLBACKS.canonical(alias) == name
    scheduler = CALLBACKS.get({"type": "lr_scheduler", "schedule": {"type": "cosine_decay", "decay_epochs": 20}})
    assert isinstance(scheduler.schedule, CosineDecay) and scheduler.schedule.decay_epochs == 20
    base = Callback()
    assert (base.get_state(), base.get_tensors(), base.set_state({}, {})) == ({}, {}, None)
