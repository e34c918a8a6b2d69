"""What a model reads: inputs cast to the first layer's dtype, and a `Dataset` of inputs and prepared targets.

Float layers take the model's float type; id-taking layers (Embedding) take int32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnctl.engine import settings
from nnctl.engine.csr import CSRMatrix, mostly_zero
from nnctl.errors import ShapeError
from nnctl.named import NamedArrays


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


def split_off(x, y, sample_weight, fraction):
    """(x, y, sample_weight) for training and (x, y[, sample_weight]) for validation: Keras's
    `validation_split`, the last `fraction` of the rows as given (before any shuffling)."""
    if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) or not 0 < fraction < 1:
        raise ShapeError(f"`validation_split` must be a fraction between 0 and 1, got {fraction!r}")
    n = x.shape[0] if hasattr(x, "shape") else len(x)
    keep = int(n * (1 - fraction))
    if keep == 0 or keep == n:
        raise ShapeError(f"`validation_split` {fraction} of {n} samples leaves no rows to train or to validate")
    first, rest = np.arange(keep), np.arange(keep, n)

    def rows(a, which):
        if isinstance(a, dict):  # a multi-output model's sample weights, by output name
            a = NamedArrays(a, "sample weights")
        return a.take(which) if isinstance(a, (CSRMatrix, NamedArrays)) else np.asarray(a)[which]

    weight = sample_weight
    validation = (rows(x, rest), rows(y, rest)) + (() if weight is None else (rows(weight, rest),))
    return rows(x, first), rows(y, first), None if weight is None else rows(weight, first), validation


class ModelInputs:
    """The models' data preparation: inputs checked and cast (or made CSR), targets and weights per output row."""

    def _inputs(self, x):
        """x as a contiguous array of the model's dtype or a CSRMatrix, checked against the input shape."""
        if not isinstance(x, (np.ndarray, CSRMatrix)):
            x = CSRMatrix.coerce(x) if hasattr(x, "indptr") else np.asarray(x)
        if isinstance(x, np.ndarray):
            x = cast_inputs(x, self.layers[0] if self.layers else None, self.dtype)
        self._ready(x)
        if tuple(x.shape[1:]) != self.input_shape:
            raise ShapeError(f"the model expects inputs of shape {self.input_shape} per sample, "
                             f"the data has {tuple(x.shape[1:])}")
        # Mostly-zero input runs as CSR: the first Dense layer skips the zeros, the sums are otherwise the same.
        if (isinstance(x, np.ndarray) and self.dtype == np.float32 and self._dense_reads_input()
                and mostly_zero(x, settings.SPARSE_INPUT_DENSITY)):
            return CSRMatrix.from_dense(x)
        return x

    def _dataset(self, x, y, sample_weight=None, class_weight=None) -> Dataset:
        x = self._inputs(x)
        y = np.asarray(y)
        if len(y) != x.shape[0]:
            raise ShapeError(f"x has {x.shape[0]} samples but y has {len(y)}")
        target, labels = self.prepare_targets(y)
        weight = np.ones(len(y), self.dtype)
        if sample_weight is not None:
            weight = np.asarray(sample_weight, self.dtype).reshape(-1)
            if len(weight) != len(y):
                raise ShapeError(f"sample_weight has {len(weight)} entries for {len(y)} samples")
        weight, y = np.repeat(weight, self.steps), target_rows(y, self.output_shape)
        if class_weight:
            classes = labels if self.loss.sparse else (
                np.argmax(target, axis=1) if target.shape[1] > 1 else np.round(target[:, 0]).astype(np.int64))
            weight = weight * np.array([float(class_weight.get(int(c), 1.0)) for c in range(int(classes.max()) + 1)],
                                       self.dtype)[classes]
        return Dataset(x, target.astype(self.dtype, copy=False), labels, np.ascontiguousarray(weight), y)

    def prepare_targets(self, y) -> tuple[np.ndarray, np.ndarray]:
        """The loss's (targets, labels) for y, one row per output row (see `inputs.target_rows`)."""
        return self.loss.prepare_targets(target_rows(np.asarray(y), self.output_shape), self.units)
