"""`nnctl evaluate` on a K-fold run: every finished fold's model on its own fold's data, then mean ± std.

Fold k's model was trained on data transformed with transforms fitted on fold k's training part: so is its split.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from nnctl.config.build import check_data
from nnctl.data.files import load_data, load_source
from nnctl.errors import NnctlError
from nnctl.runs import records
from nnctl.runs.browse import folds_label
from nnctl.runs.rundir import RunDirectory
from nnctl.train.inference import load_run, save_evaluation


def is_kfold_run(path) -> bool:
    """Whether `path` names a K-fold run (its manifest has `kfold`)."""
    run = RunDirectory.open(path)
    return bool(records.read_manifest(run.path).get("kfold"))


def evaluate_kfold(path, split: str = "test") -> dict:
    """{"folds": n, "folds_planned": K, "label": "4-fold" | "2 of 4 folds", "per_fold": [{figures}, …],
    "mean": {…}, "std": {…}} over the folds that finished; an NnctlError when none did."""
    run = RunDirectory.open(path)
    manifest = records.read_manifest(run.path)
    planned = int(manifest["kfold"])
    done = manifest.get("folds_completed")
    done = planned if done is None and manifest.get("status") == "completed" else int(done or 0)
    if done == 0:
        raise NnctlError(f"{run.path} is a K-fold run in which no fold finished: there is no model to evaluate")
    resolved = records.load_run_config(run.path)
    source = load_source(resolved)  # read once; each fold only splits and transforms it
    per_fold = []
    for fold in range(done):
        loaded = load_run(run.path, f"fold_{fold + 1}/weights.safetensors")
        splits = load_data(resolved, fold=fold, folds=planned, source=source)
        check_data(resolved, loaded.model, splits)
        x, y = splits.split(split)
        per_fold.append({**loaded.model.evaluate(x, y, batch_size=resolved.config.batch_size),
                         "samples": int(len(y))})
    keys = [key for key in per_fold[0] if key != "samples"]
    values = {key: np.array([_number(result[key]) for result in per_fold], dtype=np.float64) for key in keys}
    return {"folds": done, "folds_planned": planned, "label": folds_label(done, planned), "per_fold": per_fold,
            "mean": {key: float(values[key].mean()) for key in keys},
            "std": {key: float(values[key].std()) for key in keys}, "run": run, "loaded": loaded}


def save_kfold_evaluation(result: dict, split: str) -> Path:
    """Records the means under `split` and the standard deviations under `<split> std` in metrics.json."""
    loaded = dataclasses.replace(result["loaded"], weights=None)
    # Validation parts are disjoint (each row once); every fold sees the same test (or its own train) rows.
    counts = [fold["samples"] for fold in result["per_fold"]]
    samples = sum(counts) if split == "validation" else counts[0]
    save_evaluation(loaded, f"{split} std", result["std"])
    return save_evaluation(loaded, split, {**result["mean"], "samples": samples})


def _number(value) -> float:
    return math.nan if value is None else float(value)
