"""Callbacks that watch the logs and act on training: early stopping and learning-rate control."""

from __future__ import annotations

import inspect
import math

import numpy as np

from nnctl.errors import ArgumentError, check_float_range
from nnctl.nn.callbacks.base import (Callback, _check_mode, _check_monitor, _monitored, _non_negative,
                                     higher_is_better)
from nnctl.nn.schedules import SCHEDULES, Schedule, check_bool, check_non_negative_int


class EarlyStopping(Callback):
    """Stops training when `monitor` has stopped improving (Keras 3 semantics).

    Each monitored epoch (from `start_from_epoch` on) adds one to `wait`. An epoch improves when
    `current - min_delta < best` (min mode; `current + min_delta > best` in max mode); it then becomes
    `best`, and `wait` goes back to 0 only if it also improves on `baseline` (when given). Training stops
    when `wait >= patience` after an epoch that did not improve, never after epoch 0. With
    `restore_best_weights`, the weights of the best epoch are put back when training ends, whether or not
    patience ran out; the first monitored epoch counts as best until one improves on it.

    Example:
        EarlyStopping(monitor="val_loss", patience=3, restore_best_weights=True)
    """

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, verbose=0, mode="auto", baseline=None,
                 restore_best_weights=False, start_from_epoch=0):
        self.monitor, self.mode = _check_monitor(monitor), _check_mode(mode)
        self.min_delta = _non_negative("min_delta", min_delta)
        self.patience = check_non_negative_int("patience", patience)
        self.verbose = check_non_negative_int("verbose", verbose)
        if baseline is not None and (isinstance(baseline, bool) or not isinstance(baseline, (int, float))):
            raise ArgumentError(f"`baseline` must be a number, got {baseline!r}.")
        self.baseline = baseline
        self.restore_best_weights = check_bool("restore_best_weights", restore_best_weights)
        self.start_from_epoch = check_non_negative_int("start_from_epoch", start_from_epoch)
        self.maximize = mode == "max" or (mode == "auto" and higher_is_better(monitor))
        # `report(line)` prints Keras's two lines (the trainer's progress callback sets it: `note`); without
        # it they are printed when `verbose`. `restored_epoch` (from 1): whose weights the model ends with.
        self.report, self.restored_epoch = None, None
        self._reset()

    def _reset(self):
        self.wait, self.stopped_epoch, self.best_epoch = 0, 0, 0
        self.best = -math.inf if self.maximize else math.inf
        self.best_weights = None

    def _is_improvement(self, value, reference) -> bool:
        # Keras's form, `monitor_op(value - signed_min_delta, reference)`, kept for identical rounding.
        return value - self.min_delta > reference if self.maximize else value + self.min_delta < reference

    def on_train_begin(self, logs=None):
        self.restored_epoch = None
        if self._starting_fresh():
            self._reset()

    def on_epoch_end(self, epoch, logs=None):
        current = _monitored(self, logs)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights, self.best_epoch = self.model.get_weights(), epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0:
            self._say(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            self._say(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)
            self.restored_epoch = self.best_epoch + 1

    def _say(self, line: str) -> None:
        if self.report is not None:
            self.report(line)
        elif self.verbose:
            print(line)

    def get_state(self) -> dict:
        return {"wait": self.wait, "stopped_epoch": self.stopped_epoch, "best": self.best,
                "best_epoch": self.best_epoch, "has_best_weights": self.best_weights is not None}

    def get_tensors(self) -> dict[str, np.ndarray]:
        return {f"best_weights/{name}": value for name, value in (self.best_weights or {}).items()}

    def set_state(self, state: dict, tensors: dict | None = None) -> None:
        self.wait, self.stopped_epoch = int(state["wait"]), int(state["stopped_epoch"])
        self.best, self.best_epoch = float(state["best"]), int(state["best_epoch"])
        prefix = "best_weights/"
        self.best_weights = ({key[len(prefix):]: np.array(value) for key, value in (tensors or {}).items()
                              if key.startswith(prefix)} if state["has_best_weights"] else None)
        self._resumed = True

    def get_config(self) -> dict:
        return {"monitor": self.monitor, "min_delta": self.min_delta, "patience": self.patience,
                "verbose": self.verbose, "mode": self.mode, "baseline": self.baseline,
                "restore_best_weights": self.restore_best_weights, "start_from_epoch": self.start_from_epoch}


class ReduceLROnPlateau(Callback):
    """Multiplies the learning rate by `factor` when `monitor` has not improved by more than `min_delta`
    for `patience` epochs (Keras 3 semantics).

    After a reduction, `cooldown` epochs pass before non-improving epochs count again. The new rate is
    `max(lr * factor, min_lr)`, and a rate already at `min_lr` is left alone. The rate is the optimizer's
    `learning_rate`, read by the engine at every step, so a change takes effect from the next epoch.

    Example:
        ReduceLROnPlateau(monitor="val_loss", factor=0.2, patience=5, min_lr=1e-5)
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto", min_delta=1e-4,
                 cooldown=0, min_lr=0.0):
        self.monitor, self.mode = _check_monitor(monitor), _check_mode(mode)
        self.factor = check_float_range("factor", factor, 0.0, 1.0, low_open=True, high_open=True)
        self.patience = check_non_negative_int("patience", patience)
        self.verbose = check_non_negative_int("verbose", verbose)
        self.min_delta = _non_negative("min_delta", min_delta)
        self.cooldown = check_non_negative_int("cooldown", cooldown)
        self.min_lr = _non_negative("min_lr", min_lr)
        self.maximize = mode == "max" or (mode == "auto" and higher_is_better(monitor))
        # `report(line)` prints Keras's two lines (the trainer's progress callback sets it: `note`); without
        # it they are printed when `verbose`. `restored_epoch` (from 1): whose weights the model ends with.
        self.report, self.restored_epoch = None, None
        self._reset()

    def _reset(self):
        self.wait, self.cooldown_counter = 0, 0
        self.best = -math.inf if self.maximize else math.inf

    def _is_improvement(self, value) -> bool:
        return value > self.best + self.min_delta if self.maximize else value < self.best - self.min_delta

    def on_train_begin(self, logs=None):
        self.restored_epoch = None
        if self._starting_fresh():
            self._reset()

    def on_epoch_end(self, epoch, logs=None):
        current = _monitored(self, logs)
        if current is None:
            return
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._is_improvement(current):
            self.best, self.wait = current, 0
        elif self.cooldown_counter == 0:
            self.wait += 1
            if self.wait >= self.patience:
                old_lr = float(self.model.optimizer.learning_rate)
                # The rate is a float64 here, so no float32 rounding of min_lr as in Keras.
                if old_lr > self.min_lr:
                    new_lr = max(old_lr * self.factor, self.min_lr)
                    self.model.optimizer.learning_rate = new_lr
                    if self.verbose:
                        print(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new_lr}.")
                    self.cooldown_counter, self.wait = self.cooldown, 0

    def get_state(self) -> dict:
        return {"wait": self.wait, "cooldown_counter": self.cooldown_counter, "best": self.best}

    def set_state(self, state: dict, tensors: dict | None = None) -> None:
        self.wait, self.cooldown_counter = int(state["wait"]), int(state["cooldown_counter"])
        self.best, self._resumed = float(state["best"]), True

    def get_config(self) -> dict:
        return {"monitor": self.monitor, "factor": self.factor, "patience": self.patience,
                "verbose": self.verbose, "mode": self.mode, "min_delta": self.min_delta,
                "cooldown": self.cooldown, "min_lr": self.min_lr}


def _schedule_from_spec(spec) -> Schedule:
    """A Schedule from a name or a `{type: name, ...}` mapping, with its argument mistakes as ArgumentErrors."""
    name = spec.get("type") if isinstance(spec, dict) else spec
    if name is None:
        raise ArgumentError(f"`schedule` given as a mapping needs a `type` key, got {sorted(spec)}.")
    factory = SCHEDULES.lookup(name)
    if isinstance(spec, dict):
        allowed = list(inspect.signature(factory).parameters)
        unknown = [key for key in spec if key != "type" and key not in allowed]
        if unknown:
            raise ArgumentError(f"`schedule` {factory.name} takes no argument `{unknown[0]}` "
                                f"(it takes: {', '.join(allowed)}).")
    try:
        return SCHEDULES.get(spec)
    except TypeError as error:  # a required argument is missing
        raise ArgumentError(f"`schedule` {factory.name}: {error}.") from None


class LearningRateScheduler(Callback):
    """Sets the optimizer's learning rate at the start of every epoch.

    `schedule` is a schedule from `nnctl.nn.schedules` (a name, a `{type: name, ...}` mapping or an
    instance), called as `schedule(epoch, initial_lr)` with the rate the optimizer had when this callback
    first saw training begin (kept across `fit` calls and checkpoints); or any callable, called Keras-style
    as `schedule(epoch, lr)` with the optimizer's current rate. Epochs are 0-based.

    Example:
        LearningRateScheduler({"type": "cosine_decay", "decay_epochs": 20})
        LearningRateScheduler(lambda epoch, lr: lr if epoch < 10 else lr * 0.9)
    """

    def __init__(self, schedule, verbose=0):
        if isinstance(schedule, (str, dict)):
            schedule = _schedule_from_spec(schedule)
        elif not callable(schedule):
            raise ArgumentError(f"`schedule` must be a schedule name, a mapping with `type`, or a function "
                                f"(epoch, lr) -> lr, got {schedule!r}.")
        self.schedule = schedule
        self.verbose = check_non_negative_int("verbose", verbose)
        self.initial_lr: float | None = None

    def on_train_begin(self, logs=None):
        if self.initial_lr is None:
            self.initial_lr = float(self.model.optimizer.learning_rate)

    def on_epoch_begin(self, epoch, logs=None):
        if isinstance(self.schedule, Schedule):
            lr = self.schedule(epoch, self.initial_lr)
        else:
            lr = self.schedule(epoch, float(self.model.optimizer.learning_rate))
        if isinstance(lr, bool) or not isinstance(lr, (int, float, np.floating, np.integer)) \
                or not math.isfinite(lr) or lr < 0:
            raise ArgumentError(f"`schedule` must return a finite, non-negative learning rate; "
                                f"it returned {lr!r} for epoch {epoch}.")
        self.model.optimizer.learning_rate = float(lr)
        if self.verbose:
            print(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {float(lr)}.")

    def get_state(self) -> dict:
        return {"initial_lr": self.initial_lr}

    def set_state(self, state: dict, tensors: dict | None = None) -> None:
        self.initial_lr = None if state.get("initial_lr") is None else float(state["initial_lr"])

    def get_config(self) -> dict:
        schedule = self.schedule.spec() if isinstance(self.schedule, Schedule) else self.schedule
        return {"schedule": schedule, "verbose": self.verbose}


class TerminateOnNaN(Callback):
    """Stops training at the first step whose loss is NaN or infinite, or at the end of an epoch whose
    weights hold a NaN or infinity though its losses were finite (ReLU turns NaN into 0).

    A marker: `fit` itself scans the step losses after each compiled chunk of steps, and the parameter
    buffer once per epoch, when any callback has `stops_on_nonfinite`, so the failing step is found exactly
    without per-batch hooks (which would cost the fast path). The epoch in which it happens is not recorded
    in the history; `model.nonfinite` says what was found.
    """

    stops_on_nonfinite = True

    def get_config(self) -> dict:
        return {}


def find_nonfinite(epoch: int, step_losses: np.ndarray, first: int, last: int, store) -> dict | None:
    """What TerminateOnNaN stops for, or None: the first NaN or infinite loss of steps first..last-1
    (`step_losses`: one per step of the epoch), or, once the epoch's last step is done, the first non-finite
    weight of `store` (a ParameterStore)."""
    bad = np.flatnonzero(~np.isfinite(step_losses[first:last]))
    if bad.size:
        step = first + int(bad[0])
        return {"epoch": epoch + 1, "step": step + 1, "steps": len(step_losses), "loss": float(step_losses[step])}
    if last == len(step_losses) and (found := store.first_nonfinite()) is not None:
        return {"epoch": epoch + 1, "weights": found[0], "value": found[1]}
    return None
