"""One `nnctl train`: check everything, create the run directory, compile, fit, and record the result.

Nothing here prints: the progress reporter is a callback handed in by the caller.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from nnctl.config.build import build_model, check_data, make_callback
from nnctl.config.device import check_gpu, place
from nnctl.config.resolve import ResolvedConfig
from nnctl.config.yamlfile import ConfigError
from nnctl.data.files import Splits, load_data
from nnctl.nn.callbacks import Callback, Checkpointer, History, TerminateOnNaN
from nnctl.nn.checkpoint import Snapshot, restore, verify
from nnctl.runs.rundir import RunDirectory, describe_os_error, environment_versions, sha256_bytes, sha256_file
from nnctl.train.session_callbacks import (EventLog, InterruptHandler, RewindOnStop, failure_message,
                                           kept_checkpoint_note, nonfinite_message)
from nnctl.train.session_callbacks import now as _now
from nnctl.train.progress import phase_of
from nnctl.train.warmup import warm_up

CHECKPOINT = "checkpoints/last.safetensors"  # the state `nnctl train --resume` continues from


@dataclass
class TrainResult:
    run: RunDirectory
    status: str  # completed | interrupted | failed
    history: dict
    error: str | None = None
    timings: dict = field(default_factory=dict)


@dataclass
class Prepared:
    """What `prepare` checked and built, and how long reading the data and building took."""

    splits: Splits
    model: object
    seconds: float


def prepare(resolved: ResolvedConfig) -> Prepared:
    """The data and the compiled model, after every check that needs no training; a ConfigError otherwise."""
    began = time.perf_counter()
    gpu_issues = check_gpu(resolved)
    if gpu_issues:
        raise ConfigError(gpu_issues)
    splits = load_data(resolved)
    model = build_model(resolved, input_shape=tuple(splits.train[0].shape[1:]),
                        rows=splits.train[0].shape[0])
    check_data(resolved, model, splits)
    place(resolved, model)
    return Prepared(splits, model, time.perf_counter() - began)


def run_config_text(resolved: ResolvedConfig) -> str:
    """The resolved config as the run saves it: file paths made absolute, so the run finds its data later."""
    config = resolved.config.model_copy(deep=True)
    paths = [(config.data, "path"), (config.data.validation, "path")]
    paths += [(config.data.dataset, key) for key in ("path", "test_path", "x", "y", "x_test", "y_test")
              if getattr(config.data.dataset, "type", None) in ("npz", "csv", "npy")
              and not (config.data.dataset.type == "npz" and key in ("x", "y", "x_test", "y_test"))]
    for holder, key in paths:
        if getattr(holder, key, None):
            path = Path(getattr(holder, key)).expanduser()
            setattr(holder, key, str(path if path.is_absolute() else (resolved.base_dir / path).resolve()))
    # Every plugin file the config loaded (listed, or found beside it for a `module:Class` type), absolute.
    config.plugins = list(dict.fromkeys([str((resolved.base_dir / Path(text).expanduser()).resolve())
                                         for text in config.plugins]
                                        + [plugin.source for plugin in resolved.plugins if plugin.sha256]))
    for layer in config.model.layers:  # a nested model's config and trained run (config/nested.py)
        for key in ("config", "weights") if layer.type == "model" else ():
            if getattr(layer, key):
                setattr(layer, key, str((resolved.base_dir / Path(getattr(layer, key)).expanduser()).resolve()))
    return ResolvedConfig(config, resolved.doc, resolved.base_dir).to_yaml()


def begin_run(run: RunDirectory, resolved: ResolvedConfig, prepared: Prepared) -> None:
    """Writes the resolved config, the manifest (status running) and preprocessing.json into the new `run`.
    A failed write removes the folder again (nothing was trained) and raises the RunWriteError."""
    cfg, splits = resolved.config, prepared.splits
    try:
        config_text = run_config_text(resolved)
        run.write_text("config.yaml", config_text)
        run.update_manifest(status="running", name=cfg.name, seed=cfg.seed, device=prepared.model.device,
                            started=_now(), input_shape=list(prepared.model.input_shape),
                            versions=environment_versions(), config_sha256=sha256_bytes(config_text.encode()),
                            data=[{"path": str(path.resolve()), "sha256": sha256_file(path)} for path in splits.files],
                            plugins=_unique([plugin.record() for plugin in resolved.plugins]))
        run.write_json("preprocessing.json", {"transforms": [t.state() for t in splits.transforms],
                                              **({"csv": splits.csv} if splits.csv else {})})
    except OSError as error:
        shutil.rmtree(run.path, ignore_errors=True)  # half a run would be listed as one running forever
        raise describe_os_error(error, doing="read") from None  # a RunWriteError (a failed write) stays as it is


def _unique(records: list[dict]) -> list[dict]:
    return [dict(items) for items in dict.fromkeys(tuple(record.items()) for record in records)]


@dataclass
class FitOutcome:
    status: str
    error: str | None
    history: dict
    compile_seconds: float
    kernels_compiled: int
    train_seconds: float
    write_seconds: float
    validate_seconds: float = 0.0
    first_step_time: float | None = None  # Unix time when training began (after compilation), for start-up figures
    test_seconds: float = 0.0  # evaluating the test split after training (part of the results, not of writing)


def fit_into(folder: RunDirectory, resolved: ResolvedConfig, prepared: Prepared, progress=None,
             resume_from: Snapshot | None = None, resumable: bool = True) -> FitOutcome:
    """Compiles, fits and writes weights, history and metrics into `folder`; Ctrl-C and errors end it cleanly.

    The state of the last finished epoch goes to `checkpoints/last.safetensors` (see `Checkpointer`);
    `resume_from` continues from such a state instead of from the start. What is written at the end matches
    that checkpoint: when it could not be written (a full disk), weights, history and events stop at the
    epoch the file on disk holds.
    """
    cfg, splits, model = resolved.config, prepared.splits, prepared.model
    (x, y), validation = splits.train, splits.validation
    history, interrupt, events = History(), InterruptHandler(), EventLog(folder)
    try:
        own = [make_callback(spec, folder.path) for spec in cfg.callbacks]
    except OSError as error:
        raise describe_os_error(error) from None
    for callback in own:  # EarlyStopping's Keras lines go through the progress display, not print
        if hasattr(callback, "report") and progress is not None and hasattr(progress, "note"):
            callback.report = progress.note
    checkpointer = Checkpointer(folder.path / CHECKPOINT, history, own,
                                interval=float(os.environ.get("NNCTL_CHECKPOINT_SECONDS", 2.0)),
                                on_disk=resume_from, after_write=events.write_through)
    guard = [] if any(getattr(cb, "stops_on_nonfinite", False) for cb in own) else [TerminateOnNaN()]
    callbacks = ([history, RewindOnStop(checkpointer), *own, *guard, events, interrupt, checkpointer]
                 + ([progress] if progress is not None else []))
    initial_epoch = 0
    if resume_from is not None:
        restore(model, resume_from, history, own)
        initial_epoch = resume_from.epochs_done
    status, error, warm, began, returned = "completed", None, None, time.perf_counter(), False
    first_step_time = failure = None
    try:
        with interrupt.installed():  # a Ctrl-C during compilation ends the run cleanly too
            with phase_of(progress, "compiling kernels") as shown:  # shown while it compiles (a spinner)
                warm = warm_up(model, x, y, cfg.batch_size, validation is not None)
                shown.finish(warm.describe())
            began, first_step_time = time.perf_counter(), time.time()
            if not interrupt.requested:
                model.fit(x, y, epochs=cfg.epochs, batch_size=cfg.batch_size, validation_data=validation,
                          callbacks=callbacks, initial_epoch=initial_epoch, class_weight=cfg.class_weight)
            returned = True
        if interrupt.requested:
            status = "interrupted"
        elif getattr(model, "nonfinite", None):
            status, error = "failed", nonfinite_message(model.nonfinite)
    except KeyboardInterrupt:
        status = "interrupted"
    except Exception as err:  # recorded in the manifest; the caller reports it and exits with 1
        status, error, failure = "failed", failure_message(err), err
    finally:
        if progress is not None and hasattr(progress, "close"):
            progress.close()
    trained = time.perf_counter() - began
    writing = time.perf_counter()
    write_failed = isinstance(failure, OSError)  # a checkpoint or log write during training
    status, error, kept = _write_results(folder, resolved, prepared, history, checkpointer, returned, status, error,
                                         write_failed, resumable)
    tested = getattr(model, "test_seconds", 0.0)
    return FitOutcome(status, error, kept, warm.seconds if warm else 0.0, warm.compiled if warm else 0,
                      trained, time.perf_counter() - writing - tested, getattr(model, "validation_seconds", 0.0),
                      first_step_time, tested)


def _write_results(folder, resolved, prepared, history, checkpointer, returned, status, error, write_failed,
                   resumable):
    """Writes the last checkpoint, then weights, history and metrics that match it; a write that fails (now,
    or during training: `write_failed`) makes the run `failed` with a message saying what is kept.
    Returns (status, error, the history kept)."""
    cfg, splits, model = resolved.config, prepared.splits, prepared.model
    write_error = None
    try:
        checkpointer.flush()
    except OSError as err:
        write_error = err
    saved = checkpointer.written
    if saved is None:
        kept = {}
    elif returned and saved is checkpointer.last:
        kept = history.history  # the weights are the model's: rewound on a stop, or EarlyStopping's best
    else:
        # A fit that raised never reached on_train_end (and RewindOnStop): its weights may be mid-step, and
        # its history may hold an epoch the checkpoint lacks. The checkpoint on disk is the truth.
        kept = {key: list(values) for key, values in saved.state["history"].items()}
    if saved is not None:
        weights = model.get_weights() if kept is history.history else saved.weights()
        try:
            folder.save_weights(weights, metadata={"format": "nnctl", "epochs": str(len(kept.get("loss", [])))})
            folder.write_json("history.json", kept)
            # EarlyStopping's restore_best_weights: the figures are those of the epoch whose weights are saved.
            restored = next((cb.restored_epoch for cb in checkpointer.callbacks
                             if getattr(cb, "restored_epoch", None)), None) if kept is history.history else None
            results = _final_metrics(kept, restored)
            if status == "completed" and write_error is None and splits.test is not None:
                began = time.perf_counter()
                results["test"] = {**model.evaluate(*splits.test, batch_size=cfg.batch_size),
                                   "samples": len(splits.test[1])}
                model.test_seconds = time.perf_counter() - began
            folder.write_json("metrics.json", results)
        except OSError as err:
            write_error = write_error or err
    if write_error is not None or write_failed:
        again = failure_message(write_error) if write_error is not None else None
        status = "failed"
        error = "; ".join(dict.fromkeys(part for part in (error, again, kept_checkpoint_note(folder, saved, resumable))
                                        if part))  # the same write failing twice is said once
    return status, error, kept


def train(resolved: ResolvedConfig, runs_dir="runs", progress: Callback | None = None,
          prepared: Prepared | None = None) -> TrainResult:
    """Trains the config's model into a new run directory; returns how it ended (never raises mid-run).
    A run folder that cannot be made or written is a RunWriteError raised before training."""
    RunDirectory.check_new(runs_dir, resolved.config.name)  # before the data is read: fail fast
    prepared = prepared or prepare(resolved)
    run = RunDirectory.create(Path(runs_dir), resolved.config.name)
    with run.lock():
        begin_run(run, resolved, prepared)
        return _finish(run, prepared, fit_into(run, resolved, prepared, progress))


def _finish(run: RunDirectory, prepared: Prepared, outcome: FitOutcome) -> TrainResult:
    timings = {"load": prepared.seconds, "compile": outcome.compile_seconds,
               "train": outcome.train_seconds - outcome.validate_seconds, "validate": outcome.validate_seconds,
               "test": outcome.test_seconds, "write": outcome.write_seconds}
    status, error = outcome.status, outcome.error
    try:
        run.update_manifest(status=status, ended=_now(), epochs_completed=len(outcome.history.get("loss", [])),
                            error=error, kernels_compiled=outcome.kernels_compiled,
                            compile_seconds=round(outcome.compile_seconds, 3),
                            phases={k: round(v, 4) for k, v in timings.items()},
                            first_step_time=outcome.first_step_time)
    except OSError as err:  # a full disk: the manifest still says `running`, and the message says why
        status, error = "failed", "; ".join(part for part in (error, f"the run could not be marked {status}: "
                                                                     f"{failure_message(err)}") if part)
    run.release_latest()  # a run with no finished epoch does not stay `latest`
    return TrainResult(run, status, outcome.history, error, timings)


def prepare_resume(run_path, overrides=()) -> tuple[RunDirectory, ResolvedConfig, Snapshot]:
    """The run to continue, its config (only `epochs` and `device` may be overridden) and its last checkpoint;
    every reason it cannot be continued exactly is a ConfigError or NnctlError raised before anything is written.
    (Another device continues the run to float tolerance, not to the byte: the kernels round differently.)"""
    from nnctl.errors import NnctlError
    from nnctl.nn import checkpoint
    from nnctl.runs import records

    run = RunDirectory.open(run_path)
    manifest = records.read_manifest(run.path)  # every run file through the validating reader
    if (run.path / "kfold.json").exists() or manifest.get("kfold"):
        raise NnctlError(f"{run.path} is a K-fold run: resuming K-fold runs is not supported, train it again")
    saved = records.load_run_config(run.path)
    resolved = records.load_run_config(run.path, overrides)
    records.check_replaceable(run.path, ["weights.safetensors", "history.json", "metrics.json"])
    before, after = saved.config.model_dump(), resolved.config.model_dump()
    changed = sorted(key for key in set(before) | set(after)
                     if key not in ("epochs", "device") and before.get(key) != after.get(key))
    if changed:
        raise ConfigError([resolved.issue((key,), "cannot change when resuming: the run would not continue exactly "
                                                  "(allowed: epochs, device)") for key in changed])
    if manifest.get("epochs_completed") == 0 and not os.path.lexists(run.path / CHECKPOINT):
        raise NnctlError(f"{run.path} stopped before its first epoch finished: there is no checkpoint to continue "
                         f"from; train the config again")
    snapshot = checkpoint.load(run.path / CHECKPOINT)
    done = snapshot.epochs_done
    # A run killed after its last epoch's checkpoint but before it was marked completed is finished by a resume.
    if done > resolved.config.epochs or (done == resolved.config.epochs and manifest.get("status") == "completed"):
        raise ConfigError([resolved.issue(("epochs",), f"the run has already trained {done} epoch(s) of "
                                                       f"{resolved.config.epochs}: ask for more, e.g. "
                                                       f"--set epochs={done + max(1, done)}")])
    for entry in manifest.get("data", []):
        path = Path(entry["path"])
        if path.is_file() and sha256_file(path) != entry["sha256"]:
            raise NnctlError(f"{path} changed since the run started (sha256 {entry['sha256'][:12]}…): "
                             f"resuming on other data would not continue the run")
    return run, resolved, snapshot


def resume(run_path, overrides=(), progress: Callback | None = None) -> TrainResult:
    """Continues a run in place from its last checkpoint up to the config's (possibly raised) `epochs`.

    Ends with the same weights and history values as one uninterrupted run with the same seed.
    """
    # The lock comes first: a run still being written is refused (naming its pid) before anything is read.
    with RunDirectory.open(run_path).lock() as locked_run:
        run, resolved, snapshot = prepare_resume(locked_run.path, overrides)
        with phase_of(progress, "loading data"):
            prepared = prepare(resolved)
        # The checkpoint against the model and fresh callbacks, before anything is written.
        verify(snapshot, prepared.model, [make_callback(spec, run.path) for spec in resolved.config.callbacks])
        config_text = run_config_text(resolved)
        try:
            run.remove_stale_temp_files()  # a SIGKILL mid-write leaves one; we hold the lock, so none is live
        except OSError as error:
            raise describe_os_error(error, run.path, "clean up") from None
        run.write_text("config.yaml", config_text)
        resumes = run.manifest().get("resumed", [])
        run.update_manifest(status="running", config_sha256=sha256_bytes(config_text.encode()), error=None,
                            device=prepared.model.device,
                            resumed=resumes + [{"time": _now(), "from_epoch": snapshot.epochs_done,
                                                "to_epoch": resolved.config.epochs, "device": prepared.model.device}])
        run.append_event({"event": "resume", "time": _now(), "from_epoch": snapshot.epochs_done})
        return _finish(run, prepared, fit_into(run, resolved, prepared, progress, resume_from=snapshot))


def _final_metrics(history: dict, restored_epoch: int | None = None) -> dict:
    """The figures of the saved weights' epoch (the last one, or `restored_epoch` from 1 when EarlyStopping put
    back its best), split into train and validation like Keras's logs."""
    index = restored_epoch - 1 if restored_epoch else -1
    last = {key: values[index] for key, values in history.items() if values and key not in ("epoch_time", "lr")}
    out = {"epochs": len(history.get("loss", [])),
           "train": {k: v for k, v in last.items() if not k.startswith("val_")}}
    if restored_epoch:
        out["restored_epoch"] = restored_epoch
    validation = {k[4:]: v for k, v in last.items() if k.startswith("val_")}
    if validation:
        out["validation"] = validation
    return out
