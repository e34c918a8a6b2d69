"""Mutated CSV files (seeded) through training's reader and predict's: each is read, or refused with one line that
names the file; never another exception. A few hundred cases in CI, thousands under `slow`."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from nnctl.config import load_config
from nnctl.config.yamlfile import ConfigError
from nnctl.data.files import load_data
from nnctl.data.transforms import build_transforms
from nnctl.errors import NnctlError
from nnctl.train.inference import CsvInputs, _read_csv
from tests.data import sklearn_like

PALETTE = [",", "\n", '"', "N", "A", " ", "\t", "\0", "é", "1", ".", "e", "-", "x", ";", "?", "inf", "nan", "\r"]


def mutate(text: str, rng) -> str:
    for _ in range(int(rng.integers(1, 4))):
        at = int(rng.integers(0, max(1, len(text))))
        kind = int(rng.integers(0, 5))
        if kind == 0:
            text = text[:at] + text[at + 1:]
        elif kind == 1:
            text = text[:at] + PALETTE[int(rng.integers(0, len(PALETTE)))] + text[at:]
        elif kind == 2:
            lines = text.splitlines()
            pick = int(rng.integers(0, max(1, len(lines))))
            text = "\n".join(lines[:pick + 1] + lines[pick:pick + 1] + lines[pick + 1:])
        elif kind == 3:
            text = text[:at]
        else:
            text = text[:at] + "x" * int(rng.integers(50, 500)) + text[at:]
    return text


def run_cases(folder, count: int, seed: int):
    good = sklearn_like.iris(folder / "good.csv", rows=8).read_text()
    config = folder / "c.yaml"
    outcomes = {"read": 0, "refused": 0}
    for case in range(count):
        rng = np.random.default_rng([seed, case])
        impute = case % 2 == 0
        (folder / "t.csv").write_text(mutate(good, rng), encoding="utf-8")
        config.write_text("data:\n  dataset: {type: csv, path: t.csv, target: species}\n"
                          + ("  transforms: [impute]\n" if impute else "")
                          + "model:\n  layers: [{type: dense, units: 3}]\nloss: mse\n", encoding="utf-8")
        resolved = load_config(config)
        try:
            splits = load_data(resolved)
        except ConfigError as error:
            message = str(error)
            assert "\n" not in message and "t.csv" in message and len(message) < 400 + len(str(folder)), message
            outcomes["refused"] += 1
        else:
            x, y = splits.train
            assert x.dtype == np.float32 and np.isfinite(x).all() and np.isfinite(y).all()
            outcomes["read"] += 1
        # predict's reader against the good file's columns
        (folder / "preprocessing.json").write_text(json.dumps({"transforms": [], "csv": {
            "header": True, "columns": sklearn_like.IRIS, "features": sklearn_like.IRIS[:4], "target": "species",
            "classes": ["setosa", "versicolor", "virginica"]}}))
        transforms = build_transforms([{"type": "impute"}] if impute else [])
        loaded = SimpleNamespace(run=SimpleNamespace(path=folder), resolved=resolved, transforms=transforms)
        try:
            x = _read_csv(loaded, CsvInputs(folder / "x.csv", mutate(good, rng)))
        except NnctlError as error:
            assert "\n" not in str(error) and "x.csv" in str(error), str(error)
        else:
            assert x.shape[1] == 4 and (impute or not np.isnan(x).any())
    return outcomes


def test_mutated_csv_files_are_read_or_refused_in_one_line(tmp_path):
    outcomes = run_cases(tmp_path, 300, seed=15)
    assert outcomes["read"] > 20 and outcomes["refused"] > 20, outcomes


@pytest.mark.slow
@pytest.mark.long
def test_mutated_csv_files_many(tmp_path):
    run_cases(tmp_path, 5000, seed=1515)
