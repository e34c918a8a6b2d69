"""Streaming metrics: the `Metric` contract, the per-sample `Mean` family (accuracies, MAE, MSE, RMSE).

Confusion-count metrics (precision, recall, AUC) live in `confusion.py`; the registry in `__init__`.
"""

from __future__ import annotations

import inspect

import numpy as np

from nnctl.errors import ArgumentError, ShapeError, check_float_range, check_positive_int


class Metric:
    """A running statistic over batches: `update` once per batch, `result` at the end of an epoch.

    Subclasses set `default_name` and override `update_state(y_true, y_pred, sample_weight)`, `result()`
    and `reset()`; `update` has already made the inputs arrays and `sample_weight` None or a float64 (n,).
    Every `__init__` argument must be kept as an attribute of the same name: `get_config` reads them back.
    A weighted mean of one score per sample is simpler: subclass `Mean` and override `scores` only.

        class MaxError(Metric):
            default_name = "max_error"
            def reset(self):
                self.worst = 0.0
            def update_state(self, y_true, y_pred, sample_weight):
                self.worst = max(self.worst, float(np.abs(y_true - y_pred).max()))
            def result(self):
                return self.worst
    """

    default_name = "metric"

    def __init__(self, name: str | None = None):
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise ArgumentError(f"`name` must be a non-empty string, got {name!r}.")
        self.name = self.default_name if name is None else name
        self.reset()

    def update(self, y_true, y_pred, sample_weight=None) -> None:
        """Fold one batch in. y_pred: (n, units) or (n,); y_true: see each metric; sample_weight: (n,)."""
        y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
        if y_pred.ndim == 0 or y_true.ndim == 0 or len(y_true) != len(y_pred):
            raise ShapeError(f"metric '{self.name}': labels of shape {y_true.shape} and predictions of shape "
                             f"{y_pred.shape} must hold the same number of samples.")
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
            if sample_weight.size not in (1, len(y_pred)):
                raise ShapeError(f"metric '{self.name}': `sample_weight` needs one weight per sample "
                                 f"({len(y_pred)}), got {sample_weight.size}.")
            sample_weight = np.broadcast_to(sample_weight, (len(y_pred),))
        self.update_state(y_true, y_pred, sample_weight)

    def update_state(self, y_true: np.ndarray, y_pred: np.ndarray, sample_weight: np.ndarray | None) -> None:
        raise NotImplementedError

    def result(self) -> float:
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError

    def get_config(self) -> dict:
        """Exactly the `__init__` arguments, so `type(m)(**m.get_config())` rebuilds the metric."""
        return {key: getattr(self, key) for key in inspect.signature(type(self)).parameters}


def _mean_per_sample(values: np.ndarray) -> np.ndarray:
    """values: (n, ...) → (n,) mean over everything but the sample axis (Keras averages `axis=-1`)."""
    return values if values.ndim == 1 else values.reshape(len(values), -1).mean(axis=1)


def _labels_shaped_like(y_true: np.ndarray, y_pred: np.ndarray, metric_name: str) -> np.ndarray:
    """y_true viewed with y_pred's shape: binary and regression labels come as (n,) or (n, 1) alike."""
    if y_true.shape == y_pred.shape:
        return y_true
    if y_true.size == y_pred.size:
        return y_true.reshape(y_pred.shape)
    raise ShapeError(f"metric '{metric_name}': labels of shape {y_true.shape} do not match predictions of "
                     f"shape {y_pred.shape}.")


def _sparse_labels(y_true: np.ndarray, y_pred: np.ndarray, metric_name: str) -> np.ndarray:
    """Integer class ids (n,) from labels of shape (n,) or (n, 1), against class scores (n, C)."""
    if y_pred.ndim != 2 or y_true.size != len(y_pred):
        raise ShapeError(f"metric '{metric_name}' expects one class id per sample and scores of shape (n, C), "
                         f"got labels {y_true.shape} and predictions {y_pred.shape}.")
    return y_true.reshape(len(y_pred)).astype(np.intp, copy=False)


def _in_top_k(targets: np.ndarray, y_pred: np.ndarray, k: int, metric_name: str) -> np.ndarray:
    """(n,) bool: is the target's score among the k largest? Ties at the k-th score count as hits (Keras)."""
    num_classes = y_pred.shape[1]
    if len(targets) and (targets.min() < 0 or targets.max() >= num_classes):
        raise ShapeError(f"metric '{metric_name}': class ids must lie in [0, {num_classes}), "
                         f"got {targets.min()}..{targets.max()}.")
    if k >= num_classes:
        return np.ones(len(targets), dtype=bool)
    kth_largest = np.partition(y_pred, num_classes - k, axis=1)[:, num_classes - k]
    return np.take_along_axis(y_pred, targets[:, None], axis=1)[:, 0] >= kth_largest


class Mean(Metric):
    """Weighted running mean: the trainer's loss tracker, and the base of every per-sample metric.

    Plain values go through `add`: `loss = Mean(name="loss"); loss.add(batch_loss, sample_weight=batch_size)`.
    A per-sample metric overrides only `scores(y_true, y_pred) -> (n,)`; `update` averages them like Keras.
    """

    default_name = "mean"

    def reset(self) -> None:
        self.total, self.count = 0.0, 0.0

    def add(self, values, sample_weight=None) -> None:
        """Fold in values (any shape) with weights broadcastable to them; Σ wᵢ·vᵢ and Σ wᵢ accumulate."""
        values = np.asarray(values).reshape(-1)
        if sample_weight is None:
            self.total += float(values.sum())
            self.count += values.size
        else:
            weights = np.broadcast_to(np.asarray(sample_weight, dtype=np.float64).reshape(-1), values.shape)
            self.total += float(np.dot(values, weights))
            self.count += float(weights.sum())

    def scores(self, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} tracks plain values: call `add`, not `update`.")

    def update_state(self, y_true, y_pred, sample_weight) -> None:
        self.add(self.scores(y_true, y_pred), sample_weight)

    def result(self) -> float:
        return self.total / self.count if self.count else 0.0


class BinaryAccuracy(Mean):
    """Share of outputs where (y_pred > threshold) equals the 0/1 label; multi-label rows are averaged."""

    default_name = "binary_accuracy"

    def __init__(self, threshold: float = 0.5, name: str | None = None):
        self.threshold = check_float_range("threshold", threshold, 0.0, 1.0)
        super().__init__(name)

    def scores(self, y_true, y_pred):
        y_true = _labels_shaped_like(y_true, y_pred, self.name)
        return _mean_per_sample(np.equal(y_true, y_pred > self.threshold))


class CategoricalAccuracy(Mean):
    """Share of samples whose highest score is at the one-hot label's position."""

    default_name = "categorical_accuracy"

    def scores(self, y_true, y_pred):
        y_true = _labels_shaped_like(y_true, y_pred, self.name)
        return np.argmax(y_true, axis=-1) == np.argmax(y_pred, axis=-1)


class SparseCategoricalAccuracy(Mean):
    """Share of samples whose highest score is at the integer label."""

    default_name = "sparse_categorical_accuracy"

    def scores(self, y_true, y_pred):
        return _sparse_labels(y_true, y_pred, self.name) == np.argmax(y_pred, axis=-1)


class TopKCategoricalAccuracy(Mean):
    """Share of samples whose one-hot label is among the k highest scores."""

    default_name = "top_k_categorical_accuracy"

    def __init__(self, k: int = 5, name: str | None = None):
        self.k = check_positive_int("k", k)
        super().__init__(name)

    def scores(self, y_true, y_pred):
        y_true = _labels_shaped_like(y_true, y_pred, self.name)
        return _in_top_k(np.argmax(y_true, axis=-1), y_pred, self.k, self.name)


class SparseTopKCategoricalAccuracy(TopKCategoricalAccuracy):
    """Share of samples whose integer label is among the k highest scores."""

    default_name = "sparse_top_k_categorical_accuracy"

    def scores(self, y_true, y_pred):
        return _in_top_k(_sparse_labels(y_true, y_pred, self.name), y_pred, self.k, self.name)


class MeanAbsoluteError(Mean):
    default_name = "mean_absolute_error"

    def scores(self, y_true, y_pred):
        return _mean_per_sample(np.abs(y_pred - _labels_shaped_like(y_true, y_pred, self.name)))


class MeanSquaredError(Mean):
    default_name = "mean_squared_error"

    def scores(self, y_true, y_pred):
        return _mean_per_sample(np.square(y_pred - _labels_shaped_like(y_true, y_pred, self.name)))


class RootMeanSquaredError(MeanSquaredError):
    """√(weighted mean squared error) over everything seen, not a mean of per-batch roots."""

    default_name = "root_mean_squared_error"

    def result(self) -> float:
        return float(np.sqrt(super().result()))
