"""Callbacks that save models: Checkpointer (the state a run resumes from) and Keras's ModelCheckpoint."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import safetensors.numpy

from nnctl.errors import ArgumentError, show
from nnctl.nn.callbacks.base import Callback, History, higher_is_better
from nnctl.nn.callbacks.paths import confine, fill_template, template_fields
from nnctl.nn.checkpoint import Snapshot, capture
from nnctl.runs.rundir import atomic_write_bytes, canonical_safetensors


class Checkpointer(Callback):
    """Keeps the training state of the last finished epoch, and writes it to `path`: always for the first
    epoch a training finishes, then at most every `interval` seconds, and whenever training ends (normally,
    on Ctrl-C, on NaN, on an error: call `flush`).

    Taking the state costs a copy of the weights and optimizer slots per epoch; writing costs a file and an
    fsync, hence the interval: a run killed with SIGKILL loses at most `interval` seconds of epochs, and one
    killed after its first epoch always has a checkpoint. `after_write(snapshot)` runs once a state is on
    disk (the event log, which must never claim an epoch the checkpoint lacks). `written` is the state the
    file holds (`on_disk` at first, for a resumed run). It must come after every callback whose state it
    saves, so their epoch-end updates are in.
    """

    def __init__(self, path, history: History, callbacks=(), interval: float = 2.0, on_disk: Snapshot | None = None,
                 after_write=None):
        self.path, self.history, self.callbacks, self.interval = Path(path), history, list(callbacks), interval
        self.after_write = after_write
        self.last: Snapshot | None = None
        self.written: Snapshot | None = on_disk
        self._written_at = 0.0
        self._first = True

    def on_train_begin(self, logs=None):
        self.last = capture(self.model, self.history, self.callbacks)
        self._written_at, self._first = time.monotonic(), True

    def on_epoch_end(self, epoch, logs=None):
        self.last = capture(self.model, self.history, self.callbacks)
        if self._first or time.monotonic() - self._written_at >= self.interval:
            self.flush()

    def flush(self) -> None:
        """Writes the last state taken, unless it is already on disk; a failed write (RunWriteError) leaves
        the file and `written` as they were."""
        if self.last is not None and self.last is not self.written:
            self.last.save(self.path)
            self.written, self._written_at, self._first = self.last, time.monotonic(), False
            if self.after_write is not None:
                self.after_write(self.last)


class ModelCheckpoint(Callback):
    """Saves the model's weights (the `weights.safetensors` layout, loadable by `nnctl evaluate --weights`)
    at the end of epochs, like Keras's ModelCheckpoint.

    `filepath` is formatted with `epoch` (1-based, as Keras) and the epoch's logs, e.g.
    `checkpoints/epoch_{epoch:03d}-{val_loss:.3f}.safetensors`. With `save_best_only`, a file is written only
    when `monitor` improves (default name `checkpoints/best.safetensors`, overwritten each time).
    `every_n_epochs` saves every N-th epoch only. The state needed to resume a run is saved separately and
    always (`checkpoints/last.safetensors`); this callback is for keeping models.

    Example:
        ModelCheckpoint(monitor="val_accuracy", save_best_only=True)
    """

    def __init__(self, filepath=None, monitor="val_loss", verbose=0, save_best_only=False, mode="auto",
                 every_n_epochs=1, initial_value_threshold=None):
        if not isinstance(save_best_only, bool):
            raise ArgumentError(f"`save_best_only` must be true or false, got {show(save_best_only)}.")
        if filepath is None:
            filepath = "checkpoints/best.safetensors" if save_best_only else "checkpoints/epoch_{epoch:03d}.safetensors"
        if not isinstance(filepath, (str, Path)) or not str(filepath):
            raise ArgumentError(f"`filepath` must be a file name, got {show(filepath)}.")
        template_fields(str(filepath))  # only {epoch} and log names, with numeric formats: nothing else reachable
        if not isinstance(monitor, str) or not monitor:
            raise ArgumentError(f"`monitor` must be a log name such as val_loss, got {show(monitor)}.")
        if mode not in ("auto", "min", "max"):
            raise ArgumentError(f"`mode` must be auto, min or max, got {show(mode)}.")
        if isinstance(every_n_epochs, bool) or not isinstance(every_n_epochs, int) or every_n_epochs < 1:
            raise ArgumentError(f"`every_n_epochs` must be a positive integer, got {show(every_n_epochs)}.")
        if initial_value_threshold is not None and (isinstance(initial_value_threshold, bool) or
                                                    not isinstance(initial_value_threshold, (int, float))):
            raise ArgumentError(f"`initial_value_threshold` must be a number, got {show(initial_value_threshold)}.")
        self.filepath, self.monitor, self.verbose = str(filepath), monitor, verbose
        self.save_best_only, self.mode, self.every_n_epochs = save_best_only, mode, every_n_epochs
        self.initial_value_threshold = initial_value_threshold
        self.maximize = mode == "max" or (mode == "auto" and higher_is_better(monitor))
        self.best = self._initial_best()
        self.saved: list[str] = []
        self.run_folder = None  # set by the config's make_callback: every file written must resolve inside it

    def _initial_best(self) -> float:
        if self.initial_value_threshold is not None:
            return float(self.initial_value_threshold)
        return -math.inf if self.maximize else math.inf

    def on_train_begin(self, logs=None):
        if self._starting_fresh():
            self.best, self.saved = self._initial_best(), []

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if (epoch + 1) % self.every_n_epochs:
            return
        current = logs.get(self.monitor)
        if self.save_best_only:
            if current is None or not math.isfinite(current):
                return
            if not (current > self.best if self.maximize else current < self.best):
                return
            self.best = float(current)
        try:
            target = confine(self.run_folder, fill_template(self.filepath, epoch + 1, logs))
        except ValueError as error:
            raise ArgumentError(f"model_checkpoint `filepath` {show(self.filepath)} cannot be formatted with this "
                                f"epoch's logs ({error}); available: epoch, {', '.join(sorted(logs))}") from None
        weights = {name: np.ascontiguousarray(value) for name, value in self.model.get_weights().items()}
        metadata = {"format": "nnctl", "epoch": str(epoch + 1), "monitor": self.monitor,
                    "value": "" if current is None else repr(float(current))}
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, canonical_safetensors(safetensors.numpy.save(weights, metadata=metadata)))
        self.saved.append(str(target))

    def get_state(self) -> dict:
        return {"best": self.best, "saved": list(self.saved)}

    def set_state(self, state: dict, tensors: dict) -> None:
        self.best, self.saved, self._resumed = float(state["best"]), list(state["saved"]), True

    def get_config(self) -> dict:
        return {"filepath": self.filepath, "monitor": self.monitor, "verbose": self.verbose,
                "save_best_only": self.save_best_only, "mode": self.mode, "every_n_epochs": self.every_n_epochs,
                "initial_value_threshold": self.initial_value_threshold}
