"""The one validating reader of a run folder's files: JSON records through pydantic models, tensors against the model.

Any damage (missing, torn, wrong types, a folder or a dangling link in a file's place) is a RunFileError that names it.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from nnctl.errors import NnctlError

MAX_JSON_BYTES = 256 << 20  # far above any record nnctl writes; refuses a file that would only exhaust memory
MAX_DEPTH = 64  # nnctl's records nest at most 5 deep; deeper input is damage, and would overflow recursive code
_SHOWN = 60  # characters of a damaged value quoted back
MAX_SAMPLE_SIZE = 1 << 28  # values in one input sample (1 GiB of float32): a larger input shape is damage


class RunFileError(NnctlError):
    """A file of a run folder is missing or damaged: `str()` is "RUN/file: what is wrong"."""

    def __init__(self, path, problem: str):
        self.path, self.problem = Path(path), problem
        super().__init__(f"{path}: {problem}")


# ---- bytes, text and JSON ------------------------------------------------------------------------------------
def read_bytes(path, limit: int | None = None) -> bytes:
    """The bytes of the regular file at `path`; what stands in its place (nothing, a folder, a dangling link, a
    link loop, a FIFO) is a RunFileError. O_NONBLOCK so a FIFO cannot block the open."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise RunFileError(path, "is a symlink to nowhere" if path.is_symlink() else "file is missing") from None
    except OSError as error:
        raise RunFileError(path, _os_problem(error)) from None
    try:  # checked on the descriptor before wrapping it: io refuses a folder's with its own error
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise RunFileError(path, "is a folder, not a file")
        if not stat.S_ISREG(info.st_mode):
            raise RunFileError(path, "is not a regular file (a FIFO, socket or device)")
        if limit is not None and info.st_size > limit:
            raise RunFileError(path, f"is {info.st_size:,} bytes, more than nnctl ever writes there ({limit:,})")
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as handle:
        try:
            return handle.read()
        except OSError as error:
            raise RunFileError(path, _os_problem(error)) from None


def _os_problem(error: OSError) -> str:
    if error.errno == errno.ELOOP:
        return "is a symlink loop"
    if error.errno == errno.EISDIR:
        return "is a folder, not a file"
    return f"cannot be read ({error.strerror or error})"


def read_text(path) -> str:
    """The UTF-8 text of the file at `path`, or a RunFileError."""
    data = read_bytes(path, MAX_JSON_BYTES)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RunFileError(path, f"is not UTF-8 text (byte {error.start})") from None


def parse_json(data: bytes | str, path, nan_as_null: bool = True) -> Any:
    """`data` parsed as JSON, NaN/±Infinity read as null (how nnctl's records store them) unless not
    `nan_as_null`; a RunFileError when it is empty, not UTF-8, not JSON, or nested deeper than MAX_DEPTH."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise RunFileError(path, f"is not UTF-8 text (byte {error.start})") from None
    if not data.strip():
        raise RunFileError(path, "is empty")
    try:
        value = json.loads(data, parse_constant=(lambda _: None) if nan_as_null else float)
    except RecursionError:
        raise RunFileError(path, f"nests deeper than {MAX_DEPTH} levels") from None
    except ValueError as error:  # JSONDecodeError, or an integer of too many digits
        where = f"line {error.lineno}, column {error.colno}: " if isinstance(error, json.JSONDecodeError) else ""
        raise RunFileError(path, f"is not valid JSON ({where}{_clip(getattr(error, 'msg', str(error)))})") from None
    if _depth(value) > MAX_DEPTH:
        raise RunFileError(path, f"nests deeper than {MAX_DEPTH} levels")
    return value


def _depth(value) -> int:
    # Iterative, so a deep (but parseable) value cannot overflow the stack here.
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            if level > MAX_DEPTH:
                return level
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def read_json(path) -> Any:
    """The JSON value in the file at `path`, or a RunFileError."""
    return parse_json(read_bytes(path, MAX_JSON_BYTES), path)


def _clip(text: str) -> str:
    text = str(text)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "…"


def _show(value) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return _clip(json.dumps(value) if isinstance(value, str) else repr(value))


def _where(loc) -> str:
    # A key is data too: a damaged file's 10,000-character key is cut like any other value.
    parts = [part if isinstance(part, int) else (str(part) if len(str(part)) <= 40 else str(part)[:39] + "…")
             for part in loc]
    return "".join(f"[{part}]" if isinstance(part, int) else (f".{part}" if i else part)
                   for i, part in enumerate(parts))


_EXPECTED = {"int_type": "an integer", "float_type": "a number", "string_type": "a string", "dict_type": "a mapping",
             "list_type": "a list", "bool_type": "true or false", "finite_number": "a finite number",
             "model_type": "a mapping", "model_attributes_type": "a mapping"}


def describe_validation(error: ValidationError, shown: int = 2) -> str:
    """The first problems of a pydantic error as "`key.path` should be …, got …": up to `shown` of them, as many
    as fit in about 160 characters, so that the whole message stays one readable line."""
    parts = []
    for issue in error.errors()[:shown]:
        key = f"`{_where(issue['loc'])}` " if issue["loc"] else ""
        if issue["type"] in ("missing", "extra_forbidden"):
            part = f"{key}is missing" if issue["type"] == "missing" else f"{key}is not a key this file has"
        else:
            expected = _EXPECTED.get(issue["type"])
            message = f"should be {expected}" if expected else issue["msg"].replace("Input should be", "should be")
            part = f"{key}{message[0].lower() + message[1:]}, got {_show(issue.get('input'))}"
        if parts and len("; ".join(parts + [part])) > 160:
            break
        parts.append(part)
    more = error.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _kind(value) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "true/false", type(None): "null"}.get(
        type(value), "a number")


def validate(model, value, path):
    """`value` validated by `model` (a pydantic model or TypeAdapter); a RunFileError naming `path` otherwise."""
    if not isinstance(value, dict):
        raise RunFileError(path, f"holds {_kind(value)}, expected a JSON object (mapping)")
    try:
        return model.validate_python(value) if isinstance(model, TypeAdapter) else model.model_validate(value)
    except ValidationError as error:
        raise RunFileError(path, describe_validation(error)) from None
    except RecursionError:  # defence in depth: parse_json already bounds the nesting
        raise RunFileError(path, f"nests deeper than {MAX_DEPTH} levels") from None


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
    train: Optional[Figures] = None
    validation: Optional[Figures] = None
    test: Optional[Figures] = None
    kfold: Optional[dict[Key, MeanStd]] = None
    best: Optional[dict[Key, Best]] = None


class KFoldSummary(Closed):
    folds: Optional[int] = Field(None, ge=1)
    epochs: Optional[int] = Field(None, ge=0)
    per_epoch: dict[Key, Series] = Field(default_factory=dict)
    final: dict[Key, MeanStd] = Field(default_factory=dict)
    best: dict[Key, Best] = Field(default_factory=dict)


class Preprocessing(Closed):
    transforms: list[dict]


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
        raise RunFileError(Path(folder) / "manifest.json", f"`input_shape` {_clip(shape)} holds more than "
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
    return _checked(KFoldSummary, path)


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

    path = Path(folder) / "config.yaml"
    read_bytes(path, MAX_JSON_BYTES)
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
          "mean": ("a list of numbers", _finite_list),
          "std": ("a list of positive numbers", lambda v: _finite_list(v, positive=True))}


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
            raise RunFileError(path, f"{where} names an unknown transform {_show(kind)} (allowed: {allowed})")
        fitted = TRANSFORMS[kind].fitted_keys
        for key in fitted:
            expected, accept = FITTED.get(key, ("a value", lambda v: v is not None))
            if key not in state:
                raise RunFileError(path, f"{where} ({kind}) lacks `{key}`, which its fit learned")
            if not accept(state[key]):
                raise RunFileError(path, f"{where}.{key} should be {expected}, got {_show(state[key])}")
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
