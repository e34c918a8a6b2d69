"""The callbacks a training session puts around the user's: the event log, Ctrl-C, and the rewind on a stop.

Also the one-line messages for a run that fails (a non-finite loss or weights, a file-system error).
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from datetime import datetime, timezone

from nnctl.errors import NnctlError
from nnctl.nn.callbacks import Callback, Checkpointer
from nnctl.runs.rundir import RunDirectory, describe_os_error


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class EventLog(Callback):
    """Appends one JSON line per finished epoch to the run's events.jsonl, once the checkpoint that holds
    the epoch is on disk (the Checkpointer calls `write_through`): the log never claims an epoch that a
    resume could not continue from. Costs a list append per epoch; the lines go out in one write."""

    def __init__(self, run: RunDirectory):
        self.run, self.pending = run, []

    def on_epoch_end(self, epoch, logs=None):
        self.pending.append({"epoch": epoch + 1, "time": now(), **(logs or {})})

    def write_through(self, snapshot) -> None:
        """Writes the events of the epochs `snapshot` (just saved) holds."""
        done = snapshot.epochs_done
        ready = [event for event in self.pending if event["epoch"] <= done]
        self.pending = [event for event in self.pending if event["epoch"] > done]
        self.run.append_events(ready)


class InterruptHandler(Callback):
    """First Ctrl-C: stop after the current step and keep everything. A second one: stop at once."""

    requested = False
    needs_batch_logs = False

    def on_train_begin(self, logs=None):
        if self.requested:  # Ctrl-C came before fit had handed us the model
            self.model.stop_training = True

    def on_train_batch_end(self, batch, logs=None):
        """Overridden only so that fit runs in short chunks and a stop request is seen within ~0.1 s."""

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if self.model is not None:
            self.model.stop_training = True

    @contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield self  # signals reach only the main thread; CliRunner tests may run elsewhere
            return
        previous = signal.signal(signal.SIGINT, self._handle)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)


class RewindOnStop(Callback):
    """When training stops mid-epoch (Ctrl-C, a NaN loss or weights), puts back the weights of the last
    finished epoch, so the saved weights always match the saved history. Comes before the user's callbacks,
    so that EarlyStopping's `restore_best_weights` still has the last word."""

    def __init__(self, checkpointer: Checkpointer):
        self.checkpointer = checkpointer

    def on_train_end(self, logs=None):
        if self.model.stopped_mid_epoch is not None and self.checkpointer.last is not None:
            self.model.set_weights(self.checkpointer.last.weights())


def nonfinite_message(found: dict) -> str:
    """Why a run stopped at a NaN: the loss of a step, or (the loss staying finite, as ReLU makes it) the
    weights at the end of an epoch."""
    done = found["epoch"] - 1
    kept = f"the weights and checkpoint kept are those of epoch {done}" if done else "the weights kept are the initial ones"
    if found.get("weights"):
        return (f"the weights became non-finite ({found['value']} in {found['weights']}) at the end of epoch "
                f"{found['epoch']}, though the loss was finite; {kept}")
    return f"the loss became {found['loss']} at epoch {found['epoch']}, step {found['step']} of {found['steps']}; {kept}"


def failure_message(error: BaseException) -> str:
    """One line for an error that ended training: a file-system error names the path and the cause."""
    if isinstance(error, OSError):
        return str(describe_os_error(error))
    return str(error) if isinstance(error, NnctlError) else f"{type(error).__name__}: {error}"


def kept_checkpoint_note(run: RunDirectory, saved, resumable: bool = True) -> str:
    """After a write failed: what is on disk to continue from (a K-fold fold cannot be resumed)."""
    if saved is None:
        return "no checkpoint was written, so nothing of this training is kept"
    kept = f"checkpoints/last.safetensors is whole and holds epoch {saved.epochs_done}"
    return f"{kept}: make room, then continue with nnctl train --resume {run.path}" if resumable else kept
