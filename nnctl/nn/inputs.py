"""What a model reads: inputs cast to the first layer's dtype, and a `Dataset` of inputs and prepared targets.

Float layers take the model's float type; id-taking layers (Embedding) take int32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnctl.engine.csr import CSRMatrix
from nnctl.errors import ShapeError


@dataclass
class Dataset:
    """Inputs and targets in the forms the kernels read (see `Loss.prepare_targets`)."""

    x: np.ndarray | CSRMatrix
    target: np.ndarray
    labels: np.ndarray
    weight: np.ndarray
    y: np.ndarray  # as the user gave it, for metrics

    def __len__(self):
        return self.x.shape[0]  # samples (y has one row per output row: samples × steps)


def cast_inputs(x: np.ndarray, first_layer, float_dtype) -> np.ndarray:
    """x as a contiguous array in `first_layer.input_dtype` (None: `float_dtype`); integer ids are refused,
    rather than truncated, when they hold fractions or leave int32's range."""
    wanted = getattr(first_layer, "input_dtype", None)
    if wanted is None:
        return np.ascontiguousarray(x, dtype=float_dtype)
    name = first_layer.name or first_layer.type_name
    if x.dtype.kind == "f" and x.size and not (np.isfinite(x).all() and (x == np.round(x)).all()):
        raise ShapeError(f"layer '{name}' takes integer ids, the inputs hold fractions or non-finite values")
    if not x.size or x.dtype.kind not in "fiu":
        return np.ascontiguousarray(x, dtype=wanted)
    low, high = x.min(), x.max()  # one pass each, shared by both checks
    if low < np.iinfo(wanted).min or high > np.iinfo(wanted).max:
        raise ShapeError(f"layer '{name}' takes {np.dtype(wanted).name} ids, the inputs hold values up to {high}")
    vocabulary = getattr(first_layer, "input_dim", None)
    if vocabulary is not None and (low < 0 or high >= vocabulary):
        # Found now, before any training (the layer checks each batch too): validation data included.
        raise ShapeError(f"layer '{name}' got token id {int(high if high >= vocabulary else low)}, outside its "
                         f"vocabulary [0, {vocabulary}): raise `input_dim` or cap the ids (num_words)")
    return np.ascontiguousarray(x, dtype=wanted)


def target_rows(y: np.ndarray, output_shape: tuple) -> np.ndarray:
    """y with one row per output row: (n·steps, ...) for an N-d output (steps, ..., units), y itself for a
    flat one. Keras averages a sequence output's loss and metrics over its steps; so do these rows."""
    lead = tuple(output_shape[:-1])
    if not lead or int(np.prod(lead)) == 1:
        return y
    if tuple(y.shape[1:1 + len(lead)]) != lead:
        raise ShapeError(f"the model's output has shape {tuple(output_shape)} per sample, so its targets need "
                         f"shape {lead + (output_shape[-1],)} (or {lead} of class ids), got {tuple(y.shape[1:])}")
    return y.reshape((len(y) * int(np.prod(lead)),) + y.shape[1 + len(lead):])


def step_rows(steps: int, samples: np.ndarray) -> np.ndarray:
    """The output rows of `samples`: themselves, or each sample's `steps` consecutive rows."""
    if steps == 1:
        return samples
    return (samples[:, None] * steps + np.arange(steps)).reshape(-1)


def masked_weights(weight: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Per-row loss weights under an output mask ((samples, steps), False on padding), as Keras 3 applies
    one: padded steps weigh 0 and real ones total/real, so the loss is the mean over the real steps."""
    if mask is None:
        return weight
    keep = mask.reshape(-1).astype(weight.dtype)
    return weight * keep * (keep.size / max(float(keep.sum()), 1e-7))
