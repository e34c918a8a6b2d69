"""Reading a run's safetensors files (weights.safetensors, checkpoints/*.safetensors) and checking them against
the model they are for: every tensor present, of its shape and dtype, finite where that matters.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from pydantic import ConfigDict, Field

from nnctl.runs.records import Closed, Record
from nnctl.runs.untrusted import RunFileError, clip_text, parse_json, read_bytes, show_value, validate

CHECKPOINT_FORMAT = "nnctl-checkpoint-1"
_NAMES_SHOWN = 4


def read_tensors(path, kind: str = "safetensors file") -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(tensors, metadata) of the safetensors file at `path`, or a RunFileError naming what is wrong."""
    import safetensors.numpy

    data = read_bytes(path)
    try:
        tensors = safetensors.numpy.load(data)
    except Exception as error:  # noqa: BLE001 - a parser of untrusted bytes: SafetensorError, KeyError('BF16'), …
        reason = str(error).removeprefix("Error while deserializing: ")
        raise RunFileError(path, f"is a damaged {kind} ({reason[:100]})") from None
    header = parse_json(data[8:8 + int.from_bytes(data[:8], "little")], path)  # well-formed: load accepted it
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    return tensors, metadata if isinstance(metadata, dict) else {}


def _names(names) -> str:
    names = sorted(names)
    shown = ", ".join(f"`{clip_text(name)}`" for name in names[:_NAMES_SHOWN])
    return shown + (f" and {len(names) - _NAMES_SHOWN} more" if len(names) > _NAMES_SHOWN else "")


def check_tensors(path, tensors: dict, expected: dict[str, tuple], dtype, *, prefix: str = "",
                  finite: bool = False, extra_ok: bool = False, whose: str = "the run's model") -> None:
    """Refuses (RunFileError) unless `tensors` holds `prefix + name` for every name of `expected` ({name: shape}),
    of that shape and `dtype`; with `finite`, no NaN or inf either; without `extra_ok`, nothing else under `prefix`."""
    dtype = np.dtype(dtype)
    missing = [name for name in expected if prefix + name not in tensors]
    if missing:
        raise RunFileError(path, f"lacks the tensor(s) {_names(prefix + name for name in missing)} that "
                                 f"{whose} needs")
    for name, shape in expected.items():
        value = tensors[prefix + name]
        if value.dtype != dtype:
            raise RunFileError(path, f"`{prefix}{name}` is {value.dtype}, {whose} needs {dtype}")
        if tuple(value.shape) != tuple(shape):
            raise RunFileError(path, f"`{prefix}{name}` has shape {list(value.shape)}, {whose} needs {list(shape)}")
        if finite and not np.isfinite(value).all():
            raise RunFileError(path, f"`{prefix}{name}` holds non-finite values (NaN or inf)")
    if not extra_ok:
        extra = [key for key in tensors if key.startswith(prefix) and key[len(prefix):] not in expected]
        if extra:
            raise RunFileError(path, f"holds tensor(s) {_names(extra)} that {whose} does not have")


def model_shapes(model) -> dict[str, tuple]:
    """{parameter name: shape} of a built model, in the weights files' naming."""
    return {param.name: tuple(param.shape) for param in model.store.weights}


def nonfinite_tensors(tensors: dict) -> list[str]:
    """The names of the floating tensors holding NaN or inf."""
    return [name for name, value in tensors.items() if value.dtype.kind == "f" and not np.isfinite(value).all()]


def read_weights(path, model, prefix: str = "") -> dict[str, np.ndarray]:
    """The model's weights from a weights.safetensors-layout file (or, with `prefix` "weights/", a
    checkpoint's), checked against `model`; NaN is allowed (a diverged run's weights are still its weights)."""
    tensors, _ = read_tensors(path)
    check_tensors(path, tensors, model_shapes(model), model.dtype, prefix=prefix, extra_ok=bool(prefix))
    return {name: tensors[prefix + name] for name in model_shapes(model)}


# ---- checkpoints ---------------------------------------------------------------------------------------------
class CallbackEntry(Closed):
    type: str
    state: dict


class CheckpointState(Record):
    """The `state` metadata of a checkpoint (nnctl/nn/checkpoint.py's `capture`)."""

    model_config = ConfigDict(allow_inf_nan=True)  # a history may hold the NaN loss that stopped the run

    epochs_done: int = Field(ge=0, lt=2**63)
    iterations: int = Field(ge=0, lt=2**63)  # the kernels count steps in int64
    learning_rate: float = Field(gt=0, allow_inf_nan=False)
    rng: dict
    history: dict[str, list[Optional[float]]]
    epoch_indices: list[int]
    callbacks: list[CallbackEntry]
    time: Optional[float] = None


def read_checkpoint(path) -> tuple[dict[str, np.ndarray], dict]:
    """(tensors, state) of the checkpoint at `path`, its state checked; tensors are checked by `check_checkpoint`
    once the model is built."""
    tensors, metadata = read_tensors(path, "checkpoint")
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise RunFileError(path, f"is not an nnctl checkpoint (format {show_value(metadata.get('format'))}, expected "
                                 f"{CHECKPOINT_FORMAT!r})")
    if "state" not in metadata:
        raise RunFileError(path, "has no `state` in its metadata")
    # NaN reads as a float here, not null: a restored history must hold what the run computed.
    state = parse_json(metadata["state"], f"{path} (metadata `state`)", nan_as_null=False)
    validate(CheckpointState, state, f"{path} (metadata `state`)")
    done = state["epochs_done"]
    if len(state["epoch_indices"]) != done:
        raise RunFileError(path, f"metadata `state`: {len(state['epoch_indices'])} epoch index(es) for "
                                 f"{done} epoch(s) done")
    uneven = [key for key, values in state["history"].items() if len(values) != done]
    if uneven:
        raise RunFileError(path, f"metadata `state`: `history.{clip_text(uneven[0])}` has "
                                 f"{len(state['history'][uneven[0]])} value(s) for {done} epoch(s) done")
    try:
        np.random.default_rng(0).bit_generator.state = state["rng"]
    except (TypeError, ValueError, KeyError, OverflowError, AttributeError):
        raise RunFileError(path, "metadata `state`: `rng` is not a state of the run's random generator "
                                 "(PCG64)") from None
    return tensors, state


def check_checkpoint(path, tensors: dict, model) -> None:
    """Refuses a checkpoint whose weights or optimizer slots do not fit `model`, or hold NaN or inf (resuming
    from them could only continue a diverged run)."""
    shapes = model_shapes(model)
    check_tensors(path, tensors, shapes, model.dtype, prefix="weights/", finite=True, extra_ok=True)
    slots = {f"slot_{i}": tuple(slot.shape) for i, slot in enumerate(model.optimizer.slots)}
    check_tensors(path, tensors, slots, model.optimizer.slots[0].dtype if slots else np.float32,
                  prefix="optimizer/", finite=True, whose="the run's optimizer")
    for key, value in tensors.items():  # callbacks' saved weights (EarlyStopping's best) are the model's too
        name = key.split("/best_weights/", 1)[-1]
        if key.startswith("callbacks/") and "/best_weights/" in key and (
                name not in shapes or tuple(value.shape) != shapes[name] or value.dtype != model.dtype):
            raise RunFileError(path, f"`{clip_text(key)}` does not fit the run's model")
    known = ("weights/", "optimizer/", "callbacks/")
    stray = [key for key in tensors if not key.startswith(known)]
    if stray:
        raise RunFileError(path, f"holds tensor(s) {_names(stray)} that no checkpoint has")
