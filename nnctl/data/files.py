"""User data files (`.npz` with x_train/y_train[/x_test/y_test]) and the validation split of a config.

Pickled object arrays are refused: a user file is read with `allow_pickle=False`.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnctl.config.resolve import ResolvedConfig
from nnctl.config.yamlfile import ConfigError
from nnctl.errors import NnctlError


@dataclass
class Splits:
    """Arrays for each split; `validation` and `test` are None when the config or file has none."""

    train: tuple
    validation: tuple | None
    test: tuple | None
    path: Path

    def split(self, name: str) -> tuple:
        found = {"train": self.train, "validation": self.validation, "test": self.test}[name]
        if found is None:
            raise NnctlError(f"this run has no {name} split" + (" (the data file has no x_test/y_test)"
                                                                 if name == "test" else ""))
        return found


def data_file(resolved: ResolvedConfig) -> Path:
    path = Path(resolved.config.data.path).expanduser()
    return path if path.is_absolute() else resolved.base_dir / path


def read_array_file(path: Path) -> dict[str, np.ndarray]:
    """Every array in a `.npy` (as "x") or `.npz` file; NnctlError for anything unreadable or pickled."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return {"x": loaded}
        with loaded:
            return {key: loaded[key] for key in loaded.files}
    except FileNotFoundError:
        raise NnctlError(f"no such file: {path}") from None
    except ValueError as err:
        if "pickle" in str(err):
            raise NnctlError(f"{path} holds pickled Python objects, which nnctl does not read from user files: "
                             f"save plain numeric arrays") from None
        raise NnctlError(f"cannot read {path}: {err}") from None
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        raise NnctlError(f"cannot read {path}: {err}") from None


def load_data(resolved: ResolvedConfig) -> Splits:
    """The config's data, split as `data.validation` says; problems are located at the `data` keys."""
    cfg, path = resolved.config.data, data_file(resolved)
    if path.suffix.lower() != ".npz":
        raise ConfigError([resolved.issue(("data", "path"), f"expected a .npz file with x_train and y_train, "
                                                            f"got '{path.name}'")])
    if not path.is_file():
        raise ConfigError([resolved.issue(("data", "path"), f"no such file: {path}")])
    try:
        arrays = read_array_file(path)
    except NnctlError as err:
        raise ConfigError([resolved.issue(("data", "path"), str(err))]) from None
    missing = [key for key in ("x_train", "y_train") if key not in arrays]
    if missing:
        raise ConfigError([resolved.issue(("data", "path"), f"{path.name} has no {' or '.join(missing)} array "
                                                            f"(it has: {', '.join(sorted(arrays)) or 'nothing'})")])
    pairs = {}
    for split in ("train", "test"):
        if f"x_{split}" not in arrays:
            continue
        x, y = arrays[f"x_{split}"], arrays.get(f"y_{split}")
        if y is None:
            raise ConfigError([resolved.issue(("data", "path"), f"{path.name} has x_{split} but no y_{split}")])
        if len(x) != len(y):
            raise ConfigError([resolved.issue(("data", "path"), f"{path.name}: x_{split} has {len(x)} rows but "
                                                                f"y_{split} has {len(y)}")])
        if x.dtype.kind not in "biuf" or y.dtype.kind not in "biuf":
            raise ConfigError([resolved.issue(("data", "path"), f"{path.name}: x_{split} and y_{split} must be "
                                                                f"numeric, got {x.dtype} and {y.dtype}")])
        pairs[split] = (x, y)
    train, validation = _split_validation(resolved, *pairs["train"])
    return Splits(train, validation, pairs.get("test"), path)


def _split_validation(resolved: ResolvedConfig, x, y):
    choice, n = resolved.config.data.validation, len(x)
    if choice is None:
        return (x, y), None
    if choice.holdout is not None:
        size, key = choice.holdout, "holdout"
        rows = np.arange(n)  # the first N rows, as the book holds out IMDB's first 10,000 reviews
    else:
        size, key = int(round(n * choice.split)), "split"
        # Shuffled: Keras's validation_split takes the *last* rows, a trap when files are sorted by class.
        rows = np.random.default_rng(resolved.config.seed).permutation(n)
    if not 0 < size < n:
        raise ConfigError([resolved.issue(("data", "validation", key), f"leaves {n - size} training and {size} "
                                                                        f"validation rows of {n}: both must be ≥ 1")])
    held, kept = np.sort(rows[:size]), np.sort(rows[size:])
    return (x[kept], y[kept]), (x[held], y[held])
