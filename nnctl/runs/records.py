"""The one validating reader of a run folder's files: JSON records through pydantic models, tensors against the model.

Any damage (missing, torn, wrong types, a folder or a dangling link in a file's place) is a RunFileError that names it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal, Optional, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, ValidationError

from nnctl.runs.untrusted import (  # noqa: F401  (RunFileError and read_json are part of this module's API)
    MAX_JSON_BYTES, RunFileError, clip_text, describe_validation, parse_json, read_bytes, read_json, read_text,
    show_value, validate,
)

MAX_SAMPLE_SIZE = 1 << 28  # values in one input sample (1 GiB of float32): a larger input shape is damage


# ---- the records ---------------------------------------------------------------------------------------------
class Record(BaseModel):
    """A JSON record of a run: known keys are type-checked (nothing coerced, no NaN), unknown ones kept."""

    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False)


class Closed(Record):
    """A record whose keys are all known: an unknown one is damage."""

    model_config = ConfigDict(extra="forbid")


Figure = Optional[float]  # null where a NaN was stored
Key = Annotated[str, Field(min_length=1, max_length=100)]  # a metric's name: short, shown in tables
Figures = dict[Key, Figure]
Status = Literal["running", "completed", "interrupted", "failed", "stopped"]


class DataFile(Record):
    path: str
    sha256: str


class PluginRecord(Closed):
    """A plugin the run loaded: a file and its sha256, or a module and its package's version."""

    path: Optional[str] = Field(None, max_length=4096)
    sha256: Optional[str] = Field(None, pattern=r"^[0-9a-f]{64}$")
    module: Optional[str] = Field(None, max_length=255)
    version: Optional[str] = Field(None, max_length=255)


class Manifest(Record):
    status: Status
    name: str = Field(min_length=1, max_length=255)
    started: Optional[str] = Field(None, max_length=64)
    ended: Optional[str] = Field(None, max_length=64)
    seed: Optional[int] = Field(None, ge=0)
    device: Optional[str] = None
    input_shape: Optional[Annotated[list[Annotated[int, Field(gt=0, le=MAX_SAMPLE_SIZE)]], Field(min_length=1)]] = None
    versions: Optional[dict[str, Optional[str]]] = None
    config_sha256: Optional[str] = None
    data: list[DataFile] = Field(default_factory=list)
    epochs_completed: Optional[int] = Field(None, ge=0)
    folds_completed: Optional[int] = Field(None, ge=0)
    kfold: Optional[int] = Field(None, ge=2)
    error: Optional[str] = None
    kernels_compiled: Optional[int] = Field(None, ge=0)
    compile_seconds: Optional[float] = None
    phases: Optional[Figures] = None
    first_step_time: Optional[float] = None
    resumed: list[dict] = Field(default_factory=list)
    plugins: list[PluginRecord] = Field(default_factory=list)


class MeanStd(Closed):
    mean: Figure
    std: Figure


class Best(Closed):
    epoch: int = Field(ge=1)
    mean: Figure
    std: Figure


class Series(Closed):
    mean: list[Figure]
    std: list[Figure]


class Metrics(Record):
    """metrics.json: the final figures per split, `evaluate`'s results under their split's name."""

    __pydantic_extra__: dict[str, Figures]
    epochs: Optional[int] = Field(None, ge=0)
    restored_epoch: Optional[int] = Field(None, ge=1)  # EarlyStopping put back this epoch's weights (its figures)
    train: Optional[Figures] = None
    validation: Optional[Figures] = None
    test: Optional[Figures] = None
    kfold: Optional[dict[Key, MeanStd]] = None
    best: Optional[dict[Key, Best]] = None
    folds: Optional[int] = Field(None, ge=0)  # K-fold: the folds the figures are over, of `folds_planned`
    folds_planned: Optional[int] = Field(None, ge=2)


class KFoldSummary(Closed):
    folds: Optional[int] = Field(None, ge=1)
    folds_planned: Optional[int] = Field(None, ge=2)  # K: fewer `folds` make a partial K-fold
    epochs: Optional[int] = Field(None, ge=0)
    per_epoch: dict[Key, Series] = Field(default_factory=dict)
    final: dict[Key, MeanStd] = Field(default_factory=dict)
    best: dict[Key, Best] = Field(default_factory=dict)


ColumnName = Annotated[str, Field(min_length=1, max_length=1000)]


def _or_by_name(item):
    """`item`, or a mapping from input/output names to it; the union's tags are left out of error paths."""
    return Annotated[Union[Annotated[item, Tag("[one]")], Annotated[dict[ColumnName, item], Tag("[by name]")]],
                     Discriminator(lambda v: "[by name]" if isinstance(v, dict) else "[one]")]


class CsvColumns(Closed):
    """A CSV dataset's columns as trained: predict matches an input CSV's header against them."""

    header: bool
    columns: list[ColumnName] = Field(min_length=1)
    # By input and output name for a model with several (data/csv_groups.py).
    features: _or_by_name(Annotated[list[ColumnName], Field(min_length=1)])
    target: _or_by_name(ColumnName)
    classes: _or_by_name(Optional[Annotated[list[Annotated[str, Field(max_length=100)]], Field(min_length=1)]]) = None


class Preprocessing(Closed):
    transforms: list[dict]
    csv: Optional[CsvColumns] = None


HISTORY = TypeAdapter(dict[Key, list[Figure]], config=ConfigDict(strict=True, allow_inf_nan=False))


def _equal_lengths(history: dict, path) -> None:
    lengths = {key: len(values) for key, values in history.items()}
    if len(set(lengths.values())) > 1:
        (short, n), (long, m) = min(lengths.items(), key=lambda kv: kv[1]), max(lengths.items(), key=lambda kv: kv[1])
        raise RunFileError(path, f"`{short}` has {n} value(s) but `{long}` has {m}")


# ---- reading each file ---------------------------------------------------------------------------------------
def _checked(model, path) -> dict:
    # The parsed value itself once it passed: ints stay ints and unknown keys stay as written.
    value = read_json(path)
    validate(model, value, path)
    return value


def read_manifest(folder) -> dict:
    """manifest.json of the run at `folder`, checked; unknown keys are kept."""
    path = Path(folder) / "manifest.json"
    return _checked(Manifest, path)


def input_shape(manifest: dict, folder) -> tuple | None:
    """The manifest's per-sample input shape (None when absent), refused when it could not fit in memory."""
    shape = manifest.get("input_shape")
    if shape is not None and int(np.prod(shape, dtype=object)) > MAX_SAMPLE_SIZE:
        raise RunFileError(Path(folder) / "manifest.json", f"`input_shape` {clip_text(shape)} holds more than "
                                                          f"{MAX_SAMPLE_SIZE:,} values per sample")
    return None if shape is None else tuple(shape)


def read_metrics(folder, missing_ok: bool = True) -> dict:
    """metrics.json, checked ({} when absent and `missing_ok`)."""
    path = Path(folder) / "metrics.json"
    if missing_ok and not os.path.lexists(path):
        return {}
    return _checked(Metrics, path)


def read_history(folder, name: str = "history.json") -> dict:
    """history.json: {key: [value per epoch]} with None for a stored NaN; all keys of one length."""
    path = Path(folder) / name
    history = _checked(HISTORY, path)
    _equal_lengths(history, path)
    return history


def read_kfold(folder) -> dict:
    """kfold.json: per-epoch mean and std over folds ({} keys while no fold has finished)."""
    path = Path(folder) / "kfold.json"
    summary = _checked(KFoldSummary, path)
    given = [key for key in ("folds", "epochs", "final", "best") if summary.get(key)]
    if given and not summary.get("per_epoch"):  # figures with nothing they were summarized from
        raise RunFileError(path, f"`{given[0]}` is given but `per_epoch` is missing or empty")
    return summary


def read_events(folder) -> list[dict]:
    """Every whole event of events.jsonl in order; torn, undecodable or over-deep lines (a killed writer, bit
    rot) are skipped, as are lines that are not objects. A missing file has no events; a folder or a link
    loop in its place is a RunFileError."""
    path = Path(folder) / "events.jsonl"
    if not os.path.lexists(path):
        return []
    events = []
    for line in read_bytes(path, MAX_JSON_BYTES).splitlines():
        try:
            event = parse_json(line, path)
        except RunFileError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def read_config_text(folder) -> str:
    """config.yaml's text (the caller parses it through the config loader)."""
    return read_text(Path(folder) / "config.yaml")


def load_run_config(folder, overrides=()):
    """config.yaml through the config loader (a located ConfigError for a bad one), after checking that a
    readable regular file stands there."""
    from nnctl.config import load_config

    from nnctl.plugins import expecting

    path = Path(folder) / "config.yaml"
    read_bytes(path, MAX_JSON_BYTES)
    manifest = Path(folder) / "manifest.json"
    plugins = read_manifest(folder).get("plugins") if os.path.lexists(manifest) else None
    with expecting(plugins):  # a plugin file that changed since is refused before its code runs
        return load_config(path, overrides)


def check_replaceable(folder, names) -> None:
    """Refuses (RunFileError) when a folder stands where a run will write one of `names` (os.replace cannot put
    a file there), so a resume fails before it trains rather than after."""
    for name in names:
        path = Path(folder) / name
        if path.is_dir() and not path.is_symlink():
            raise RunFileError(path, "is a folder, not a file: the run's own file cannot be written there")


# ---- preprocessing.json --------------------------------------------------------------------------------------
def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _finite_list(value, positive=False) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) and (v > 0 or not positive)
        for v in value)


# What `fit` learns, by key (nnctl/data/transforms.py's fitted_keys): what a loaded transform may hold.
FITTED = {"width": ("a positive integer", _positive_int), "classes": ("a positive integer", _positive_int),
          "mean": ("a list of numbers", _finite_list), "values": ("a list of numbers", _finite_list),
          "std": ("a list of positive numbers", lambda v: _finite_list(v, positive=True))}


def read_csv_columns(folder) -> dict | None:
    """preprocessing.json's `csv` record (None for a run not trained on a CSV), checked: the features and the
    target are among the columns, the classes distinct."""
    path = Path(folder) / "preprocessing.json"
    record = _checked(Preprocessing, path).get("csv")
    if record is None:
        return None
    features, target = record["features"], record["target"]
    named = [*(sum(features.values(), []) if isinstance(features, dict) else features),
             *(target.values() if isinstance(target, dict) else [target])]
    unknown = [name for name in named if name not in record["columns"]]
    if unknown:
        raise RunFileError(path, f"`csv` names a column that is not in `columns`: {show_value(unknown[0])}")
    if len(set(record["columns"])) != len(record["columns"]):
        raise RunFileError(path, "`csv.columns` names a column twice")
    for classes in record["classes"].values() if isinstance(record["classes"], dict) else [record["classes"]]:
        if classes is not None and len(set(classes)) != len(classes):
            raise RunFileError(path, "`csv.classes` names a class twice")
    return record


def read_preprocessing(folder) -> list[dict]:
    """preprocessing.json's fitted transform states, each checked against the transform registry, the config
    schema of its options, and what its `fit` learned; ready for `load_transforms`."""
    from nnctl.config.schema import TRANSFORM_SPECS
    from nnctl.data.transforms import TRANSFORMS

    path = Path(folder) / "preprocessing.json"
    states = _checked(Preprocessing, path)["transforms"]
    for index, state in enumerate(states):
        where = f"`transforms[{index}]`"
        kind = state.get("type")
        if kind not in TRANSFORMS:
            allowed = ", ".join(sorted(TRANSFORMS))
            raise RunFileError(path, f"{where} names an unknown transform {show_value(kind)} (allowed: {allowed})")
        fitted = TRANSFORMS[kind].fitted_keys
        for key in fitted:
            expected, accept = FITTED.get(key, ("a value", lambda v: v is not None))
            if key not in state:
                raise RunFileError(path, f"{where} ({kind}) lacks `{key}`, which its fit learned")
            if not accept(state[key]):
                raise RunFileError(path, f"{where}.{key} should be {expected}, got {show_value(state[key])}")
        if "mean" in fitted and "std" in fitted and len(state["mean"]) != len(state["std"]):
            raise RunFileError(path, f"{where} has {len(state['mean'])} means but {len(state['std'])} stds")
        spec = TRANSFORM_SPECS.get(kind)
        if spec is not None:
            options = {k: v for k, v in state.items() if k not in fitted or k in spec.model_fields}
            try:
                spec.model_validate(options)
            except ValidationError as error:
                raise RunFileError(path, f"{where} ({kind}): {describe_validation(error)}") from None
    return states
