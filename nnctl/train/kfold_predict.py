"""`nnctl predict` on a K-fold run: every finished fold's model predicts the inputs, the outputs are averaged.

Fold k's model was trained on data transformed with transforms fitted on fold k's training part: so are its inputs.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from nnctl.data.files import load_data, load_source
from nnctl.data.transforms import load_transforms
from nnctl.errors import NnctlError, clip
from nnctl.runs import records
from nnctl.runs.browse import folds_label
from nnctl.runs.rundir import RunDirectory
from nnctl.train.inference import LoadedRun, load_run, predict_inputs


def fold_of(weights) -> int | None:
    """k (from 0) when `weights` names a file in a fold's folder (fold_2/weights.safetensors), else None."""
    parts = Path(str(weights)).parts
    match = re.fullmatch(r"fold_([1-9][0-9]{0,3})", parts[0]) if len(parts) > 1 else None
    return int(match.group(1)) - 1 if match else None


def load_folds(path, weights=None) -> tuple[list[LoadedRun], str]:
    """Each finished fold's model with its own fitted transforms, and "3 fold models" or "2 of 4 folds";
    an NnctlError when no fold finished. With `weights` in fold k's folder: that one model, as fold k."""
    run = RunDirectory.open(path)
    manifest = records.read_manifest(run.path)
    planned = int(manifest["kfold"])
    done = manifest.get("folds_completed")
    done = planned if done is None and manifest.get("status") == "completed" else int(done or 0)
    if weights is not None:  # one fold's model: its folder tells which fold's transforms it was trained with
        done, only = planned, fold_of(weights)
    elif done == 0:
        raise NnctlError(f"{run.path} is a K-fold run in which no fold finished: there is no model to predict "
                         f"with; train it again")
    folds, source = [], None
    for fold in range(done) if weights is None else [only]:
        loaded = load_run(run.path, weights or f"fold_{fold + 1}/weights.safetensors")
        own = run.path / f"fold_{fold + 1}" / "preprocessing.json"
        if own.exists():
            loaded.transforms = load_transforms(records.read_preprocessing(own.parent))
        elif loaded.transforms:  # fitted on the whole training data, not on this fold's part: fit them again
            try:
                source = source or load_source(loaded.resolved)
                loaded.transforms = load_data(loaded.resolved, fold=fold, folds=planned, source=source).transforms
            except (NnctlError, OSError) as error:
                raise NnctlError(f"{run.path}: fold {fold + 1}'s transforms were fitted on its own training part "
                                 f"and must be fitted again from the training data, which cannot be read "
                                 f"({clip(str(error), 160)}); restore the data, or train the config again "
                                 f"(a new K-fold run keeps each fold's transforms)") from None
        folds.append(loaded)
    label = f"{done} fold models" if done == planned else folds_label(done, planned)
    return folds, label


def predict_folds(folds: list[LoadedRun], inputs, source: str | None = None) -> np.ndarray:
    """The mean of the fold models' outputs (probabilities for classifiers, values for regression)."""
    outputs = [predict_inputs(loaded, inputs, source) for loaded in folds]
    return np.mean(np.stack(outputs), axis=0).astype(outputs[0].dtype, copy=False)
