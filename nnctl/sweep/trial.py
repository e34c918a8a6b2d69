"""One sweep trial, run where Dask puts it: the base config with the trial's values, trained into an ordinary
run folder (`<sweep>/trial_007/`), each epoch's figure reported to the study so a pruner can stop it.

Everything a worker needs travels in the job (the base config's text and folder, the values, the seed); the
study is reached through optuna-integration's DaskStorage, which the scheduler serves.
"""

from __future__ import annotations

import math
import os
import traceback
from pathlib import Path

from nnctl.nn.callbacks import Callback


class Reporter(Callback):
    """Reports the monitored figure after each epoch and stops the run when the pruner says so."""

    def __init__(self, trial, metric: str):
        self.trial, self.metric, self.pruned = trial, metric, False

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.metric)
        if self.trial is None or value is None or not math.isfinite(value):
            return
        try:
            self.trial.report(float(value), step=epoch)
            prune = self.trial.should_prune()
        except Exception:  # noqa: BLE001 — e.g. the sweep was stopped and failed this trial: stop quietly
            prune, self.trial = True, None
        if prune:
            self.pruned = True
            self.model.stop_training = True


def _study_trial(job):
    if job.get("storage") is None:
        return None
    import optuna

    study = optuna.load_study(study_name=job["study"], storage=job["storage"])
    return optuna.trial.Trial(study, job["trial_id"])


def best_value(history: dict, metric: str, maximize: bool):
    values = [v for v in history.get(metric, []) if v is not None and math.isfinite(v)]
    if not values:
        return None
    return max(values) if maximize else min(values)


def run_trial(job: dict) -> dict:
    """Trains one trial; returns {"number", "state" (complete | pruned | failed), "value", "run", "error"}."""
    from nnctl.config.yamlfile import ConfigError
    from nnctl.errors import NnctlError
    from nnctl.runs.rundir import RunDirectory
    from nnctl.train.session import _finish, begin_run, fit_into, prepare

    number, folder = job["number"], Path(job["folder"])
    out = {"number": number, "state": "failed", "value": None, "run": str(folder), "error": None,
           "worker": os.getpid()}
    try:
        resolved = job["sweep"].resolve(job["values"], (f"seed={job['seed']}", f"name=trial_{number:03d}"))
        prepared = prepare(resolved)
        folder.mkdir(parents=True, exist_ok=False)
        run = RunDirectory(folder)
        choice = resolved.config.data.validation
        if choice is not None and choice.kfold is not None:  # scored by the folds' mean curve; not pruned
            return {**out, **_kfold_trial(run, resolved, prepared, job)}
        reporter = Reporter(_study_trial(job), job["metric"])
        with run.lock():
            begin_run(run, resolved, prepared)
            result = _finish(run, prepared, fit_into(run, resolved, prepared, reporter))
        out["value"] = best_value(result.history, job["metric"], job["maximize"])
        out["state"] = "pruned" if reporter.pruned else ("complete" if result.status == "completed" else "failed")
        out["error"] = result.error
        out["epochs"] = len(result.history.get("loss", []))
    except (ConfigError, NnctlError) as err:
        out["error"] = str(err)
    except Exception as err:  # noqa: BLE001 — reported as this trial's failure; the sweep goes on
        out["error"] = f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=3)}"
    return out


def _kfold_trial(run, resolved, prepared, job) -> dict:
    """A K-fold trial: its folds in the trial's folder, as Dask tasks of their own; its figure is the best epoch
    of the folds' mean curve (a figure no fold can report alone, so K-fold trials are not pruned)."""
    from distributed import worker_client

    from nnctl.train.kfold import train_kfold_into

    with worker_client() as client:  # the folds are tasks too: the cluster's free workers take them
        result = train_kfold_into(run, resolved, prepared, client=client)
    mean = result.summary.get("per_epoch", {}).get(job["metric"], {}).get("mean", [])
    return {"state": "complete" if result.status == "completed" else "failed", "error": result.error,
            "value": best_value({job["metric"]: mean}, job["metric"], job["maximize"]),
            "epochs": result.summary.get("epochs", 0)}


def check_worker(job: dict) -> str | None:
    """None when this worker can read the sweep and its data; else why not (before the first trial)."""
    from nnctl.train.session import prepare

    try:
        prepare(job["sweep"].resolve(job["values"]))
        return None
    except Exception as err:  # noqa: BLE001 — the message is what the driver shows
        return f"{type(err).__name__}: {err}"
