"""Metrics built on confusion counts at thresholds: precision, recall and AUC (ROC and PR), Keras style."""

from __future__ import annotations

import numpy as np

from nnctl.errors import ArgumentError, ShapeError, check_float_range, check_positive_int
from nnctl.nn.metrics.base import Metric, _labels_shaped_like


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
