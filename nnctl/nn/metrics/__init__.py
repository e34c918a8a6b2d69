"""Metrics by name: the registry and Keras's resolution of `accuracy` from the loss and output width.

The metric classes live in `base.py` (per-sample means) and `confusion.py` (threshold counts).
"""

from __future__ import annotations

import inspect

from nnctl.errors import ArgumentError, did_you_mean
from nnctl.nn.metrics.base import (BinaryAccuracy, CategoricalAccuracy, Mean, MeanAbsoluteError, MeanSquaredError,
                                   Metric, RootMeanSquaredError, SparseCategoricalAccuracy,
                                   SparseTopKCategoricalAccuracy, TopKCategoricalAccuracy)
from nnctl.nn.metrics.confusion import AUC, Precision, Recall
from nnctl.registry import Registry, normalize


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
    if "." not in type_name and ":" not in type_name:  # a plugin's metric keeps its own name (Keras's)
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


__all__ = ["AUC", "METRICS", "BinaryAccuracy", "CategoricalAccuracy", "Mean", "MeanAbsoluteError", "MeanSquaredError",
           "Metric", "Precision", "Recall", "RootMeanSquaredError", "SparseCategoricalAccuracy",
           "SparseTopKCategoricalAccuracy", "TopKCategoricalAccuracy", "accuracy_class", "resolve_metric",
           "resolve_metrics"]
