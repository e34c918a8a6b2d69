"""K-fold cross-validation (the book's Boston workflow): K models, one run directory, mean ± std per epoch.

Fold k validates on the k-th contiguous part of the training data and trains on the rest, each fold with
its own freshly initialized model (seed + k) and transforms fitted on its own training part.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnctl.config.build import build_model, check_data
from nnctl.config.device import place
from nnctl.config.resolve import ResolvedConfig
from nnctl.direction import higher_is_better
from nnctl.data.files import load_data, load_source
from nnctl.runs.browse import folds_label
from nnctl.runs.rundir import RunDirectory
from nnctl.train.session import Prepared, _now, begin_run, fit_into, prepare
from nnctl.train.session_callbacks import failure_message


@dataclass
class KFoldResult:
    run: RunDirectory
    status: str
    folds: list[dict]  # each fold's history
    summary: dict      # kfold.json: per-epoch mean and std of every history key, and the final figures
    error: str | None = None
    stopped_in: int | None = None  # the fold (from 1) that did not complete


def _fold_config(resolved: ResolvedConfig, fold: int) -> ResolvedConfig:
    config = resolved.config.model_copy(deep=True)
    config.seed = resolved.config.seed + fold
    return ResolvedConfig(config, resolved.doc, resolved.base_dir)


def summarize(histories: list[dict]) -> dict:
    """Per-epoch mean and std over folds of every numeric history key (over the epochs all folds reached)."""
    epochs = min(len(h.get("loss", [])) for h in histories)
    per_epoch = {}
    for key in histories[0]:
        values = np.array([h[key][:epochs] for h in histories], dtype=np.float64)
        per_epoch[key] = {"mean": values.mean(axis=0).tolist(), "std": values.std(axis=0).tolist()}
    final = {key: {"mean": stats["mean"][-1], "std": stats["std"][-1]} for key, stats in per_epoch.items()
             if key not in ("epoch_time", "lr") and epochs}
    best = {}
    for key, stats in per_epoch.items():
        if key.startswith("val_") and epochs:
            pick = np.argmax if higher_is_better(key) else np.argmin
            index = int(pick(stats["mean"]))
            best[key] = {"epoch": index + 1, "mean": stats["mean"][index], "std": stats["std"][index]}
    return {"folds": len(histories), "epochs": epochs, "per_epoch": per_epoch, "final": final, "best": best}


def train_kfold(resolved: ResolvedConfig, runs_dir="runs", folds: int | None = None, progress_for=None,
                prepared: Prepared | None = None, on_fold_end=None, client=None) -> KFoldResult:
    """Trains `folds` models (default: `data.validation.kfold`) into fold_1/ … fold_K/ of one run directory.

    `progress_for(fold, folds)` gives each fold's progress callback; `on_fold_end(fold, folds, history)` is
    called after each fold. With a Dask `client`, the folds train at once on its workers.
    """
    RunDirectory.check_new(runs_dir, resolved.config.name)  # before the data is read: fail fast
    prepared = prepared or prepare(resolved)
    return train_kfold_into(RunDirectory.create(runs_dir, resolved.config.name), resolved, prepared, folds,
                            progress_for, on_fold_end, client)


def train_kfold_into(run: RunDirectory, resolved: ResolvedConfig, prepared: Prepared, folds: int | None = None,
                     progress_for=None, on_fold_end=None, client=None) -> KFoldResult:
    """`train_kfold` into the run folder `run`, already made (a sweep's trial folder, for one)."""
    folds = folds or resolved.config.data.validation.kfold
    with run.lock():
        begin_run(run, resolved, prepared)
        run.update_manifest(kfold=folds)
        return _train_folds(run, resolved, folds, progress_for, prepared, on_fold_end, client)


def train_fold(resolved, fold: int, folds: int, run_path, source=None, progress=None) -> dict:
    """Trains fold `fold` (from 0) into `run_path/fold_<fold + 1>`; what the run's bookkeeping needs of it.
    Runs where it is called: in the K-fold driver, or on a Dask worker (`nnctl kfold --workers`), with the
    same bytes either way (the fold's seed and data split do not depend on where it runs)."""
    fold_resolved = _fold_config(resolved, fold)
    began = time.perf_counter()
    splits = load_data(resolved, fold=fold, folds=folds, source=source or load_source(resolved))
    model = build_model(fold_resolved, input_shape=tuple(splits.train[0].shape[1:]), rows=splits.train[0].shape[0])
    check_data(fold_resolved, model, splits)
    place(fold_resolved, model)  # each fold on the device the run trains on
    done = {"fold": fold, "load": time.perf_counter() - began, "history": None}
    folder = RunDirectory(Path(run_path) / f"fold_{fold + 1}")
    try:
        folder.path.mkdir()
        outcome = fit_into(folder, fold_resolved, Prepared(splits, model, 0.0), progress, resumable=False)
        # The fold's own fitted transforms: predict reapplies them to new inputs without the training data.
        if outcome.status == "completed":
            folder.write_json("preprocessing.json", {"transforms": [t.state() for t in splits.transforms]})
    except OSError as err:  # the fold's folder or callbacks could not be made: a failure during training
        return {**done, "status": "failed", "error": failure_message(err)}
    return {**done, "history": outcome.history, "status": outcome.status, "error": outcome.error,
            "compiled": outcome.kernels_compiled, "compile": outcome.compile_seconds,
            "validate": outcome.validate_seconds, "train": outcome.train_seconds - outcome.validate_seconds,
            "write": outcome.write_seconds}


def _fold_results(run, resolved, folds, progress_for, on_fold_end, client):
    """Each fold's `train_fold` result in fold order: one after another, or all at once on a Dask `client`."""
    if client is not None:
        futures = [client.submit(train_fold, resolved, fold, folds, str(run.path), pure=False)
                   for fold in range(folds)]
        for future in futures:
            result = future.result()
            if on_fold_end is not None and result["history"] is not None:
                on_fold_end(result["fold"], folds, result["history"])
            yield result
        return
    source = load_source(resolved)  # read once; each fold only splits and transforms it
    for fold in range(folds):
        result = train_fold(resolved, fold, folds, run.path, source, progress_for(fold, folds) if progress_for
                            else None)
        if on_fold_end is not None and result["history"] is not None:
            on_fold_end(fold, folds, result["history"])
        yield result
        if result["status"] != "completed":
            return


def _train_folds(run, resolved, folds, progress_for, prepared, on_fold_end, client=None) -> KFoldResult:
    histories, status, error, stopped_in = [], "completed", None, None
    phases = {"load": prepared.seconds, "compile": 0.0, "train": 0.0, "validate": 0.0, "write": 0.0}
    compiled = 0
    for result in _fold_results(run, resolved, folds, progress_for, on_fold_end, client):
        phases["load"] += result["load"]
        if result["history"] is None:
            status, error, stopped_in = "failed", result["error"], result["fold"] + 1
            break
        histories.append(result["history"])
        compiled += result["compiled"]
        for phase in ("compile", "validate", "train", "write"):
            phases[phase] += result[phase]
        if result["status"] != "completed":
            status, error, stopped_in = result["status"], result["error"], result["fold"] + 1
            break
    # Only whole folds are summarized: a fold stopped part-way would pass its early epochs off as the mean.
    finished = histories[:stopped_in - 1] if stopped_in else histories
    summary = summarize(finished) if finished and all(h.get("loss") for h in finished) else {}
    summary["folds_planned"] = folds  # `folds` of `folds_planned`: a partial K-fold says so everywhere
    try:
        run.write_json("kfold.json", summary)
        run.write_json("metrics.json", {"kfold": summary.get("final", {}), "best": summary.get("best", {}),
                                        "folds": summary.get("folds", 0), "folds_planned": folds})
        run.update_manifest(status=status, ended=_now(), folds_completed=len(histories) - (status != "completed"),
                            error=error, kernels_compiled=compiled, compile_seconds=round(phases["compile"], 3),
                            phases={k: round(v, 4) for k, v in phases.items()})
    except OSError as err:
        status, error = "failed", "; ".join(part for part in (error, failure_message(err)) if part)
    run.release_latest()  # no fold finished an epoch: `latest` goes back to the newest run with weights
    return KFoldResult(run, status, histories, summary, error, stopped_in)


def summary_title(summary: dict) -> str:
    """"4-fold cross-validation, 80 epochs", or "partial cross-validation: 2 of 4 folds, 80 epochs"."""
    done, planned = summary.get("folds"), summary.get("folds_planned")
    label = folds_label(done, planned)
    title = f"{label} cross-validation" if planned in (None, done) else f"partial cross-validation: {label}"
    return f"{title}, {summary.get('epochs')} epochs"


def partial_note(result: KFoldResult) -> str:
    """What a K-fold run that stopped early holds: never the K-fold figure."""
    done, planned = result.summary.get("folds", 0), result.summary.get("folds_planned")
    held = f"the figures are of {folds_label(done, planned)} only" if done else "no fold finished: no K-fold figures"
    return f"{result.status} in fold {result.stopped_in} of {planned}: {held}"


def format_mean_std(stats: dict) -> str:
    mean, std = stats["mean"], stats["std"]
    return "nan" if math.isnan(mean) else f"{mean:.4f} ± {std:.4f}"
