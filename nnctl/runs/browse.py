"""Reading run folders back for `nnctl runs` and `nnctl compare`: one record per run, through nnctl.runs.records.

A run may be half-written (killed, still running): `runs` shows what is there and notes each damaged file, a run
named on the command line is read strictly. A K-fold run reads as one run: the per-epoch mean over its folds.
"""

from __future__ import annotations

import math
import os
import re
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from nnctl.direction import higher_is_better
from nnctl.errors import NnctlError
from nnctl.runs import records
from nnctl.runs.config_diff import config_diff, flatten_config  # noqa: F401 (flatten_config: part of this API)
from nnctl.runs.display import display_path
from nnctl.runs.records import RunFileError
from nnctl.runs.rundir import MANIFEST, RunDirectory

NOT_METRICS = ("epoch_time", "lr")  # history keys that describe the training, not the model
_STAMP = re.compile(r"\d{8}-\d{6}(-\d+)?")  # RunDirectory.create's folder names
_SEARCH_DEPTH = 3  # DIR/<name>/<stamp> is 2 deep; a little slack, but never a walk through a whole project


@dataclass
class RunRecord:
    """What one run folder holds. `history` maps a key to its per-epoch values (None where NaN was stored);
    for a K-fold run those are the means over folds and `spread` holds the standard deviations."""

    path: Path
    manifest: dict
    history: dict
    metrics: dict
    config_text: str | None
    folds: int | None = None  # K for a K-fold run
    folds_done: int | None = None  # the folds its figures are over: fewer than K for a partial K-fold run
    spread: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.manifest.get("name") or self.path.parent.name)

    @property
    def status(self) -> str:
        """completed | interrupted | failed, running while its writer lives, stopped once it is gone (killed)."""
        return RunDirectory(self.path).state(self.manifest)

    @property
    def folds_label(self) -> str:
        """"4-fold", or "2 of 4 folds" for a K-fold run that stopped early ("" for other runs)."""
        return folds_label(self.folds_done, self.folds) if self.folds else ""

    @property
    def epochs(self) -> int:
        completed = self.manifest.get("epochs_completed")
        return completed if isinstance(completed, int) else len(self.history.get("loss", []))


def read_run(path, strict: bool = False, config: bool = True, metrics: bool = True) -> RunRecord:
    """The record of the run folder at `path`, every file read through nnctl.runs.records. Files not written
    yet read as empty (the history falls back to events.jsonl while history.json is not written). A damaged
    file is a RunFileError when `strict`; otherwise it reads as empty and its message goes to `problems`.
    `config` and `metrics` say whether config.yaml and metrics.json are read at all."""
    folder = Path(path)
    problems: list[str] = []

    def lenient(read, *args, default=None):
        try:
            return read(*args)
        except NnctlError as error:  # RunFileError, or the config loader's located ConfigError
            if strict:
                raise
            problems.append(str(error).splitlines()[0])
            return {} if default is None else default

    manifest = lenient(records.read_manifest, folder)
    metric_values = lenient(records.read_metrics, folder) if metrics else {}
    config_text = lenient(_config_text, folder, default="") or None if config else None
    folds, done = manifest.get("kfold"), None
    if folds or os.path.lexists(folder / "kfold.json"):
        history, spread, done = _kfold_history(folder, lenient)
        folds = folds if isinstance(folds, int) else len(_fold_folders(folder))
    else:
        history, spread = _history(folder, lenient), {}
    return RunRecord(folder, manifest, history, metric_values, config_text, folds or None, done, spread, problems)


def open_run(path, config: bool = True, metrics: bool = True) -> RunRecord:
    """The record of the run a user named (a run folder, a `latest` link or `runs/<name>`), strictly read: a
    damaged file is a RunFileError naming it; not a run is an NnctlError."""
    return read_run(RunDirectory.open(path).path, strict=True, config=config, metrics=metrics)


def _config_text(folder: Path) -> str:
    """config.yaml's text, once the config loader's YAML parser (safe, bounded) reads a mapping from it: not its
    schema, so a run of an older nnctl still compares. Written before the manifest: a run without it is damaged."""
    from nnctl.config.yamlfile import ConfigError, parse_yaml

    path = folder / "config.yaml"
    text = records.read_config_text(folder)
    try:
        data = parse_yaml(text, str(path)).data
    except ConfigError as error:
        first = str(error).splitlines()[0].removeprefix(str(path) + ":")  # "3:5: invalid YAML: …"
        raise RunFileError(path, f"is not a config: {first}") from None
    if not isinstance(data, dict):
        raise RunFileError(path, "is not a config: it holds no mapping of keys")
    return text


def _clean(history: dict) -> dict:
    """Only lists of numbers (None kept: strict JSON stores NaN as null)."""
    def number(value):
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    return {str(key): [number(v) for v in values] for key, values in history.items() if isinstance(values, list)}


def _history(folder: Path, lenient) -> dict:
    if os.path.lexists(folder / "history.json"):
        return _clean(lenient(records.read_history, folder))
    # Still running or killed: events.jsonl has one line per finished epoch (the last one wins after a resume).
    by_epoch = {event["epoch"]: event for event in lenient(records.read_events, folder, default=[])
                if isinstance(event.get("epoch"), int) and not isinstance(event.get("epoch"), bool)}
    events = []
    while len(events) + 1 in by_epoch:  # epochs 1, 2, … up to the first gap
        events.append(by_epoch[len(events) + 1])
    keys = dict.fromkeys(key for event in events for key in event if key not in ("epoch", "time"))
    return _clean({key: [event.get(key) for event in events] for key in keys})


def _fold_folders(folder: Path) -> list[Path]:
    folds = [path for path in folder.glob("fold_*") if path.is_dir() and path.name[5:].isdigit()]
    return sorted(folds, key=lambda path: int(path.name[5:]))


def _kfold_history(folder: Path, lenient) -> tuple[dict, dict, int]:
    summary = lenient(records.read_kfold, folder) if os.path.lexists(folder / "kfold.json") else {}
    if summary.get("per_epoch") or "folds_planned" in summary:  # its whole folds, of `folds_planned`
        per_epoch = summary.get("per_epoch") or {}
        return (_clean({key: value["mean"] for key, value in per_epoch.items()}),
                _clean({key: value["std"] for key, value in per_epoch.items()}), summary.get("folds") or 0)
    # kfold.json comes last: until then, average the folds that have finished (those with a history.json).
    histories = [_clean(lenient(records.read_history, path)) for path in _fold_folders(folder)
                 if os.path.lexists(path / "history.json")]
    histories = [history for history in histories if history.get("loss")]
    if not histories:
        return {}, {}, 0
    epochs = min(len(history["loss"]) for history in histories)
    means, stds = {}, {}
    for key in histories[0]:
        columns = [[(history.get(key) or [None] * epochs)[epoch] if epoch < len(history.get(key) or []) else None
                    for history in histories] for epoch in range(epochs)]
        means[key] = [None if None in column else statistics.fmean(column) for column in columns]
        stds[key] = [None if None in column else statistics.pstdev(column) for column in columns]  # as np.std
    return means, stds, len(histories)


def folds_label(done: int | None, planned: int | None) -> str:
    """"4-fold" for a complete K-fold run, "2 of 4 folds" for one that stopped early."""
    partial = None not in (done, planned) and done != planned
    return f"{done} of {planned} folds" if partial else f"{planned or done}-fold"


# ---- the figures a run is judged by --------------------------------------------------------------------------
def main_metric(history: dict) -> str | None:
    """The validation key a run is judged by: its first validation metric other than the loss, else `val_loss`
    (also for a model with several outputs, whose `val_<output>_loss` keys show it: no one output's metric judges
    it); None when the run has no validation data."""
    validation = [key for key in history if key.startswith("val_")]
    if any(key.endswith("_loss") and key != "val_loss" for key in validation):
        return "val_loss"
    metrics = [key for key in validation if key != "val_loss"]
    return metrics[0] if metrics else ("val_loss" if validation else None)


def best_value(record: RunRecord, key: str) -> dict | None:
    """{"value", "epoch" (from 1), "std" (K-fold only)} at the best epoch of `key`, or None without a value."""
    values = record.history.get(key, [])
    finite = [(value, index) for index, value in enumerate(values) if value is not None and math.isfinite(value)]
    if not finite:
        return None
    pick = max if higher_is_better(key) else min
    value, index = pick(finite, key=lambda pair: pair[0])  # the first of equal values, like np.argmax
    return {"value": value, "epoch": index + 1, "std": _std_at(record, key, index)}


def final_value(record: RunRecord, key: str) -> dict | None:
    """{"value", "epoch", "std"} of `key` for the saved weights: the last epoch ("epoch": None), or the one
    EarlyStopping restored (metrics.json's `restored_epoch`); None when the run has no such key."""
    values, restored = record.history.get(key, []), record.metrics.get("restored_epoch")
    restored = restored if isinstance(restored, int) and 0 < restored < len(values) else None
    index = restored - 1 if restored else len(values) - 1
    return {"value": values[index], "epoch": restored, "std": _std_at(record, key, index)} if values else None


def _std_at(record: RunRecord, key: str, index: int):
    spread = record.spread.get(key, [])
    return spread[index] if index < len(spread) else None


def _parse_time(text) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return moment if moment.tzinfo else moment.astimezone()


def started_at(record: RunRecord) -> datetime:
    """When the run began: the manifest's `started`, else its folder's name (local time), else the folder's mtime."""
    started = _parse_time(record.manifest.get("started"))
    if started is None and _STAMP.fullmatch(record.path.name):
        started = datetime.strptime(record.path.name[:15], "%Y%m%d-%H%M%S").astimezone()
    if started is None:
        started = datetime.fromtimestamp(record.path.stat().st_mtime, tz=timezone.utc)
    return started


def duration_seconds(record: RunRecord) -> float | None:
    """Wall time from `started` to `ended`; None while the run has not ended."""
    started, ended = _parse_time(record.manifest.get("started")), _parse_time(record.manifest.get("ended"))
    return (ended - started).total_seconds() if started and ended else None


def summarize_run(record: RunRecord) -> dict:
    """One row of `nnctl runs` as plain JSON-ready values."""
    metric = main_metric(record.history)
    best = best_value(record, metric) if metric else None
    test = record.metrics.get("test")
    return {"name": record.name, "path": display_path(record.path), "started": started_at(record).isoformat(),
            "status": record.status, "kfold": record.folds, "folds_done": record.folds_done,
            "folds_label": record.folds_label, "epochs": record.epochs,
            "best": {"metric": metric, "mode": "max" if higher_is_better(metric) else "min", **best} if best else None,
            "test": test if isinstance(test, dict) else None, "duration_s": duration_seconds(record),
            "problems": record.problems}


# ---- finding and comparing runs -------------------------------------------------------------------------------
def _is_run(folder: Path) -> bool:
    # A stamp-named folder counts even without a manifest: a run that died before writing one.
    # A sweep's folder (nnctl/sweep: it holds sweep.yaml) is named like a run but holds runs (its trials).
    return (folder / MANIFEST).is_file() or bool(_STAMP.fullmatch(folder.name)) and not (folder / "sweep.yaml").exists()


def find_runs(root) -> list[Path]:
    """The run folders under `root` (a runs folder, `runs/<name>` or one run); `latest` links are not followed,
    so no run is listed twice, and a run's fold_k folders are part of it."""
    root = Path(root)
    if not root.is_dir():
        raise NnctlError(f"no such folder: {root}")
    if _is_run(root):
        return [root.resolve() if root.is_symlink() else root]  # a `latest` link: the run it names now
    found = []
    for folder, subfolders, _ in os.walk(root):  # followlinks=False: symlinks are listed but never entered
        here = Path(folder)
        if here != root and _is_run(here):
            found.append(here)
            subfolders.clear()
        elif len(here.relative_to(root).parts) >= _SEARCH_DEPTH:
            subfolders.clear()
        else:
            subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
    return found


def list_runs(root) -> list[dict]:
    """`summarize_run` of every run under `root`, the earliest start first."""
    records = [read_run(path, config=False) for path in find_runs(root)]  # a listing shows no config
    records.sort(key=lambda record: (started_at(record), str(record.path)))
    return [summarize_run(record) for record in records]


def run_labels(records: list[RunRecord]) -> list[str]:
    """A short label per run: its name, or name/<stamp folder> when two runs share a name."""
    names = [record.name for record in records]
    labels = [f"{name}/{record.path.name}" if names.count(name) > 1 else name for name, record in zip(names, records)]
    return [f"{label} #{index + 1}" if labels.count(label) > 1 else label for index, label in enumerate(labels)]


def compare_runs(paths) -> dict:
    """Side by side: {"labels", "paths", "rows": [(row name, [cell per run])], "config": config_diff(...),
    "problems"}. A cell is None, a string, or {"value", "epoch", "std"}."""
    records = [open_run(path) for path in paths]  # strict: a damaged file of a named run is an error
    keys = list(dict.fromkeys(key for record in records for key in record.history if key not in NOT_METRICS))
    rows = [("status", [record.status + (f" ({record.folds_label})" if record.folds else "") for record in records]),
            ("epochs", [str(record.epochs) for record in records])]
    for key in keys:
        rows.append((f"{key} final", [final_value(record, key) for record in records]))
        rows.append((f"{key} best", [best_value(record, key) for record in records]))
    tests = [record.metrics.get("test") if isinstance(record.metrics.get("test"), dict) else {} for record in records]
    for key in dict.fromkeys(key for test in tests for key in test if key != "samples"):
        rows.append((f"test {key}", [{"value": test[key], "epoch": None, "std": None} if key in test else None
                                     for test in tests]))
    rows.append(("duration", [format_duration(duration_seconds(record)) for record in records]))
    return {"labels": run_labels(records), "paths": [display_path(record.path) for record in records], "rows": rows,
            "config": config_diff([record.config_text for record in records]),
            "problems": [f"{display_path(record.path)}: {problem}" for record in records
                         for problem in record.problems]}


# ---- text for tables -----------------------------------------------------------------------------------------
def format_cell(cell) -> str:
    """"0.9000", "0.8662 ± 0.0071 (epoch 3)", "nan", or "" for no value."""
    if cell is None:
        return ""
    if isinstance(cell, str):
        return cell
    value = cell.get("value")
    text = "nan" if value is None else f"{value:.4f}"
    if cell.get("std") is not None:
        text += f" ± {cell['std']:.4f}"
    if cell.get("epoch") is not None:
        text += f" (epoch {cell['epoch']})"
    return text


def format_duration(seconds: float | None) -> str:
    """"<1 s", "42 s", "3 min 05 s", "2 h 07 min"; "" when unknown."""
    if seconds is None:
        return ""
    seconds = round(seconds)
    if seconds < 1:
        return "<1 s"
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def format_started(iso: str) -> str:
    """An ISO time as local "YYYY-mm-dd HH:MM:SS"."""
    return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")


RUN_COLUMNS = [("name", "left"), ("started", "left"), ("status", "left"), ("epochs", "right"),
               ("best validation", "left"), ("test", "left"), ("duration", "right")]


def shown_test_metric(judged: str | None, test: dict) -> str:
    """The test figure a row shows: that of the metric the run is judged by, else its first metric other than
    the loss (accuracy, MAE, … also for a run without validation data), else the loss."""
    judged = judged.removeprefix("val_") if judged else None
    if judged in test and judged != "loss":
        return judged
    return next((key for key in test if key not in ("loss", "samples") and not key.startswith("val_")
                 and not key.endswith("_loss")), "loss")


def run_row(summary: dict) -> list[str]:
    """One `summarize_run` result as the text cells of RUN_COLUMNS."""
    best, test = summary["best"], summary["test"] or {}
    shown = shown_test_metric(best["metric"] if best else None, test)
    return [summary["name"] + (f" ({summary['folds_label']})" if summary["kfold"] else ""),
            format_started(summary["started"]), summary["status"], str(summary["epochs"]),
            f"{best['metric']} {format_cell(best)}" if best else "",
            f"{shown} {format_cell({'value': test[shown]})}" if isinstance(test.get(shown), (int, float)) else "",
            format_duration(summary["duration_s"])]
