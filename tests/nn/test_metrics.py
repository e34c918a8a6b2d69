"""Metrics: hand-computed cases, streaming = one big batch, weights, reset, name resolution and errors."""

import math

import numpy as np
import pytest

from nnctl.errors import ArgumentError, ShapeError, UnknownNameError
from nnctl.nn.metrics import (
    AUC, METRICS, BinaryAccuracy, CategoricalAccuracy, Mean, MeanAbsoluteError, MeanSquaredError, Metric,
    Precision, Recall, RootMeanSquaredError, SparseCategoricalAccuracy, SparseTopKCategoricalAccuracy,
    TopKCategoricalAccuracy, resolve_metric, resolve_metrics,
)

BUILDABLE = sorted(name for name in METRICS.entries if name != "accuracy")


def measure(metric, y_true, y_pred, sample_weight=None):
    metric.update(np.asarray(y_true), np.asarray(y_pred, dtype=np.float32), sample_weight)
    return metric.result()


def random_batch(name, rng, n):
    """(y_true, y_pred) of the kind each registered metric is used with."""
    if name in ("binary_accuracy", "precision", "recall", "auc"):
        labels = rng.integers(0, 2, size=(n, 1))
        return labels, np.clip(0.3 * labels + 0.7 * rng.random((n, 1)), 0, 1).astype(np.float32)
    scores = rng.random((n, 6)).astype(np.float32)
    y_pred = scores / scores.sum(axis=1, keepdims=True)
    labels = rng.integers(0, 6, size=n)
    if name.startswith("sparse"):
        return labels, y_pred
    if "categorical" in name:
        return np.eye(6)[labels], y_pred
    return rng.normal(size=(n, 3)), rng.normal(size=(n, 3)).astype(np.float32)


# --- accuracies -------------------------------------------------------------------------------------------

def test_binary_accuracy_by_hand():
    # y_pred > 0.5 → [1, 1, 0, 0] against [1, 0, 1, 0]: samples 0 and 3 right → 2/4.
    assert measure(BinaryAccuracy(), [1, 0, 1, 0], [[0.9], [0.6], [0.4], [0.1]]) == 0.5
    # threshold 0.3 → [1, 1, 1, 0]: samples 0, 2, 3 right → 3/4; labels (n, 1) against predictions (n,).
    assert measure(BinaryAccuracy(threshold=0.3), [[1], [0], [1], [0]], [0.9, 0.6, 0.4, 0.1]) == 0.75
    # weights [4, 1, 1, 2] on the 0.5 case: (4 + 2) / 8.
    assert measure(BinaryAccuracy(), [1, 0, 1, 0], [0.9, 0.6, 0.4, 0.1], np.array([4, 1, 1, 2.0])) == 0.75
    # multi-label rows are averaged first: row 0 [right, wrong] = 0.5, row 1 [wrong, right] = 0.5.
    assert measure(BinaryAccuracy(), [[1, 0], [1, 1]], [[0.8, 0.7], [0.2, 0.9]]) == 0.5


def test_categorical_and_sparse_accuracy_by_hand():
    y_pred = [[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.2, 0.6]]  # argmax 1, 0, 2
    assert measure(CategoricalAccuracy(), np.eye(3)[[1, 2, 2]], y_pred) == pytest.approx(2 / 3)
    assert measure(SparseCategoricalAccuracy(), [1, 2, 2], y_pred) == pytest.approx(2 / 3)
    assert measure(SparseCategoricalAccuracy(), [[1.0], [0.0], [2.0]], y_pred) == 1.0
    # weights [1, 3, 1]: only the weight-3 sample is wrong → 2/5.
    assert measure(CategoricalAccuracy(), np.eye(3)[[1, 2, 2]], y_pred, [1, 3, 1]) == pytest.approx(0.4)


def test_top_k_accuracy_counts_ties_at_the_kth_score_as_hits():
    y_pred = [[0.5, 0.3, 0.2], [0.1, 0.6, 0.3], [0.5, 0.25, 0.25]]
    # k=2 top sets: {0,1}, {1,2}, {0, and 1 or 2 tied}: label 2 hits in rows 1 and 3 (tie), misses in row 0.
    assert measure(SparseTopKCategoricalAccuracy(k=2), [2, 2, 2], y_pred) == pytest.approx(2 / 3)
    assert measure(TopKCategoricalAccuracy(k=2), np.eye(3)[[2, 2, 2]], y_pred) == pytest.approx(2 / 3)
    assert measure(SparseTopKCategoricalAccuracy(k=1), [0, 1, 1], y_pred) == pytest.approx(2 / 3)
    # k ≥ classes: everything is a hit (the Keras default k=5 on 3 classes).
    assert measure(SparseTopKCategoricalAccuracy(), [2, 0, 1], y_pred) == 1.0


# --- regression -------------------------------------------------------------------------------------------

def test_regression_errors_by_hand():
    y_true, y_pred = [[0, 1], [2, 3]], [[1, 1], [2, 1]]
    # |error| rows [1, 0] and [0, 2] → per-sample means 0.5 and 1.0; squared rows → 0.5 and 2.0.
    assert measure(MeanAbsoluteError(), y_true, y_pred) == pytest.approx(0.75)
    assert measure(MeanSquaredError(), y_true, y_pred) == pytest.approx(1.25)
    assert measure(RootMeanSquaredError(), y_true, y_pred) == pytest.approx(math.sqrt(1.25))
    # weights [3, 1]: MAE (3·0.5 + 1.0) / 4, MSE (3·0.5 + 2.0) / 4.
    assert measure(MeanAbsoluteError(), y_true, y_pred, [3, 1]) == pytest.approx(0.625)
    assert measure(MeanSquaredError(), y_true, y_pred, [3, 1]) == pytest.approx(0.875)
    # (n,) targets against (n, 1) predictions: errors 1 and 3.
    assert measure(MeanAbsoluteError(), [1.0, 2.0], [[2.0], [5.0]]) == pytest.approx(2.0)


def test_rmse_is_the_root_of_the_whole_stream_not_a_mean_of_batch_roots():
    rmse = RootMeanSquaredError()
    rmse.update([0.0], [[1.0]])   # squared error 1
    rmse.update([0.0], [[3.0]])   # squared error 9 → √((1 + 9) / 2) = √5, not (1 + 3) / 2
    assert rmse.result() == pytest.approx(math.sqrt(5))


# --- precision and recall ---------------------------------------------------------------------------------

def test_precision_recall_by_hand():
    y_true, y_pred = [1, 0, 1, 1, 0], [0.9, 0.8, 0.3, 0.6, 0.1]
    # threshold 0.5 predicts [1, 1, 0, 1, 0]: TP = 2 (0, 3), FP = 1 (1), FN = 1 (2).
    assert measure(Precision(), y_true, y_pred) == pytest.approx(2 / 3)
    assert measure(Recall(), y_true, y_pred) == pytest.approx(2 / 3)
    # threshold 0.2 predicts [1, 1, 1, 1, 0]: TP = 3, FP = 1, FN = 0.
    assert measure(Precision(thresholds=0.2), y_true, y_pred) == pytest.approx(0.75)
    assert measure(Recall(thresholds=0.2), y_true, y_pred) == 1.0
    # weight 2 on the false positive: precision 2 / (2 + 2); recall keeps 2 / 3.
    weights = np.array([1, 2, 1, 1, 1.0])
    assert measure(Precision(), y_true, y_pred, weights) == pytest.approx(0.5)
    assert measure(Recall(), y_true, y_pred, weights) == pytest.approx(2 / 3)
    assert Precision().result() == 0.0 and Recall().result() == 0.0


def test_precision_recall_top_k_and_class_id():
    y_true = [[0, 0, 1, 1], [0, 0, 0, 1]]
    y_pred = [[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]]
    # top 2 of each row are positive whatever their score: row 0 picks {2, 3} (2 TP), row 1 {0, 1} (2 FP),
    # and row 1's label 3 is missed: precision 2/4, recall 2/3.
    assert measure(Precision(top_k=2), y_true, y_pred) == pytest.approx(0.5)
    assert measure(Recall(top_k=2), y_true, y_pred) == pytest.approx(2 / 3)
    # class 2 only: labels [1, 0], scores [0.3, 0.2]: nothing > 0.5; with threshold 0.25 one TP.
    assert measure(Precision(class_id=2), y_true, y_pred) == 0.0
    assert measure(Recall(class_id=2, thresholds=0.25), y_true, y_pred) == 1.0
    # top_k=1 then class 3: only row 0 puts class 3 first → TP 1; row 1's class 3 is a FN.
    assert measure(Recall(top_k=1, class_id=3), y_true, y_pred) == pytest.approx(0.5)


# --- AUC --------------------------------------------------------------------------------------------------

def test_auc_by_hand_with_three_thresholds():
    # thresholds [−ε, 0.5, 1+ε]; labels [0, 0, 1, 1], scores [0, 0.5, 0.3, 0.9].
    # tp = [2, 1, 0], fp = [2, 0, 0] → TPR [1, 0.5, 0], FPR [1, 0, 0]: (1 + 0.5)/2 · 1 = 0.75.
    assert measure(AUC(num_thresholds=3), [0, 0, 1, 1], [0, 0.5, 0.3, 0.9]) == pytest.approx(0.75)
    # weights [1, 2, 3, 4]: tp = [7, 4, 0], fp = [3, 0, 0], fn = [0, 3, 7]; TPR [1, 4/7, 0], FPR [1, 0, 0]
    # → (1 + 4/7)/2 · 1 = 11/14 with trapezoids, 4/7 with the lower sum, 1 with the upper sum.
    for method, expected in (("interpolation", 11 / 14), ("minoring", 4 / 7), ("majoring", 1.0)):
        auc = AUC(num_thresholds=3, summation_method=method)
        assert measure(auc, [0, 0, 1, 1], [0, 0.5, 0.3, 0.9], [1, 2, 3, 4]) == pytest.approx(expected)


def test_pr_auc_interpolation_by_hand():
    # Same weighted counts: P = tp + fp = [10, 4, 0], ΔTP = [3, 4], ΔP = [6, 4] → slopes [0.5, 1],
    # intercepts tp_B − slope·P_B = [4 − 2, 0] = [2, 0], log ratios [log(10/4), 0 (P_B = 0)].
    # area = [0.5·(3 + 2·log 2.5) + 1·(4 + 0)] / 7 positives.
    expected = (0.5 * (3 + 2 * math.log(2.5)) + 4) / 7
    auc = AUC(num_thresholds=3, curve="PR")
    assert measure(auc, [0, 0, 1, 1], [0, 0.5, 0.3, 0.9], [1, 2, 3, 4]) == pytest.approx(expected)
    # minoring on PR: recall [1, 4/7, 0], precision [0.7, 1, 0] → 0.7 · 3/7 + 0 · 4/7 = 0.3.
    auc = AUC(num_thresholds=3, curve="pr", summation_method="minoring")
    assert measure(auc, [0, 0, 1, 1], [0, 0.5, 0.3, 0.9], [1, 2, 3, 4]) == pytest.approx(0.3)


@pytest.mark.parametrize("curve", ["ROC", "PR"])
def test_auc_of_a_perfect_and_a_reversed_ranking(curve):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=500)
    separating = np.where(labels == 1, 0.6 + 0.4 * rng.random(500), 0.4 * rng.random(500))
    assert measure(AUC(curve=curve), labels, separating) == pytest.approx(1.0, abs=1e-6)
    if curve == "ROC":
        assert measure(AUC(), labels, 1 - separating) == pytest.approx(0.0, abs=1e-6)


def test_roc_auc_matches_the_exact_rank_statistic():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, size=4000)
    scores = 1 / (1 + np.exp(-(labels + rng.normal(size=4000))))  # overlapping classes, AUC ≈ 0.76
    # Mann–Whitney: AUC = (Σ ranks of positives − P(P+1)/2) / (P·N); continuous scores have no ties.
    ranks = np.argsort(np.argsort(scores)) + 1
    positives, negatives = labels.sum(), (1 - labels).sum()
    exact = (ranks[labels == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives)
    assert measure(AUC(), labels, scores) == pytest.approx(exact, abs=1e-2)


def test_auc_multi_label_averages_columns_and_flat_mode_pools_them():
    y_true = np.array([[1, 1], [1, 1], [0, 0], [0, 0]])
    y_pred = np.array([[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.1, 0.9]])  # column 0 perfect, column 1 reversed
    assert measure(AUC(multi_label=True), y_true, y_pred) == pytest.approx(0.5)
    # Pooled: positives score {0.9, 0.8, 0.1, 0.2}, negatives {0.2, 0.1, 0.8, 0.9}: a mirror image → 0.5.
    assert measure(AUC(), y_true, y_pred) == pytest.approx(0.5)
    auc = AUC(multi_label=True)
    auc.update(y_true, y_pred)
    with pytest.raises(ShapeError, match="number of labels changed"):
        auc.update(y_true[:, :1], y_pred[:, :1])


# --- every registered metric ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", BUILDABLE)
def test_streaming_equals_one_update_on_the_concatenation(name):
    rng = np.random.default_rng(7)
    y_true, y_pred = random_batch(name, rng, 96)
    weights = rng.random(96) * 2
    for sample_weight in (None, weights):
        whole, streamed = METRICS.get(name), METRICS.get(name)
        whole.update(y_true, y_pred, sample_weight)
        for part in np.array_split(np.arange(96), [16, 50]):
            streamed.update(y_true[part], y_pred[part], None if sample_weight is None else sample_weight[part])
        assert isinstance(streamed.result(), float)
        assert streamed.result() == pytest.approx(whole.result(), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("name", BUILDABLE)
def test_reset_forgets_everything(name):
    rng = np.random.default_rng(3)
    metric, fresh = METRICS.get(name), METRICS.get(name)
    metric.update(*random_batch(name, rng, 40))
    metric.reset()
    assert metric.result() == 0.0
    batch = random_batch(name, rng, 40)
    metric.update(*batch)
    fresh.update(*batch)
    assert metric.result() == fresh.result()


@pytest.mark.parametrize("name", BUILDABLE)
def test_get_config_rebuilds_the_metric(name):
    metric = METRICS.get(name, name="custom")
    config = metric.get_config()
    assert config["name"] == "custom"
    assert type(metric)(**config).get_config() == config


def test_mean_tracks_plain_values_with_weights():
    loss = Mean(name="loss")
    loss.add(2.0, sample_weight=4)  # a batch of 4 with mean loss 2
    loss.add(5.0, sample_weight=1)  # a batch of 1 with loss 5 → (8 + 5) / 5
    assert loss.result() == pytest.approx(2.6)
    loss.add([1.0, 3.0])
    assert loss.result() == pytest.approx(17 / 7)
    loss.reset()
    assert loss.result() == 0.0


# --- resolution -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("loss, units, expected", [
    ("binary_crossentropy", 1, BinaryAccuracy),
    ("binary_crossentropy", 4, BinaryAccuracy),         # multi-label sigmoid outputs
    ("mean_squared_error", 1, BinaryAccuracy),          # one output unit means binary, whatever the loss
    ("sparse_categorical_crossentropy", 10, SparseCategoricalAccuracy),
    ("categorical_crossentropy", 10, CategoricalAccuracy),
    ("kl_divergence", 3, CategoricalAccuracy),
])
@pytest.mark.parametrize("spelling", ["accuracy", "acc", "Accuracy"])
def test_accuracy_resolves_like_keras_and_keeps_the_users_spelling(loss, units, expected, spelling):
    metric = resolve_metric(spelling, loss, units)
    assert type(metric) is expected
    assert metric.name == spelling


def test_resolve_names_mappings_and_instances():
    mae = resolve_metric("mae", "mean_squared_error", 3)
    assert type(mae) is MeanAbsoluteError and mae.name == "mae"
    auc = resolve_metric({"type": "auc", "curve": "PR", "name": "pr_auc"}, "binary_crossentropy", 1)
    assert (auc.name, auc.curve) == ("pr_auc", "PR")
    strict = resolve_metric({"type": "accuracy", "threshold": 0.9}, "binary_crossentropy", 1)
    assert (type(strict), strict.threshold, strict.name) == (BinaryAccuracy, 0.9, "accuracy")
    mine = Recall(name="r")
    assert resolve_metric(mine, "binary_crossentropy", 1) is mine
    metrics = resolve_metrics(["acc", "auc", {"type": "precision", "class_id": 1}], "categorical_crossentropy", 3)
    assert [m.name for m in metrics] == ["acc", "auc", "precision"]
    assert all(isinstance(m, Metric) for m in metrics)


# --- errors -----------------------------------------------------------------------------------------------

def test_unknown_names_suggest_the_closest():
    with pytest.raises(UnknownNameError, match="unknown metric 'acuracy' — did you mean 'accuracy'"):
        resolve_metric("acuracy", "binary_crossentropy", 1)
    with pytest.raises(UnknownNameError, match="did you mean 'precision'"):
        resolve_metric({"type": "precison"}, "binary_crossentropy", 1)
    with pytest.raises(ArgumentError, match="metric 'auc' has no argument `curv` — did you mean `curve`"):
        resolve_metric({"type": "auc", "curv": "PR"}, "binary_crossentropy", 1)
    with pytest.raises(ArgumentError, match="resolve_metric"):
        METRICS.get("accuracy")


@pytest.mark.parametrize("build, message", [
    (lambda: TopKCategoricalAccuracy(k=0), "`k` must be a positive integer, got 0."),
    (lambda: BinaryAccuracy(threshold=1.5), "`threshold` must be a float in [0.0, 1.0], got 1.5."),
    (lambda: Precision(thresholds=[0.3, 0.5]), "`thresholds` must be one float in [0, 1]"),
    (lambda: Recall(top_k=0), "`top_k` must be a positive integer, got 0."),
    (lambda: Recall(class_id=-1), "`class_id` must be a non-negative integer, got -1."),
    (lambda: AUC(num_thresholds=1), "`num_thresholds` must be an integer > 1, got 1."),
    (lambda: AUC(curve="PRC"), "`curve` must be 'ROC' or 'PR', got 'PRC'."),
    (lambda: AUC(summation_method="trapezoid"), "`summation_method` must be one of interpolation, minoring"),
    (lambda: AUC(multi_label="yes"), "`multi_label` must be true or false"),
    (lambda: Mean(name=""), "`name` must be a non-empty string"),
    (lambda: resolve_metrics(["acc", "acc"], "binary_crossentropy", 1), "`metrics` lists 'acc' twice"),
    (lambda: resolve_metrics("acc", "binary_crossentropy", 1), "`metrics` must be a list"),
])
def test_argument_errors_name_the_argument(build, message):
    with pytest.raises(ArgumentError) as caught:
        build()
    assert message in str(caught.value)


def test_shape_errors_name_the_metric():
    with pytest.raises(ShapeError, match="metric 'binary_accuracy'.*same number of samples"):
        BinaryAccuracy().update([1, 0, 1], [[0.2], [0.9]])
    with pytest.raises(ShapeError, match="metric 'precision'.*`class_id` 5 is out of range"):
        Precision(class_id=5).update(np.eye(3), np.eye(3))
    with pytest.raises(ShapeError, match="class ids must lie in"):
        SparseTopKCategoricalAccuracy(k=1).update([0, 3], np.eye(2))
    with pytest.raises(ShapeError, match="`sample_weight` needs one weight per sample"):
        MeanSquaredError().update([1.0, 2.0], [1.0, 2.0], sample_weight=[1.0, 2.0, 3.0])
