"""Streaming metrics with Keras names and semantics: accuracies, regression errors, precision/recall, AUC.

Owns the metric name table and `resolve_metric`, which picks Keras's flavour of "accuracy" from the loss.
"""

from __future__ import annotations

import inspect

import numpy as np

from nnctl.errors import ArgumentError, ShapeError, check_float_range, check_positive_int, did_you_mean
from nnctl.registry import Registry, normalize


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


class ConfusionCounts(Metric):
    """Weighted true-positive, false-positive and false-negative counts at one threshold (Keras semantics).

    `thresholds`: one float in [0, 1]; None means 0.5, or with `top_k` "every top-k entry is positive".
    `top_k`: only each row's k highest scores may be positive. `class_id`: count only that column.
    """

    def __init__(self, thresholds: float | None = None, top_k: int | None = None, class_id: int | None = None,
                 name: str | None = None):
        if thresholds is not None and (isinstance(thresholds, bool) or not isinstance(thresholds, (int, float))):
            raise ArgumentError(f"`thresholds` must be one float in [0, 1] (result() is a single number), "
                                f"got {thresholds!r}.")
        self.thresholds = None if thresholds is None else check_float_range("thresholds", thresholds, 0.0, 1.0)
        self.top_k = None if top_k is None else check_positive_int("top_k", top_k)
        if class_id is not None and (isinstance(class_id, bool) or not isinstance(class_id, int) or class_id < 0):
            raise ArgumentError(f"`class_id` must be a non-negative integer, got {class_id!r}.")
        self.class_id = class_id
        # Keras's top_k default threshold is −inf: every entry that survives the top-k filter is positive.
        self._cutoff = (0.5 if top_k is None else -np.inf) if thresholds is None else self.thresholds
        super().__init__(name)

    def reset(self) -> None:
        self.true_positives, self.false_positives, self.false_negatives = 0.0, 0.0, 0.0

    def update_state(self, y_true, y_pred, sample_weight) -> None:
        y_true = _labels_shaped_like(y_true, y_pred, self.name)
        if (self.top_k is not None or self.class_id is not None) and y_pred.ndim != 2:
            raise ShapeError(f"metric '{self.name}': `top_k`/`class_id` need predictions of shape (n, C), "
                             f"got {y_pred.shape}.")
        predicted = y_pred > self._cutoff
        if self.top_k is not None:
            # A stable sort keeps the lower class index first among ties, as Keras's top_k does.
            top = np.argsort(-y_pred, axis=1, kind="stable")[:, :self.top_k]
            in_top = np.zeros(y_pred.shape, dtype=bool)
            np.put_along_axis(in_top, top, True, axis=1)
            predicted &= in_top
        actual = y_true != 0
        if self.class_id is not None:
            if self.class_id >= y_pred.shape[1]:
                raise ShapeError(f"metric '{self.name}': `class_id` {self.class_id} is out of range for "
                                 f"predictions with {y_pred.shape[1]} columns.")
            predicted, actual = predicted[:, self.class_id], actual[:, self.class_id]
        weights = None
        if sample_weight is not None:
            weights = np.broadcast_to(sample_weight.reshape((-1,) + (1,) * (predicted.ndim - 1)), predicted.shape)
        self.true_positives += _weighted_count(predicted & actual, weights)
        self.false_positives += _weighted_count(predicted & ~actual, weights)
        self.false_negatives += _weighted_count(~predicted & actual, weights)


def _weighted_count(mask: np.ndarray, weights: np.ndarray | None) -> float:
    return float(np.count_nonzero(mask)) if weights is None else float(np.sum(weights, where=mask))


class Precision(ConfusionCounts):
    """TP / (TP + FP); 0 before any positive prediction."""

    default_name = "precision"

    def result(self) -> float:
        predicted_positive = self.true_positives + self.false_positives
        return self.true_positives / predicted_positive if predicted_positive else 0.0


class Recall(ConfusionCounts):
    """TP / (TP + FN); 0 before any positive label."""

    default_name = "recall"

    def result(self) -> float:
        actual_positive = self.true_positives + self.false_negatives
        return self.true_positives / actual_positive if actual_positive else 0.0


def _divide_no_nan(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.divide(numerator, denominator, out=np.zeros(np.broadcast(numerator, denominator).shape),
                     where=denominator != 0)


class AUC(Metric):
    """Area under the ROC or PR curve, from weighted confusion counts at `num_thresholds` fixed thresholds.

    Thresholds are Keras's: [−ε, 1/(T−1), ..., (T−2)/(T−1), 1+ε], a score counts as positive when it
    is > the threshold, and scores are clipped to [0, 1]. `multi_label=False` flattens (n, C) into n·C
    binary decisions; `multi_label=True` averages the per-column AUCs. `summation_method`: "interpolation"
    (trapezoids for ROC, Davis & Goadrich for PR), "minoring" or "majoring" (lower/upper Riemann sums).
    """

    default_name = "auc"

    def __init__(self, num_thresholds: int = 200, curve: str = "ROC", summation_method: str = "interpolation",
                 multi_label: bool = False, name: str | None = None):
        if isinstance(num_thresholds, bool) or not isinstance(num_thresholds, int) or num_thresholds <= 1:
            raise ArgumentError(f"`num_thresholds` must be an integer > 1, got {num_thresholds!r}.")
        if not isinstance(curve, str) or curve.upper() not in ("ROC", "PR"):
            raise ArgumentError(f"`curve` must be 'ROC' or 'PR', got {curve!r}.")
        methods = ("interpolation", "minoring", "majoring")
        if not isinstance(summation_method, str) or summation_method.lower() not in methods:
            raise ArgumentError(f"`summation_method` must be one of {', '.join(methods)}, got {summation_method!r}.")
        if not isinstance(multi_label, bool):
            raise ArgumentError(f"`multi_label` must be true or false, got {multi_label!r}.")
        self.num_thresholds = num_thresholds
        self.curve = curve.upper()
        self.summation_method = summation_method.lower()
        self.multi_label = multi_label
        super().__init__(name)

    def reset(self) -> None:
        # Per-bucket weight of positive/negative labels, flat (labels · thresholds); built by the first update.
        self._positive_buckets = self._negative_buckets = None

    def update_state(self, y_true, y_pred, sample_weight) -> None:
        y_true = _labels_shaped_like(y_true, y_pred, self.name)
        num_labels = 1
        if self.multi_label:
            if y_pred.ndim != 2:
                raise ShapeError(f"metric '{self.name}' with `multi_label` needs predictions of shape (n, labels), "
                                 f"got {y_pred.shape}.")
            num_labels = y_pred.shape[1]
        size = num_labels * self.num_thresholds
        if self._positive_buckets is None:
            self._positive_buckets, self._negative_buckets = np.zeros(size), np.zeros(size)
        elif self._positive_buckets.size != size:
            raise ShapeError(f"metric '{self.name}': the number of labels changed between batches.")
        # Bucket b holds scores in (t_b, t_b+1], so "score > t_j" is the sum of buckets j.. (an O(n + T) pass,
        # where comparing every score with every threshold would be O(n · T)).
        scaled = np.multiply(y_pred, self.num_thresholds - 1, dtype=np.float64)
        np.clip(scaled, 0.0, self.num_thresholds - 1, out=scaled)
        buckets = np.ceil(scaled, out=scaled).astype(np.intp)
        buckets -= 1
        np.maximum(buckets, 0, out=buckets)  # a score of exactly 0 is still > −ε
        if self.multi_label:
            buckets += np.arange(num_labels) * self.num_thresholds
        weights = None
        if sample_weight is not None:
            weights = np.broadcast_to(sample_weight.reshape((-1,) + (1,) * (y_pred.ndim - 1)), y_pred.shape)
        positive = y_true != 0
        for mask, histogram in ((positive, self._positive_buckets), (~positive, self._negative_buckets)):
            histogram += np.bincount(buckets[mask], None if weights is None else weights[mask], minlength=size)

    def result(self) -> float:
        if self._positive_buckets is None:
            return 0.0
        shape = (-1, self.num_thresholds)
        # Reverse cumulative sums turn buckets into counts above each threshold: (labels, thresholds).
        tp = np.cumsum(self._positive_buckets.reshape(shape)[:, ::-1], axis=1)[:, ::-1]
        fp = np.cumsum(self._negative_buckets.reshape(shape)[:, ::-1], axis=1)[:, ::-1]
        fn, tn = tp[:, :1] - tp, fp[:, :1] - fp
        if self.curve == "PR" and self.summation_method == "interpolation":
            per_label = _pr_auc_interpolated(tp, fp, fn)
        else:
            recall = _divide_no_nan(tp, tp + fn)
            if self.curve == "ROC":
                x, y = _divide_no_nan(fp, fp + tn), recall
            else:
                x, y = recall, _divide_no_nan(tp, tp + fp)
            if self.summation_method == "interpolation":
                heights = (y[:, :-1] + y[:, 1:]) / 2
            elif self.summation_method == "minoring":
                heights = np.minimum(y[:, :-1], y[:, 1:])
            else:
                heights = np.maximum(y[:, :-1], y[:, 1:])
            per_label = ((x[:, :-1] - x[:, 1:]) * heights).sum(axis=1)
        return float(per_label.mean())


def _pr_auc_interpolated(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """Davis & Goadrich PR-AUC per label; tp, fp, fn: (labels, thresholds) in increasing threshold order.

    Between neighbouring thresholds A < B, TP and P = TP + FP vary linearly, so precision = TP/P is not
    linear; integrating it in closed form gives slope · (ΔTP + intercept · log(P_A / P_B)) / positives.
    """
    delta_tp = tp[:, :-1] - tp[:, 1:]
    predicted = tp + fp
    delta_predicted = predicted[:, :-1] - predicted[:, 1:]
    slope = _divide_no_nan(delta_tp, np.maximum(delta_predicted, 0))
    intercept = tp[:, 1:] - slope * predicted[:, 1:]
    both_positive = (predicted[:, :-1] > 0) & (predicted[:, 1:] > 0)
    # Where P_B is 0 the log term vanishes: precision is held constant over the first non-empty bucket.
    ratio = np.where(both_positive, _divide_no_nan(predicted[:, :-1], np.maximum(predicted[:, 1:], 0)), 1.0)
    increments = _divide_no_nan(slope * (delta_tp + intercept * np.log(ratio)), np.maximum(tp[:, 1:] + fn[:, 1:], 0))
    return increments.sum(axis=1)


def accuracy_class(loss: str, output_units: int) -> type[Metric]:
    """Keras's reading of "accuracy": binary for BCE or a single output, sparse for sparse CCE, else categorical."""
    loss_name = normalize(loss)
    if loss_name == "binary_crossentropy" or output_units == 1:
        return BinaryAccuracy
    if loss_name == "sparse_categorical_crossentropy":
        return SparseCategoricalAccuracy
    return CategoricalAccuracy


def unresolved_accuracy(**kwargs) -> Metric:
    """Registry entry behind "accuracy"/"acc": its class depends on the model, so only `resolve_metric` builds it."""
    raise ArgumentError("metric 'accuracy' depends on the model's loss and output width: build it with "
                        "`resolve_metric(spec, loss, output_units)`.")


METRICS = Registry(
    "metric",
    entries={
        "accuracy": unresolved_accuracy,
        "binary_accuracy": BinaryAccuracy,
        "categorical_accuracy": CategoricalAccuracy,
        "sparse_categorical_accuracy": SparseCategoricalAccuracy,
        "top_k_categorical_accuracy": TopKCategoricalAccuracy,
        "sparse_top_k_categorical_accuracy": SparseTopKCategoricalAccuracy,
        "mean_absolute_error": MeanAbsoluteError,
        "mean_squared_error": MeanSquaredError,
        "root_mean_squared_error": RootMeanSquaredError,
        "precision": Precision,
        "recall": Recall,
        "auc": AUC,
    },
    aliases={"acc": "accuracy", "mae": "mean_absolute_error", "mse": "mean_squared_error",
             "rmse": "root_mean_squared_error"},
    base=Metric,
)


def resolve_metric(spec, loss: str, output_units: int) -> Metric:
    """A Metric from a name, a `{"type": name, **kwargs}` mapping, or an instance (passed through).

    Like Keras history keys, the metric is named as the user spelled `type` ("acc" stays "acc") unless
    the mapping gives `name`.
    """
    if isinstance(spec, Metric):
        return spec
    if isinstance(spec, str):
        type_name, kwargs = spec, {}
    elif isinstance(spec, dict):
        if "type" not in spec:
            raise ArgumentError(f"a metric given as a mapping needs a `type` key, got {sorted(spec)}.")
        kwargs = dict(spec)
        type_name = kwargs.pop("type")
    else:
        raise ArgumentError(f"cannot interpret {spec!r} as a metric: give a name or a mapping with `type`.")
    canonical = METRICS.canonical(type_name)
    metric_class = accuracy_class(loss, output_units) if canonical == "accuracy" else METRICS.entries[canonical]
    allowed = list(inspect.signature(metric_class).parameters)
    for key in kwargs:
        if key not in allowed:
            suggestion = did_you_mean(key, allowed)
            hint = f" — did you mean `{suggestion}`?" if suggestion else ""
            raise ArgumentError(f"metric '{type_name}' has no argument `{key}`{hint} (allowed: {', '.join(allowed)})")
    kwargs.setdefault("name", type_name.strip())
    return metric_class(**kwargs)


def resolve_metrics(specs, loss: str, output_units: int) -> list[Metric]:
    """`resolve_metric` over a list; names must be unique because they key the training history."""
    if specs is None:
        return []
    if not isinstance(specs, (list, tuple)):
        raise ArgumentError(f"`metrics` must be a list, got {specs!r}.")
    metrics = [resolve_metric(spec, loss, output_units) for spec in specs]
    names = [metric.name for metric in metrics]
    for name in names:
        if names.count(name) > 1:
            raise ArgumentError(f"`metrics` lists '{name}' twice: give one of them a distinct `name`.")
    return metrics
