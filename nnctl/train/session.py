"""One `nnctl train`: check everything, create the run directory, compile, fit, and record the result.

Nothing here prints: the progress reporter is a callback handed in by the caller.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from nnctl.config.build import build_model, check_data, make_callback
from nnctl.config.resolve import ResolvedConfig
from nnctl.config.yamlfile import ConfigError
from nnctl.data.files import Splits, load_data
from nnctl.nn.callbacks import Callback, Checkpointer, History, TerminateOnNaN
from nnctl.nn.checkpoint import Snapshot, restore
from nnctl.runs.rundir import RunDirectory, environment_versions, sha256_bytes, sha256_file
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
    if resolved.config.device == "cuda":
        raise ConfigError([resolved.issue(("device",), "the CUDA backend is not available in this version of "
                                                       "nnctl (allowed: cpu, auto)")])
    splits = load_data(resolved)
    model = build_model(resolved, input_shape=tuple(splits.train[0].shape[1:]))
    check_data(resolved, model, splits)
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
    return ResolvedConfig(config, resolved.doc, resolved.base_dir).to_yaml()


class EventLog(Callback):
    """Appends one JSON line per epoch to the run's events.jsonl (cheap: no fsync, one write)."""

    def __init__(self, run: RunDirectory):
        self.run = run

    def on_epoch_end(self, epoch, logs=None):
        self.run.append_event({"epoch": epoch + 1, "time": _now(), **(logs or {})})


class InterruptHandler(Callback):
    """First Ctrl-C: stop after the current step and keep everything. A second one: stop at once."""

    requested = False
    needs_batch_logs = False

    def on_train_begin(self, logs=None):
        if self.requested:  # Ctrl-C came before fit had handed us the model
            self.model.stop_training = True

    def on_train_batch_end(self, batch, logs=None):
        """Overridden only so that fit runs in short chunks and a stop request is seen within ~0.1 s."""

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if self.model is not None:
            self.model.stop_training = True

    @contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield self  # signals reach only the main thread; CliRunner tests may run elsewhere
            return
        previous = signal.signal(signal.SIGINT, self._handle)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def begin_run(resolved: ResolvedConfig, runs_dir, prepared: Prepared) -> RunDirectory:
    """A new run directory holding the resolved config, the manifest (status running) and preprocessing.json."""
    cfg, splits = resolved.config, prepared.splits
    run = RunDirectory.create(Path(runs_dir), cfg.name)
    config_text = run_config_text(resolved)
    run.write_text("config.yaml", config_text)
    run.update_manifest(status="running", name=cfg.name, seed=cfg.seed, device="cpu", started=_now(),
                        input_shape=list(prepared.model.input_shape),
                        versions=environment_versions(), config_sha256=sha256_bytes(config_text.encode()),
                        data=[{"path": str(path.resolve()), "sha256": sha256_file(path)} for path in splits.files])
    run.write_json("preprocessing.json", {"transforms": [t.state() for t in splits.transforms]})
    return run


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


class RewindOnStop(Callback):
    """When training stops mid-epoch (Ctrl-C, a NaN loss), puts back the weights of the last finished epoch,
    so the saved weights always match the saved history. Comes before the user's callbacks, so that
    EarlyStopping's `restore_best_weights` still has the last word."""

    def __init__(self, checkpointer: Checkpointer):
        self.checkpointer = checkpointer

    def on_train_end(self, logs=None):
        if self.model.stopped_mid_epoch is not None and self.checkpointer.last is not None:
            self.model.set_weights(self.checkpointer.last.weights())


def nonfinite_message(found: dict) -> str:
    done = found["epoch"] - 1
    kept = f"the weights and checkpoint kept are those of epoch {done}" if done else "the weights kept are the initial ones"
    return f"the loss became {found['loss']} at epoch {found['epoch']}, step {found['step']} of {found['steps']}; {kept}"


def fit_into(folder: RunDirectory, resolved: ResolvedConfig, prepared: Prepared, progress=None,
             resume_from: Snapshot | None = None) -> FitOutcome:
    """Compiles, fits and writes weights, history and metrics into `folder`; Ctrl-C and errors end it cleanly.

    The state of the last finished epoch goes to `checkpoints/last.safetensors` (see `Checkpointer`);
    `resume_from` continues from such a state instead of from the start.
    """
    cfg, splits, model = resolved.config, prepared.splits, prepared.model
    (x, y), validation = splits.train, splits.validation
    history, interrupt = History(), InterruptHandler()
    own = [make_callback(spec, folder.path) for spec in cfg.callbacks]
    checkpointer = Checkpointer(folder.path / CHECKPOINT, history, own,
                                interval=float(os.environ.get("NNCTL_CHECKPOINT_SECONDS", 2.0)))
    guard = [] if any(getattr(cb, "stops_on_nonfinite", False) for cb in own) else [TerminateOnNaN()]
    callbacks = ([history, RewindOnStop(checkpointer), *own, *guard, EventLog(folder), interrupt, checkpointer]
                 + ([progress] if progress is not None else []))
    initial_epoch = 0
    if resume_from is not None:
        restore(model, resume_from, history, own)
        initial_epoch = resume_from.epochs_done
    status, error, warm, began, returned = "completed", None, None, time.perf_counter(), False
    first_step_time = None
    try:
        with interrupt.installed():  # a Ctrl-C during compilation ends the run cleanly too
            warm = warm_up(model, x, y, cfg.batch_size, validation is not None)
            if progress is not None and hasattr(progress, "note"):
                progress.note(warm.describe())
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
        status, error = "failed", f"{type(err).__name__}: {err}"
    finally:
        if progress is not None and hasattr(progress, "close"):
            progress.close()
    trained = time.perf_counter() - began
    writing = time.perf_counter()
    checkpointer.flush()
    # A fit that raised never reached on_train_end (and RewindOnStop): its weights may be mid-step.
    weights = checkpointer.last.weights() if not returned and checkpointer.last is not None else model.get_weights()
    folder.save_weights(weights, metadata={"format": "nnctl", "epochs": str(len(history.epoch))})
    folder.write_json("history.json", history.history)
    results = _final_metrics(history.history)
    if status == "completed" and splits.test is not None:
        results["test"] = {**model.evaluate(*splits.test, batch_size=cfg.batch_size), "samples": len(splits.test[1])}
    folder.write_json("metrics.json", results)
    return FitOutcome(status, error, history.history, warm.seconds if warm else 0.0, warm.compiled if warm else 0,
                      trained, time.perf_counter() - writing, getattr(model, "validation_seconds", 0.0), first_step_time)


def train(resolved: ResolvedConfig, runs_dir="runs", progress: Callback | None = None,
          prepared: Prepared | None = None) -> TrainResult:
    """Trains the config's model into a new run directory; returns how it ended (never raises mid-run)."""
    prepared = prepared or prepare(resolved)
    run = begin_run(resolved, runs_dir, prepared)
    return _finish(run, prepared, fit_into(run, resolved, prepared, progress))


def _finish(run: RunDirectory, prepared: Prepared, outcome: FitOutcome) -> TrainResult:
    timings = {"load": prepared.seconds, "compile": outcome.compile_seconds,
               "train": outcome.train_seconds - outcome.validate_seconds, "validate": outcome.validate_seconds,
               "write": outcome.write_seconds}
    run.update_manifest(status=outcome.status, ended=_now(), epochs_completed=len(outcome.history.get("loss", [])),
                        error=outcome.error, kernels_compiled=outcome.kernels_compiled,
                        compile_seconds=round(outcome.compile_seconds, 3),
                        phases={k: round(v, 4) for k, v in timings.items()}, first_step_time=outcome.first_step_time)
    return TrainResult(run, outcome.status, outcome.history, outcome.error, timings)


def prepare_resume(run_path, overrides=()) -> tuple[RunDirectory, ResolvedConfig, Snapshot]:
    """The run to continue, its config (only `epochs` may be overridden) and its last checkpoint; every
    reason it cannot be continued exactly is a ConfigError or NnctlError raised before anything is written."""
    from nnctl.config import load_config
    from nnctl.errors import NnctlError
    from nnctl.nn import checkpoint

    run = RunDirectory.open(run_path)
    manifest = run.manifest()
    if (run.path / "kfold.json").exists() or manifest.get("kfold"):
        raise NnctlError(f"{run.path} is a K-fold run: resuming K-fold runs is not supported, train it again")
    saved = load_config(run.path / "config.yaml")
    resolved = load_config(run.path / "config.yaml", overrides)
    before, after = saved.config.model_dump(), resolved.config.model_dump()
    changed = sorted(key for key in set(before) | set(after) if key != "epochs" and before.get(key) != after.get(key))
    if changed:
        raise ConfigError([resolved.issue((key,), "cannot change when resuming: the run would not continue exactly "
                                                  "(allowed: epochs)") for key in changed])
    snapshot = checkpoint.load(run.path / CHECKPOINT)
    done = snapshot.epochs_done
    if done >= resolved.config.epochs:
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
    run, resolved, snapshot = prepare_resume(run_path, overrides)
    prepared = prepare(resolved)
    config_text = run_config_text(resolved)
    run.write_text("config.yaml", config_text)
    resumes = run.manifest().get("resumed", [])
    run.update_manifest(status="running", config_sha256=sha256_bytes(config_text.encode()), error=None,
                        resumed=resumes + [{"time": _now(), "from_epoch": snapshot.epochs_done,
                                            "to_epoch": resolved.config.epochs}])
    run.append_event({"event": "resume", "time": _now(), "from_epoch": snapshot.epochs_done})
    return _finish(run, prepared, fit_into(run, resolved, prepared, progress, resume_from=snapshot))


def _final_metrics(history: dict) -> dict:
    """The last epoch's figures, split into train and validation like Keras's logs."""
    last = {key: values[-1] for key, values in history.items() if values and key not in ("epoch_time", "lr")}
    out = {"epochs": len(history.get("loss", [])),
           "train": {k: v for k, v in last.items() if not k.startswith("val_")}}
    validation = {k[4:]: v for k, v in last.items() if k.startswith("val_")}
    if validation:
        out["validation"] = validation
    return out
