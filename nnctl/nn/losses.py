"""Losses (Keras names and semantics) on top of the engine's fused loss kernel.

A loss decides whether it can take the last layer's logits (sigmoid+BCE, softmax+CCE: stable and
cheaper) or must work on the outputs, and turns user targets into the arrays the kernel reads.
"""

from __future__ import annotations

import re

import numpy as np

from nnctl.engine.cpu.losses import LOSS_CODES
from nnctl.errors import ArgumentError, ShapeError
from nnctl.registry import Registry

_NO_LABELS = np.zeros(1, dtype=np.int64)
_NO_TARGET = np.zeros((1, 1), dtype=np.float32)


class Loss:
    """Override `codes` (kernel code when fused with the output activation, and otherwise) and, for
    integer targets, `sparse = True`. `from_logits=True` means the model outputs raw logits.

    A user's loss (a plugin) overrides `call(y_true, y_pred)` instead, written with `nnctl.ops` and returning
    one value per sample (or per sample and unit: averaged per sample); its gradient comes from the ops tape.
    The batch's loss is Keras's: the mean over samples of sample weight × value.
    """

    name = "loss"
    fuses_with: str | None = None  # the output activation this loss can absorb
    logits_code: str | None = None
    probs_code: str = ""
    sparse = False

    def __init__(self, from_logits: bool = False, **kwargs):
        if not isinstance(from_logits, bool):
            raise ArgumentError(f"`from_logits` must be true or false, got {from_logits!r}.")
        if from_logits and self.logits_code is None:
            raise ArgumentError(f"`from_logits` is not an argument of {self.name}.")
        self.from_logits = from_logits
        self.delta = 1.0

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "call" in cls.__dict__ and "name" not in cls.__dict__:  # FocalLoss → focal_loss, as Keras names it
            cls.name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", cls.__name__).lower()

    @property
    def custom(self) -> bool:
        """Whether this loss is written with `call` (on nnctl.ops) rather than a kernel code."""
        return type(self).call is not Loss.call

    def call(self, y_true, y_pred):
        """A user's loss: per-sample values from nnctl.ops tensors (see the class docstring)."""
        raise NotImplementedError

    def compute(self, backend, code: int, pred, target, labels, weights, grad) -> float:
        """The weighted mean loss over `pred`'s rows; fills `grad` with its gradient w.r.t. `pred`."""
        if not self.custom:
            return backend.loss_forward_backward(code, self.delta, pred, target, labels, weights, grad)
        total, gradient = self.tape_loss(pred, target, weights)
        grad[...] = gradient
        return float(total)

    def tape_loss(self, pred, target, weights):
        """(the weighted mean of a user's loss over `pred`'s rows, its gradient w.r.t. `pred`) by the ops tape:
        NumPy arrays, or GPU arrays (nnctl/engine/cuda/ndarray.py) on which the same ops run on the device."""
        from nnctl import ops

        rows = len(pred)
        with ops.GradientTape() as tape:
            outputs = ops.Tensor(pred)
            values = self.call(ops.Tensor(target.astype(pred.dtype, copy=False)), outputs)
            if not isinstance(values, ops.Tensor):
                values = ops.Tensor(values)
        per = values.value.astype(np.float64)
        if per.ndim == 0 or per.shape[0] != rows:
            raise ShapeError(f"loss '{self.name}'.call must return one value per sample ({rows}), got shape "
                             f"{per.shape}")
        width = int(np.prod(per.shape[1:]))
        scale = (weights.astype(np.float64) / (rows * width)).reshape((rows,) + (1,) * (per.ndim - 1))
        return np.sum(per * scale), tape.gradient(values, outputs, output_gradient=np.broadcast_to(scale, per.shape))

    def plan(self, output_activation: str | None) -> tuple[int, bool]:
        """(kernel code, fused): fused means the kernel reads pre-activations and returns ∂/∂logits."""
        if self.custom:
            return -1, False
        if self.logits_code is not None:
            if self.from_logits and output_activation in ("linear", None):
                return LOSS_CODES[self.logits_code], True
            if not self.from_logits and output_activation == self.fuses_with:
                return LOSS_CODES[self.logits_code], True
        return LOSS_CODES[self.probs_code], False

    def prepare_targets(self, y, units: int) -> tuple[np.ndarray, np.ndarray]:
        """(float targets (n, units), int labels (n,)) for the kernel; one of them is a placeholder."""
        y = np.asarray(y)
        if self.sparse:
            if y.ndim == 2 and y.shape[1] == units and units > 1:
                raise ShapeError(f"{self.name} expects integer class ids, got one-hot targets of shape "
                                 f"{y.shape}; use categorical_crossentropy for one-hot targets")
            labels = y.reshape(len(y), -1)
            if labels.shape[1] != 1:
                raise ShapeError(f"{self.name} expects one class id per sample, got targets of shape {y.shape}")
            if not np.all(np.equal(np.mod(labels, 1), 0)):
                raise ShapeError(f"{self.name} expects integer class ids, got non-integer values")
            labels = labels[:, 0].astype(np.int64)
            if len(labels) and (labels.min() < 0 or labels.max() >= units):
                raise ShapeError(f"class ids must lie in [0, {units - 1}] for a {units}-unit output, "
                                 f"got values in [{labels.min()}, {labels.max()}]")
            return _NO_TARGET, labels
        target = y.astype(np.float32).reshape(len(y), -1)
        if target.shape[1] != units:
            hint = ""
            if self.name == "categorical_crossentropy" and target.shape[1] == 1:
                hint = "; for integer class ids use sparse_categorical_crossentropy"
            raise ShapeError(f"{self.name} needs targets with {units} values per sample (the output layer's "
                             f"units), got shape {y.shape}{hint}")
        return np.ascontiguousarray(target), _NO_LABELS

    def get_config(self) -> dict:
        return {"from_logits": self.from_logits} if self.logits_code else {}


class BinaryCrossentropy(Loss):
    name, fuses_with, logits_code, probs_code = "binary_crossentropy", "sigmoid", "bce_logits", "bce_probs"


class CategoricalCrossentropy(Loss):
    name, fuses_with, logits_code, probs_code = "categorical_crossentropy", "softmax", "cce_logits", "cce_probs"


class SparseCategoricalCrossentropy(Loss):
    name, fuses_with = "sparse_categorical_crossentropy", "softmax"
    logits_code, probs_code, sparse = "sparse_cce_logits", "sparse_cce_probs", True


class MeanSquaredError(Loss):
    name, probs_code = "mean_squared_error", "mse"


class MeanAbsoluteError(Loss):
    name, probs_code = "mean_absolute_error", "mae"


class LogCosh(Loss):
    name, probs_code = "log_cosh", "log_cosh"


class KLDivergence(Loss):
    name, probs_code = "kl_divergence", "kld"


class CosineSimilarity(Loss):
    name, probs_code = "cosine_similarity", "cosine"


class Huber(Loss):
    name, probs_code = "huber", "huber"

    def __init__(self, delta: float = 1.0):
        super().__init__()
        if isinstance(delta, bool) or not isinstance(delta, (int, float)) or delta <= 0:
            raise ArgumentError(f"`delta` must be a positive number, got {delta!r}.")
        self.delta = float(delta)

    def get_config(self):
        return {"delta": self.delta}


LOSSES = Registry(
    "loss",
    entries={loss.name: loss for loss in (
        BinaryCrossentropy, CategoricalCrossentropy, SparseCategoricalCrossentropy, MeanSquaredError,
        MeanAbsoluteError, Huber, LogCosh, KLDivergence, CosineSimilarity)},
    aliases={"bce": "binary_crossentropy", "cce": "categorical_crossentropy",
             "scce": "sparse_categorical_crossentropy", "mse": "mean_squared_error",
             "mae": "mean_absolute_error", "kld": "kl_divergence", "kullback_leibler_divergence": "kl_divergence",
             "logcosh": "log_cosh", "huber_loss": "huber"},
    base=Loss,
)
