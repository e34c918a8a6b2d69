"""Preprocessing steps declared in the config: fitted on the training split only, saved, and reapplied.

Each transform's `state()` is plain JSON (preprocessing.json), so evaluate/predict repeat exactly the same steps.
"""

from __future__ import annotations

import numpy as np

from nnctl.errors import NnctlError
from nnctl.host import check_fits


class Transform:
    """Override `fit` (learn state from the training split; optional) and `apply`; `target` is "x" or "y".

    Example:
        class Clip(Transform):
            type_name = "clip"
            def apply(self, x): return np.clip(x, -1, 1)
    """

    type_name = ""
    target = "x"
    fitted_keys: tuple[str, ...] = ()

    def __init__(self, **options):
        self.options = options

    def fit(self, data) -> None:
        """Learns whatever `apply` needs from the training split (default: nothing)."""

    def apply(self, data):
        raise NotImplementedError

    def state(self) -> dict:
        return {"type": self.type_name, **self.options, **{k: getattr(self, k) for k in self.fitted_keys}}

    def load(self, state: dict) -> "Transform":
        for key in self.fitted_keys:
            setattr(self, key, state[key])
        return self


def _sequences(data, name):
    from nnctl.data.sequences import Sequences
    if not isinstance(data, Sequences):
        raise NnctlError(f"transform '{name}' needs word-index sequences (imdb, reuters, synthetic text), "
                         f"got an array of shape {getattr(data, 'shape', '?')}")
    return data


class MultiHot(Transform):
    """Sequences of word indexes → 0/1 rows of `width` columns, kept sparse (CSR); the book's vectorize_sequences."""

    type_name = "multi_hot"
    fitted_keys = ("width",)

    def fit(self, data):
        seqs = _sequences(data, self.type_name)
        self.width = int(self.options.get("width") or (int(seqs.tokens.max()) + 1 if len(seqs.tokens) else 1))

    def apply(self, data):
        return _sequences(data, self.type_name).multi_hot(self.width)


class PadSequences(Transform):
    """Sequences → (n, maxlen) integer rows, Keras's pad_sequences (for Embedding and recurrent layers)."""

    type_name = "pad_sequences"

    def apply(self, data):
        return _sequences(data, self.type_name).pad(**self.options)


class OneHot(Transform):
    """Integer labels → one-hot rows (Keras's to_categorical); the class count is read from the training labels."""

    type_name, target = "one_hot", "y"
    fitted_keys = ("classes",)

    def fit(self, y):
        labels = _labels(y)
        self.classes = int(self.options.get("classes") or (int(labels.max()) + 1 if labels.size else 1))

    def apply(self, y):
        labels = _labels(y)
        if labels.size and (labels.min() < 0 or labels.max() >= self.classes or np.any(labels % 1)):
            raise NnctlError(f"one_hot: labels must be integers in [0, {self.classes - 1}], got values in "
                             f"[{labels.min()}, {labels.max()}]")
        check_fits(len(labels) * self.classes * 4, f"one_hot of {len(labels)} labels into {self.classes} classes")
        out = np.zeros((len(labels), self.classes), np.float32)
        out[np.arange(len(labels)), labels.astype(np.int64)] = 1.0
        return out


def _labels(y) -> np.ndarray:
    """One label per row, flat: (n,) or (n, 1) targets; anything wider is refused (not silently unrolled)."""
    y = np.asarray(y)
    if y.ndim == 0 or (y.ndim > 1 and int(np.prod(y.shape[1:])) != 1):
        raise NnctlError(f"one_hot needs one integer label per row, got targets of shape {list(y.shape)}"
                         + (" (already one-hot?)" if y.ndim == 2 else ""))
    return y.reshape(-1)


class Standardize(Transform):
    """Feature-wise (x − mean) / std with the training split's statistics: the book's Boston step."""

    type_name = "standardize"
    fitted_keys = ("mean", "std")

    def fit(self, x):
        x = np.asarray(x, np.float64)
        self.mean = x.mean(axis=0).tolist()
        std = x.std(axis=0)
        self.std = np.where(std > 0, std, 1.0).tolist()  # a constant feature stays 0 instead of dividing by 0

    def apply(self, x):
        return ((np.asarray(x, np.float64) - np.asarray(self.mean)) / np.asarray(self.std)).astype(np.float32)


class Impute(Transform):
    """Missing values (NaN) → each column's training mean or median, or `fill_value` (scikit-learn's
    SimpleImputer); put it before the transforms that compute with the values."""

    type_name = "impute"
    fitted_keys = ("values",)

    def fit(self, x):
        x = _columns(x, self.type_name)
        strategy = self.options.get("strategy", "mean")
        if strategy == "constant":
            self.values = [float(self.options["fill_value"])] * x.shape[1]
            return
        empty = np.flatnonzero(np.all(np.isnan(x), axis=0)) if len(x) else np.arange(x.shape[1])
        if empty.size:
            raise NnctlError(f"impute: column {int(empty[0])} has no values in the training split to take the "
                             f"{strategy} of; use `strategy: constant` with a `fill_value`")
        self.values = (np.nanmedian(x, axis=0) if strategy == "median" else np.nanmean(x, axis=0)).tolist()

    def apply(self, x):
        x = _columns(x, self.type_name)
        if x.shape[1] != len(self.values):
            raise NnctlError(f"impute: fitted on {len(self.values)} columns, got {x.shape[1]}")
        return np.where(np.isnan(x), np.asarray(self.values), x).astype(np.float32)


def _columns(x, name) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim != 2:
        raise NnctlError(f"{name} needs rows of columns (a table), got an array of shape {list(x.shape)}")
    return x


class Rescale(Transform):
    """x · scale + offset (e.g. scale 1/255 for pixels)."""

    type_name = "rescale"

    def apply(self, x):
        return (np.asarray(x, np.float32) * np.float32(self.options["scale"])
                + np.float32(self.options.get("offset", 0.0)))


class Flatten(Transform):
    """(n, d1, d2, …) → (n, d1·d2·…), the book's reshape of MNIST images to 784 values."""

    type_name = "flatten"

    def apply(self, x):
        x = np.asarray(x)
        return x.reshape(len(x), -1)


class Reshape(Transform):
    """Each sample to `shape`."""

    type_name = "reshape"

    def apply(self, x):
        x = np.asarray(x)
        try:
            return x.reshape((len(x),) + tuple(self.options["shape"]))
        except ValueError:
            raise NnctlError(f"reshape: cannot reshape samples of shape {list(x.shape[1:])} to "
                             f"{self.options['shape']}") from None


TRANSFORMS = {cls.type_name: cls for cls in (MultiHot, PadSequences, OneHot, Standardize, Impute, Rescale, Flatten,
                                              Reshape)}


def build_transforms(specs: list[dict]) -> list[Transform]:
    """Transforms from `{type: ..., **options}` dicts (validated by the schema beforehand)."""
    return [TRANSFORMS[spec["type"]](**{k: v for k, v in spec.items() if k != "type" and v is not None})
            for spec in specs]


def _row_count(data) -> int:
    shape = getattr(data, "shape", None)
    if shape is None:
        return len(data)
    return int(shape[0]) if len(shape) else 1


def _applied(transform: Transform, index: int, data, fit: bool):
    """`transform` applied to `data` (fitted first when `fit`), which must keep one row per sample: a
    transform that changed the row count would only fail later, in training, after a run folder exists."""
    if fit:
        transform.fit(data)
    out = transform.apply(data)
    before, after = _row_count(data), _row_count(out)
    if before != after:
        raise NnctlError(f"transforms[{index}] ({transform.type_name}) turned {before} rows into {after}")
    return out


def fit_apply(transforms: list[Transform], x, y):
    """Fits each transform on the training data in order, returning the transformed (x, y)."""
    imputing = any(isinstance(transform, Impute) for transform in transforms)  # else the data holds no NaN
    for index, transform in enumerate(transforms):
        if transform.target == "x":
            if imputing:
                _check_no_missing(x, index, transform)
            x = _applied(transform, index, x, fit=True)
        else:
            y = _applied(transform, index, y, fit=True)
    if imputing:
        _check_no_missing(x, len(transforms), None)
    return x, y


def _check_no_missing(x, index: int, transform) -> None:
    """Missing values (NaN, only read with an `impute` transform) must be imputed before any other transform
    computes with them: a NaN mean would make every value NaN without a word."""
    if isinstance(transform, Impute) or not isinstance(x, np.ndarray) or x.dtype.kind != "f":
        return
    if np.isnan(x).any():
        where = f"transforms[{index}] ({transform.type_name})" if transform else "the model"
        raise NnctlError(f"{where} would see missing values: put `impute` first in `transforms`")


def apply_all(transforms: list[Transform], x, y=None):
    """Reapplies fitted transforms (to y too, when given)."""
    for index, transform in enumerate(transforms):
        if transform.target == "x":
            x = _applied(transform, index, x, fit=False)
        elif y is not None:
            y = _applied(transform, index, y, fit=False)
    return x, y


def load_transforms(states: list[dict]) -> list[Transform]:
    """Fitted transforms back from preprocessing.json."""
    out = []
    for state in states:
        cls = TRANSFORMS[state["type"]]
        options = {k: v for k, v in state.items() if k != "type" and k not in cls.fitted_keys}
        out.append(cls(**options).load(state))
    return out
