"""The callback contract, the dispatcher, History, and what monitoring callbacks share (mode, monitor).

The training loop never prints: progress display, logging and early stopping are all callbacks.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from nnctl.direction import higher_is_better  # noqa: F401  (re-exported: mode auto)
from nnctl.errors import ArgumentError, check_float_range


class Callback:
    """Override any of the hooks below; `self.model` is set before training starts.

    Batch hooks are optional and cost time: under the compiled fast path they fire once per *chunk* of
    steps (batch = the last step of the chunk; chunks are sized to last about 0.1 s), and the model only
    chunks an epoch when some callback overrides them. `logs` of `on_train_batch_end` hold the running
    loss and metrics of the epoch so far.

    A callback that keeps decisions across epochs (counters, a best value) also overrides the state trio,
    so a run resumed from a checkpoint decides exactly as the uninterrupted run would: `get_state()` (a
    JSON-able dict; inf and nan allowed), `get_tensors()` (name → array) and `set_state(state, tensors)`.
    `on_train_begin` resets that state, except right after a `set_state`.

    Example:
        class StopAt(Callback):
            def on_epoch_end(self, epoch, logs): self.model.stop_training = logs["loss"] < 0.1
    """

    model = None
    params: dict = {}
    # False for a batch hook that only watches (e.g. for Ctrl-C): fit then skips the running metrics.
    needs_batch_logs = True
    # True asks fit to stop at the first step whose loss is NaN or infinite (see TerminateOnNaN).
    stops_on_nonfinite = False

    def set_model(self, model) -> None:
        self.model = model

    def set_params(self, params: dict) -> None:
        """Keras's `params`: epochs, steps (per epoch), samples, batch_size, initial_epoch."""
        self.params = dict(params)

    _resumed = False  # set by a subclass's set_state; read once by _starting_fresh

    def _starting_fresh(self) -> bool:
        """For on_train_begin: True when this training is not a resume (reset counters, as Keras does);
        False once after set_state, so a restored state carries on."""
        resumed, self._resumed = self._resumed, False
        return not resumed

    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_train_batch_begin(self, batch, logs=None): ...
    def on_train_batch_end(self, batch, logs=None): ...

    def get_state(self) -> dict:
        return {}

    def get_tensors(self) -> dict[str, np.ndarray]:
        return {}

    def set_state(self, state: dict, tensors: dict | None = None) -> None: ...

    @property
    def wants_batches(self) -> bool:
        cls = type(self)
        return (cls.on_train_batch_begin is not Callback.on_train_batch_begin
                or cls.on_train_batch_end is not Callback.on_train_batch_end)


class CallbackList(Callback):
    """Forwards every hook to each callback in order."""

    def __init__(self, callbacks, model):
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            cb.set_model(model)

    @property
    def wants_batches(self) -> bool:
        return any(cb.wants_batches for cb in self.callbacks)

    @property
    def wants_batch_logs(self) -> bool:
        return any(cb.wants_batches and cb.needs_batch_logs for cb in self.callbacks)

    @property
    def stops_on_nonfinite(self) -> bool:
        return any(cb.stops_on_nonfinite for cb in self.callbacks)

    def set_params(self, params: dict) -> None:
        for cb in self.callbacks:
            cb.set_params(params)

    def _call(self, hook, *args):
        for cb in self.callbacks:
            getattr(cb, hook)(*args)

    def on_train_begin(self, logs=None): self._call("on_train_begin", logs)
    def on_train_end(self, logs=None): self._call("on_train_end", logs)
    def on_epoch_begin(self, epoch, logs=None): self._call("on_epoch_begin", epoch, logs)
    def on_epoch_end(self, epoch, logs=None): self._call("on_epoch_end", epoch, logs)
    def on_train_batch_begin(self, batch, logs=None): self._call("on_train_batch_begin", batch, logs)
    def on_train_batch_end(self, batch, logs=None): self._call("on_train_batch_end", batch, logs)


class History(Callback):
    """Collects each epoch's logs into `history` ({"loss": [...], "val_loss": [...], ...})."""

    def __init__(self):
        self.history: dict[str, list] = {}
        self.epoch: list[int] = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)


class FitHistory(dict):
    """What `fit` returns: the history dict itself ({"loss": [...], ...}, so dict access works) that is also
    Keras's History object: `.history` (the same dict), `.epoch` (the epochs run, from 0), `.params`."""

    def __init__(self, history: dict, epoch: list, params: dict):
        super().__init__(history)
        self.epoch, self.params = list(epoch), dict(params)

    @property
    def history(self) -> dict:
        return self


# ---- built-in callbacks ------------------------------------------------------------------------------

def _check_monitor(monitor) -> str:
    if not isinstance(monitor, str) or not monitor:
        raise ArgumentError(f"`monitor` must be a log name such as val_loss, got {monitor!r}.")
    return monitor


def _check_mode(mode) -> str:
    if mode not in ("auto", "min", "max"):
        raise ArgumentError(f"`mode` must be auto, min or max, got {mode!r}.")
    return mode


def _non_negative(name, value) -> float:
    return check_float_range(name, value, 0.0, math.inf)


def _monitored(callback, logs):
    """The monitored value of this epoch's logs as a float, or None (with Keras's warning) when absent."""
    logs = logs or {}
    value = logs.get(callback.monitor)
    if value is None:
        warnings.warn(f"{type(callback).__name__} is conditioned on `{callback.monitor}`, which is not in the "
                      f"logs; available: {', '.join(sorted(logs))}", stacklevel=3)
        return None
    return float(value)


