"""`nnctl sweep`: an Optuna study whose trials run on Dask workers.

The driver asks the study for a trial only when a worker is free (ask/tell), so with one worker the trials run
one after another in a fixed order: the sampler is seeded by the sweep's seed and each trial's run seed is
derived from it and the trial number, so the same sweep gives the same trials. Workers report each epoch's
figure through optuna-integration's DaskStorage (the scheduler holds the study), which is what lets a pruner
stop a trial mid-run. The study is stored in Optuna's journal file inside the sweep folder by default, or in
any RDB a `--storage` URL names (for workers on several machines).
"""

from __future__ import annotations

import copy
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from nnctl.errors import NnctlError
from nnctl.sweep.cluster import dask_client, worker_count

STUDY = "nnctl"


def require_extra():
    try:
        import distributed  # noqa: F401
        import optuna  # noqa: F401
        import optuna_integration  # noqa: F401
    except ImportError as err:
        raise NnctlError(f"`nnctl sweep` needs the sweep extra ({err.name} is missing): pip install "
                         f"'nnctl[sweep]'") from None


def _quiet():
    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def trial_seed(sweep_seed: int, number: int) -> int:
    return (sweep_seed * 1_000_003 + number * 7919 + 17) % (2**31 - 1)


def _sampler(spec, seed, sweep):
    import optuna

    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.sampler == "grid":
        return optuna.samplers.GridSampler({p.key: list(range(len(p.args))) for p in sweep.searched}, seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def _pruner(spec, epochs):
    import optuna

    if spec.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    if spec.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 2))
    return optuna.pruners.NopPruner()


def distributions(sweep) -> dict:
    """Optuna's distribution per searched key; a choice is sampled by index (its values may be any YAML)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    found = {}
    for p in sweep.searched:
        if p.kind == "choice":
            found[p.key] = CategoricalDistribution(list(range(len(p.args))))
        elif p.kind in ("int", "log_int"):
            found[p.key] = IntDistribution(int(p.args[0]), int(p.args[1]), log=p.kind == "log_int")
        else:
            found[p.key] = FloatDistribution(float(p.args[0]), float(p.args[1]), log=p.kind == "log_uniform")
    return found


def values_of(sweep, params: dict) -> dict:
    """The config values of a trial's sampled params (a choice's index → its value)."""
    return {p.key: (p.args[params[p.key]] if p.kind == "choice" else params[p.key]) for p in sweep.searched}


@dataclass
class SweepResult:
    folder: Path
    trials: list = field(default_factory=list)  # this invocation's, with the workers' pids
    all_trials: list = field(default_factory=list)  # every trial of the study (a resumed sweep's earlier ones)
    best: dict | None = None
    seconds: float = 0.0
    interrupted: bool = False


def run_sweep(sweep, folder: Path, workers: int | None = None, cluster: str | None = None,
              storage: str | None = None, report=print, resume: bool = False) -> SweepResult:
    """Runs the sweep's trials into `folder` (made by the caller); `report(line)` gets one line per trial.
    `resume`: the study in `folder` continues (its trials left running by a killed sweep are marked failed)."""
    require_extra()
    import optuna
    from distributed import as_completed
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna_integration import DaskStorage

    from nnctl.direction import higher_is_better
    from nnctl.sweep.report import trial_line
    from nnctl.sweep.trial import check_worker, run_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    spec, began, folder = sweep.spec, time.perf_counter(), Path(folder).resolve()  # (workers may run elsewhere)
    maximize = higher_is_better(spec.metric)
    slim = copy.copy(sweep)
    slim.base, slim.doc = None, None
    inner = storage or JournalStorage(JournalFileBackend(str(folder / "study.journal")))
    with dask_client(workers, cluster) as client:
        client.run(_quiet)  # DaskStorage says it is experimental in every process that unpickles it
        if resume:
            _fail_running(inner, folder)
        dask_storage = DaskStorage(inner, client=client)
        study = optuna.create_study(study_name=STUDY, storage=dask_storage, load_if_exists=True,
                                    direction="maximize" if maximize else "minimize",
                                    sampler=_sampler(spec, sweep.seed, sweep),
                                    pruner=_pruner(spec, sweep.base.config.epochs))
        firsts = values_of(sweep, {p.key: 0 if p.kind == "choice" else p.args[0] for p in sweep.searched})
        problems = {w: err for w, err in client.run(check_worker, {"sweep": slim, "values": firsts}).items() if err}
        if problems:
            worker, error = next(iter(problems.items()))
            raise NnctlError(f"{len(problems)} worker(s) cannot run the sweep's trials, e.g. {worker}: {error} "
                             f"(each worker needs nnctl installed and the data reachable at the same paths)")
        slots = worker_count(client)
        result = SweepResult(folder)
        pending, queue = {}, as_completed()
        left = spec.trials - sum(1 for t in study.trials if t.state.is_finished())
        common = {"sweep": slim, "metric": spec.metric, "maximize": maximize, "storage": dask_storage,
                  "study": STUDY}

        def submit():  # a trial asked now, when a worker is free: the order does not depend on timing
            trial = study.ask(distributions(sweep))
            values = values_of(sweep, trial.params)
            job = {**common, "values": values, "number": trial.number, "trial_id": trial._trial_id,
                   "folder": str(folder / f"trial_{trial.number:03d}"), "seed": trial_seed(sweep.seed, trial.number)}
            future = client.submit(run_trial, job, pure=False, key=f"trial-{trial.number}")
            pending[future.key] = (trial, values)
            queue.add(future)

        for _ in range(min(left, slots)):
            submit()
        left -= min(left, slots)
        try:
            for future in queue:
                trial, values = pending.pop(future.key)
                outcome = future.result()
                _tell(study, trial, outcome)
                outcome["params"] = values
                result.trials.append(outcome)
                report(trial_line(outcome, study, spec.metric))
                if left > 0:
                    submit()
                    left -= 1
        except KeyboardInterrupt:
            # The running trials are marked failed (their run folders say `running` until a resume); the study
            # keeps every finished trial, and `nnctl sweep --resume` asks for the rest.
            for trial, _values in pending.values():
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            result.interrupted = True
        result.seconds = time.perf_counter() - began
        result.all_trials = _all_trials(study, sweep, folder, result.trials)
        result.best = _best(study, result.all_trials)
        return result


def _fail_running(storage, folder):
    """A killed sweep leaves trials RUNNING in its study: they are failed now, so the study can go on."""
    import optuna

    study = optuna.load_study(study_name=STUDY, storage=storage)
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)


def _tell(study, trial, outcome):
    import optuna

    if outcome["state"] == "pruned":
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    elif outcome["state"] == "complete" and outcome["value"] is not None:
        study.tell(trial, outcome["value"])
    else:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)


def _best(study, trials):
    try:
        best = study.best_trial
    except ValueError:
        return None
    found = next(t for t in trials if t["number"] == best.number)
    return {"number": best.number, "value": best.value, "params": found["params"], "run": found["run"]}


def _all_trials(study, sweep, folder, fresh: list) -> list:
    """Every finished or stopped trial of the study, as sweep.json lists them (this run's carry their worker)."""
    import optuna

    mine = {t["number"]: t for t in fresh}
    states = {optuna.trial.TrialState.COMPLETE: "complete", optuna.trial.TrialState.PRUNED: "pruned"}
    found = []
    for trial in study.trials:
        if trial.number in mine:
            found.append(mine[trial.number])
            continue
        params = values_of(sweep, trial.params) if set(trial.params) == {p.key for p in sweep.searched} else {}
        found.append({"number": trial.number, "state": states.get(trial.state, "failed"), "value": trial.value,
                      "params": params, "run": str(folder / f"trial_{trial.number:03d}"), "error": None})
    return found


def write_summary(sweep, result: SweepResult) -> None:
    """sweep.json (every trial, the best) and best.yaml (the base config with the best values, ready to train)."""
    from nnctl.runs.rundir import atomic_write_bytes

    summary = {"name": sweep.name, "metric": sweep.spec.metric, "seed": sweep.seed,
               "seconds": round(result.seconds, 3), "best": result.best,
               "interrupted": result.interrupted, "trials": sorted(result.all_trials, key=lambda t: t["number"])}
    atomic_write_bytes(result.folder / "sweep.json", json.dumps(summary, indent=2, default=str).encode())
    if result.best is not None:  # the best trial's config, its seed included: `nnctl train best.yaml` repeats it
        from nnctl.train.session import run_config_text

        number = result.best["number"]
        best = sweep.resolve(result.best["params"], (f"name={sweep.name}_best",
                                                     f"seed={trial_seed(sweep.seed, number)}"))
        atomic_write_bytes(result.folder / "best.yaml", run_config_text(best).encode())
