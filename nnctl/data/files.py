"""The config's data: a built-in dataset or a user `.npz`/`.csv`, its validation split, and its transforms.

User files go through `npy_reader` (sizes checked before reading, pickles refused) and `array_checks` (rows,
numeric dtypes, finite values), so a file that lies is a located error at load time, in `check` as in `train`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from nnctl.config.resolve import ResolvedConfig
from nnctl.config.yamlfile import ConfigError
from nnctl.data.array_checks import check_finite, check_rows
from nnctl.data.csv_groups import grouped, read_groups
from nnctl.data.npy_reader import read_array_file
from nnctl.errors import NnctlError, clip
from nnctl.named import NamedArrays
from nnctl.host import check_fits, check_regular_file

__all__ = ["Source", "Splits", "data_file", "load_data", "load_source", "read_array_file"]


@dataclass
class Splits:
    """Arrays for each split, after the fitted transforms; `validation`/`test` are None when absent."""

    train: tuple
    validation: tuple | None
    test: tuple | None
    files: list[Path]
    transforms: list = field(default_factory=list)
    csv: dict | None = None  # a CSV's columns and class names, for preprocessing.json (predict matches by name)

    def split(self, name: str) -> tuple:
        found = {"train": self.train, "validation": self.validation, "test": self.test}[name]
        if found is None:
            raise NnctlError(f"this run has no {name} split")
        return found


@dataclass
class Source:
    """The data as loaded, before any split or transform."""

    x: object
    y: np.ndarray
    x_test: object | None
    y_test: np.ndarray | None
    files: list[Path]
    num_words: int | None = None
    csv: dict | None = None  # header, columns, features, target and text classes of a CSV dataset


def _resolve_path(resolved: ResolvedConfig, text: str) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else resolved.base_dir / path


def data_file(resolved: ResolvedConfig) -> Path | None:
    """The user file the config reads (None for built-in datasets)."""
    data = resolved.config.data
    if data.path is not None:
        return _resolve_path(resolved, data.path)
    return _resolve_path(resolved, data.dataset.path) if hasattr(data.dataset, "path") else None


def load_source(resolved: ResolvedConfig) -> Source:
    """The config's dataset as loaded (built-in, .npz or .csv); problems are located at the `data` keys."""
    data = resolved.config.data
    if data.path is not None:
        return _load_npz(resolved, ("data", "path"), _resolve_path(resolved, data.path), "x_train", "y_train",
                         "x_test", "y_test")
    spec = data.dataset
    where = ("data", "dataset")
    if spec.type == "npz":
        return _load_npz(resolved, where + ("path",), _resolve_path(resolved, spec.path), spec.x, spec.y,
                         spec.x_test, spec.y_test)
    if spec.type == "csv":
        return _load_csv(resolved, spec)
    if spec.type == "npy":
        return _load_npy(resolved, spec)
    from nnctl.data.builtin import load_builtin
    options = spec.model_dump(exclude={"type"})
    try:
        loaded = load_builtin(spec.type, **options)
    except NnctlError as err:
        raise ConfigError([resolved.issue(where, str(err))]) from None
    return Source(loaded.x_train, _targets(loaded.y_train), loaded.x_test,
                  None if loaded.y_test is None else _targets(loaded.y_test),
                  list(getattr(loaded, "files", []) or []), options.get("num_words"))


def _targets(y):
    return y if isinstance(y, NamedArrays) else np.asarray(y)


def _arrays_at(resolved, where, path: Path) -> dict[str, np.ndarray]:
    """The arrays of the file the config names at `where`; a missing or unreadable file is located there."""
    try:
        return read_array_file(path)
    except NnctlError as err:
        raise ConfigError([resolved.issue(where, str(err))]) from None


def _checked(resolved, where, path: Path, pairs) -> None:
    """Each (x name, x, y name, y) holds numbers, one row per sample in both, and only finite values."""
    try:
        for x_name, x, y_name, y in pairs:
            check_rows(x, x_name, path.name)
            check_rows(y, y_name, path.name)
            if len(x) != len(y):
                raise NnctlError(f"{path.name}: {x_name} has {len(x)} rows but {y_name} has {len(y)}")
            check_finite(x, x_name, path.name)
            check_finite(y, y_name, path.name)
    except NnctlError as err:
        raise ConfigError([resolved.issue(where, str(err))]) from None


def _load_npz(resolved, where, path: Path, x_key, y_key, x_test_key, y_test_key) -> Source:
    from nnctl.data.named_files import load_named, wants_named

    if path.suffix.lower() != ".npz":
        raise ConfigError([resolved.issue(where, f"expected a .npz file, got '{path.name}'")])
    arrays = _arrays_at(resolved, where, path)
    keys = SimpleNamespace(x=x_key, y=y_key, x_test=x_test_key, y_test=y_test_key)
    if wants_named(resolved, keys):  # several inputs or outputs: an array per name
        x, y, x_test, y_test = load_named(resolved, where, path, arrays, keys)
        for part in (x, y) + ((x_test, y_test) if x_test is not None else ()):
            items = part.items() if isinstance(part, NamedArrays) else [("x", part)]
            _checked(resolved, where, path, [(name, value, name, value) for name, value in items])
        return Source(x, y, x_test, y_test, [path])
    missing = [key for key in (x_key, y_key) if key not in arrays]
    if missing:
        raise ConfigError([resolved.issue(where, f"{path.name} has no {' or '.join(missing)} array "
                                                 f"(it has: {clip(', '.join(sorted(arrays)) or 'nothing')})")])
    pairs = [(x_key, y_key)] + ([(x_test_key, y_test_key)] if x_test_key in arrays else [])
    for xk, yk in pairs:
        if yk not in arrays:
            raise ConfigError([resolved.issue(where, f"{path.name} has {xk} but no {yk}")])
    _checked(resolved, where, path, [(xk, arrays[xk], yk, arrays[yk]) for xk, yk in pairs])
    test = x_test_key in arrays
    return Source(arrays[x_key], arrays[y_key], arrays[x_test_key] if test else None,
                  arrays[y_test_key] if test else None, [path])


def _read_npy(resolved, key: str, text: str) -> tuple[np.ndarray, Path]:
    path = _resolve_path(resolved, text)
    where = ("data", "dataset", key)
    arrays = _arrays_at(resolved, where, path)
    if len(arrays) != 1:
        raise ConfigError([resolved.issue(where, f"{path.name} holds several arrays: use `type: npz` for it")])
    array = next(iter(arrays.values()))
    try:
        check_rows(array, "the array", path.name)
        check_finite(array, "the array", path.name)
    except NnctlError as err:
        raise ConfigError([resolved.issue(where, str(err))]) from None
    return array, path


def _load_npy(resolved, spec) -> Source:
    (x, x_path), (y, y_path) = _read_npy(resolved, "x", spec.x), _read_npy(resolved, "y", spec.y)
    if len(x) != len(y):
        raise ConfigError([resolved.issue(("data", "dataset", "y"), f"x has {len(x)} rows but y has {len(y)}")])
    files, x_test, y_test = [x_path, y_path], None, None
    if spec.x_test or spec.y_test:
        if not (spec.x_test and spec.y_test):
            raise ConfigError([resolved.issue(("data", "dataset"), "give both `x_test` and `y_test`, or neither")])
        (x_test, xt_path), (y_test, yt_path) = (_read_npy(resolved, "x_test", spec.x_test),
                                                _read_npy(resolved, "y_test", spec.y_test))
        files += [xt_path, yt_path]
    return Source(x, y, x_test, y_test, files)


def _load_validation_file(resolved, classes=None) -> tuple:
    """The `data.validation.path` file: a .csv read like the dataset, or a .npz with x_val/y_val (or x/y)."""
    where = ("data", "validation", "path")
    path = _resolve_path(resolved, resolved.config.data.validation.path)
    spec = resolved.config.data.dataset
    if spec is not None and spec.type == "csv":
        return _read_table(resolved, where, path, spec, classes)[:2] + (path,)
    arrays = _arrays_at(resolved, where, path)
    for x_key, y_key in (("x_val", "y_val"), ("x", "y"), ("x_train", "y_train")):
        if x_key in arrays and y_key in arrays:
            _checked(resolved, where, path, [(x_key, arrays[x_key], y_key, arrays[y_key])])
            return arrays[x_key], arrays[y_key], path
    raise ConfigError([resolved.issue(where, f"{path.name} needs arrays x_val and y_val (or x and y); it has: "
                                             f"{clip(', '.join(sorted(arrays)) or 'nothing')}")])


def _load_csv(resolved, spec) -> Source:
    where = ("data", "dataset")
    path = _resolve_path(resolved, spec.path)
    x, y, record = _read_table(resolved, where + ("path",), path, spec)
    x_test = y_test = None
    files = [path]
    if spec.test_path:
        test_path = _resolve_path(resolved, spec.test_path)
        x_test, y_test, _ = _read_table(resolved, where + ("test_path",), test_path, spec, record["classes"])
        files.append(test_path)
    return Source(x, y, x_test, y_test, files, csv=record)


def read_text_file(path: Path) -> str:
    """A CSV's (or text file's) text; a file that is not UTF-8 is an error at the line and column of its first bad byte."""
    data = path.read_bytes()
    try:
        # utf-8-sig: spreadsheet programs start "CSV UTF-8" files with a byte-order mark.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - data.rfind(b"\n", 0, err.start)
        raise NnctlError(f"{path}:{line}: not UTF-8 text (byte 0x{data[err.start]:02x} at column {column}); save "
                         f"the CSV as UTF-8") from None


def _read_table(resolved, where, path: Path, spec, classes=None):
    """(x, y, columns record) of the CSV at `path`: features and target chosen by name or index, text labels
    mapped to ids (the training file's `classes` for a test or validation file), missing cells NaN only when
    the config imputes them."""
    from nnctl.data import csv_table

    try:
        # the text, its lines and the parsed rows together take a few times the file's size
        check_fits(4 * check_regular_file(path).st_size, str(path))
        text = read_text_file(path)
    except (NnctlError, OSError) as err:
        message = str(err) if isinstance(err, NnctlError) else f"cannot read {path}: {err.strerror or err}"
        raise ConfigError([resolved.issue(where, message)]) from None
    key = where
    imputed = any(t.type == "impute" for t in resolved.config.data.transforms)
    try:
        # errors name the file by its name: the config's location points at the full path, and a long path
        # would push the line, column and value out of the one-line message
        table = csv_table.split_table(Path(path.name), text, spec.delimiter, spec.header)
        if grouped(spec):  # several inputs or outputs: column groups by name (data/csv_groups.py)
            return read_groups(table, spec, classes, imputed, lambda part, message: ConfigError(
                [resolved.issue(("data", "dataset") + part if part else where, message)]))
        key = ("data", "dataset", "target")
        target = table.index(spec.target, "target")
        key = ("data", "dataset", "features")
        features = ([table.index(column, "feature") for column in spec.features] if spec.features
                    else [i for i in range(len(table.names)) if i != target])
        if target in features:  # training on the label itself would look like a perfect model
            raise NnctlError(f"{path.name}: column '{clip(table.names[target], 60)}' is the target; it cannot "
                             f"also be a feature")
        key = where
        table.check_widths()
    except ConfigError:
        raise
    except NnctlError as err:
        raise ConfigError([resolved.issue(key, str(err))]) from None
    try:  # only the columns in use must be numbers: an id or name column may stay text
        x = csv_table.numbers(table, features, allow_missing=imputed)
        y, classes = csv_table.labels(table, target, classes)
    except NnctlError as err:
        raise ConfigError([resolved.issue(where, str(err))]) from None
    record = {"header": table.has_header, "columns": table.names, "features": [table.names[i] for i in features],
              "target": table.names[target], "classes": classes}
    return x.astype(np.float32), y.astype(np.float32), record


def load_data(resolved: ResolvedConfig, fold: int | None = None, folds: int | None = None,
              source: Source | None = None) -> Splits:
    """The config's data: split as `data.validation` says (fold `fold` of a K-fold), then transformed with
    transforms fitted on the training part only. A K-fold driver passes the `source` it loaded once."""
    from nnctl.data.transforms import apply_all, build_transforms, fit_apply

    source = source or load_source(resolved)
    files = list(source.files)
    choice = resolved.config.data.validation
    if choice is not None and choice.path is not None and fold is None:
        x_val, y_val, val_path = _load_validation_file(resolved, (source.csv or {}).get("classes"))
        (x, y), validation = (source.x, source.y), (x_val, y_val)
        files.append(val_path)
    else:
        (x, y), validation = _split_validation(resolved, source.x, source.y, fold, folds)
    specs = [spec.model_dump() for spec in resolved.config.data.transforms]
    for spec in specs:
        if spec["type"] == "multi_hot" and spec.get("width") is None and source.num_words:
            spec["width"] = source.num_words
    transforms = build_transforms(specs)
    for part, named in (("x", x), ("y", y)):
        if isinstance(named, NamedArrays) and any(t.target == part for t in transforms):
            raise ConfigError([resolved.issue(("data", "transforms"), f"the data has several named "
                                              f"{'inputs' if part == 'x' else 'targets'} ({', '.join(named.names())}):"
                                              f" transforms work on one array (per-name transforms are not supported "
                                              f"yet); prepare the arrays beforehand")])
    try:
        x, y = fit_apply(transforms, x, y)
        if validation is not None:
            validation = apply_all(transforms, *validation)
        test = apply_all(transforms, source.x_test, source.y_test) if source.x_test is not None else None
    except NnctlError as err:
        raise ConfigError([resolved.issue(("data", "transforms"), str(err))]) from None
    return Splits((x, y), validation, test, files, transforms, source.csv)


def _rows(x, rows):
    return x.take(rows) if hasattr(x, "take") and not isinstance(x, np.ndarray) else x[rows]


def _split_validation(resolved: ResolvedConfig, x, y, fold: int | None = None, folds: int | None = None):
    choice, n = resolved.config.data.validation, len(y)
    if fold is not None:
        size, key = n // (folds or choice.kfold), "kfold"
        # Contiguous parts, as the book's K-fold loop slices the (already shuffled) training data.
        rows = np.roll(np.arange(n), -fold * size)
    elif choice is None or choice.path is not None:
        return (x, y), None
    elif choice.kfold is not None:
        if not 0 < n // choice.kfold < n:  # checked now, before any run directory exists
            raise ConfigError([resolved.issue(("data", "validation", "kfold"), f"{choice.kfold} folds of {n} "
                                                                                f"training rows leave a fold empty")])
        return (x, y), None  # the K-fold driver asks for each fold
    elif choice.holdout is not None:
        size, key = choice.holdout, "holdout"
        rows = np.arange(n)  # the first N rows, as the book holds out IMDB's first 10,000 reviews
    elif not choice.shuffle:
        # Keras's validation_split: the last rows, before any shuffling (split_at = int(n * (1 - split))).
        size, key = n - int(n * (1 - choice.split)), "split"
        rows = np.roll(np.arange(n), size)
    else:
        size, key = int(round(n * choice.split)), "split"
        # Shuffled by default: Keras's last rows are a trap when files are sorted by class.
        rows = np.random.default_rng(resolved.config.seed).permutation(n)
    if not 0 < size < n:
        raise ConfigError([resolved.issue(("data", "validation", key), f"holds out {size} of the {n} training rows: "
                                                                        f"the validation and training parts must "
                                                                        f"both keep at least one row")])
    held, kept = np.sort(rows[:size]), np.sort(rows[size:])
    return (_rows(x, kept), y[kept]), (_rows(x, held), y[held])
