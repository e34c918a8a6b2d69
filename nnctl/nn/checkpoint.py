"""Training checkpoints: everything `fit` needs to continue a run exactly where it stopped.
(The callbacks that take them, Checkpointer and ModelCheckpoint, are in nnctl.nn.callbacks.checkpoint.)

A checkpoint is one safetensors file, written atomically:
- tensors `weights/<param>` (e.g. `weights/dense/kernel`), `optimizer/slot_<i>`, and `callbacks/<i>/<name>` for
  the callbacks that keep arrays (EarlyStopping's best weights);
- metadata `format` and `state`: JSON with the epochs done, the optimizer's step count and learning rate,
  the generator's state, the history so far and every callback's state.

Checkpoints are taken at epoch boundaries only, so a resumed run replays the very steps the uninterrupted
run would have taken: same shuffles, same dropout masks, same bytes.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import safetensors.numpy

from nnctl.errors import NnctlError
from nnctl.runs.rundir import atomic_write_bytes, canonical_safetensors

FORMAT = "nnctl-checkpoint-1"


@dataclass
class Snapshot:
    """A model's training state at an epoch boundary: the arrays (copies) and the JSON-able rest."""

    tensors: dict[str, np.ndarray]
    state: dict
    path: Path | None = None  # where it was read from, for messages

    @property
    def epochs_done(self) -> int:
        return int(self.state["epochs_done"])

    def to_bytes(self) -> bytes:
        metadata = {"format": FORMAT, "state": json.dumps(self.state, sort_keys=True)}
        tensors = {key: np.ascontiguousarray(value) for key, value in self.tensors.items()}
        return canonical_safetensors(safetensors.numpy.save(tensors, metadata=metadata))

    def save(self, path) -> Path:
        """Writes the checkpoint atomically: `path` holds the previous checkpoint or this one, never a part."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, self.to_bytes())
        return path

    def weights(self) -> dict[str, np.ndarray]:
        return {key[len("weights/"):]: value for key, value in self.tensors.items() if key.startswith("weights/")}


def capture(model, history, callbacks=()) -> Snapshot:
    """The state of `model` (weights, optimizer, generator), `history` and `callbacks` right now."""
    opt = model.optimizer
    tensors = {f"weights/{p.name}": p.value.copy() for p in model.store.weights}
    tensors.update({f"optimizer/slot_{i}": slot.copy() for i, slot in enumerate(opt.slots)})
    states = []
    for index, callback in enumerate(callbacks):
        tensors.update({f"callbacks/{index}/{name}": np.array(value, copy=True)
                        for name, value in callback.get_tensors().items()})
        states.append({"type": type(callback).__name__, "state": callback.get_state()})
    state = {"epochs_done": len(history.epoch), "iterations": int(opt.iterations),
             "learning_rate": float(opt.learning_rate), "rng": model.rng.bit_generator.state,
             "history": {key: list(values) for key, values in history.history.items()},
             "epoch_indices": list(history.epoch), "callbacks": states, "time": time.time()}
    return Snapshot(tensors, state)


def load(path) -> Snapshot:
    """The checkpoint at `path`; a RunFileError naming the file when it is missing, torn, not a checkpoint, or
    its state has wrong types or missing keys (nnctl.runs.tensorfiles checks it)."""
    from nnctl.runs.tensorfiles import read_checkpoint

    tensors, state = read_checkpoint(path)
    return Snapshot(tensors, state, Path(path))


def verify(snapshot: Snapshot, model, callbacks=()) -> None:
    """Refuses (NnctlError naming the file) a checkpoint that does not fit `model` and `callbacks`: weights or
    optimizer slots missing, of another shape or dtype, non-finite; callbacks of other kinds or unreadable
    state. The callbacks read their state, so pass fresh ones when nothing may change yet."""
    from nnctl.runs.tensorfiles import check_checkpoint

    saved = snapshot.state["callbacks"]
    source = snapshot.path or "the checkpoint"
    kinds = [type(cb).__name__ for cb in callbacks]
    if kinds != [entry["type"] for entry in saved]:
        raise NnctlError(f"{source}: taken with callbacks {[e['type'] for e in saved]}, this run has {kinds}")
    check_checkpoint(source, snapshot.tensors, model)
    for index, (callback, entry) in enumerate(zip(callbacks, saved)):
        prefix = f"callbacks/{index}/"
        try:
            callback.set_state(entry["state"], {key[len(prefix):]: value for key, value in snapshot.tensors.items()
                                                if key.startswith(prefix)})
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as error:
            raise NnctlError(f"{source}: metadata `state`: `callbacks[{index}].state` ({entry['type']}) is "
                             f"damaged ({type(error).__name__}: {str(error)[:80]})") from None


def restore(model, snapshot: Snapshot, history, callbacks=()) -> None:
    """Puts `snapshot` back into `model`, `history` and `callbacks` (which must match those captured); one
    that does not fit them is an NnctlError naming its file (see `verify`), raised before the model changes."""
    state = snapshot.state
    verify(snapshot, model, callbacks)  # also hands each callback its state
    model.set_weights(snapshot.weights())
    opt = model.optimizer
    for i, slot in enumerate(opt.slots):
        slot[...] = snapshot.tensors[f"optimizer/slot_{i}"]
    opt.iterations = int(state["iterations"])
    opt.reset_row_clocks()  # checkpoints are taken after a flush: every row's slot is current
    opt.learning_rate = float(state["learning_rate"])
    model.rng.bit_generator.state = state["rng"]  # in place: the layers share this generator
    history.history = {key: list(values) for key, values in state["history"].items()}
    history.epoch = list(state["epoch_indices"])
