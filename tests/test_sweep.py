"""`nnctl sweep`: Optuna trials on Dask workers — a local cluster, a real scheduler with worker processes,
pruning, the same trials twice with one worker, and located mistakes. Skipped without the `sweep` extra."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("optuna")
pytest.importorskip("distributed")
pytest.importorskip("optuna_integration")

from tests.conftest import invoke  # noqa: E402

BASE = """\
name: tiny
seed: 3
data:
  dataset: {type: synthetic, kind: regression, samples: 300, features: 6, noise: 0.1}
  transforms: [standardize]
  validation: {split: 0.25}
model:
  input_shape: [6]
  layers:
    - {type: dense, units: 16, activation: relu}
    - {type: dense, units: 1}
loss: mse
optimizer: rmsprop
metrics: [mae]
epochs: 5
batch_size: 32
"""
SWEEP = """\
base: base.yaml
sweep:
  metric: val_mae
  trials: 5
  sampler: tpe
  pruner: none
  space:
    optimizer.learning_rate: {log_uniform: [1.0e-4, 1.0e-2]}
    model.layers[0].units: {choice: [8, 16, 32]}
    batch_size: {choice: [16, 32]}
"""


def _files(tmp_path, sweep=SWEEP):
    (tmp_path / "base.yaml").write_text(BASE)
    (tmp_path / "sweep.yaml").write_text(sweep)
    return tmp_path / "sweep.yaml"


def _summary(stdout: str) -> dict:
    folder = Path(re.search(r"into (\S+)", stdout).group(1))
    return json.loads((folder / "sweep.json").read_text()), folder


def test_two_local_workers_finish_every_trial_into_run_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("sweep", _files(tmp_path), "--workers", 2, "--runs-dir", tmp_path / "sweeps")
    assert result.exit_code == 0, result.output
    summary, folder = _summary(result.output)
    assert [t["number"] for t in summary["trials"]] == list(range(5))
    assert all(t["state"] == "complete" and t["value"] > 0 for t in summary["trials"])
    best = min(summary["trials"], key=lambda t: t["value"])
    assert summary["best"]["number"] == best["number"] and summary["best"]["value"] == best["value"]
    assert len({t["worker"] for t in summary["trials"]}) == 2  # both workers trained trials
    assert result.output.count("\ntrial ") + result.output.startswith("trial ") == 5
    listed = invoke("runs", folder)
    assert listed.exit_code == 0 and listed.output.count("completed") == 5  # each trial is an ordinary run
    assert invoke("evaluate", folder / "trial_000").exit_code == 0
    pytest.importorskip("matplotlib")
    plotted = invoke("plot", folder)
    assert plotted.exit_code == 0, plotted.output
    assert (folder / "plot.png").stat().st_size > 1000 and (folder / "plot_importances.png").stat().st_size > 1000
    retrained = invoke("train", folder / "best.yaml", "--runs-dir", tmp_path / "runs")
    assert retrained.exit_code == 0, retrained.output
    history = json.loads(next((tmp_path / "runs").glob("*/2*/history.json")).read_text())
    assert min(history["val_mae"]) == pytest.approx(best["value"], rel=1e-6)  # best.yaml repeats the trial


def test_one_worker_twice_gives_the_same_trials_and_median_pruning_prunes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sweep = _files(tmp_path, SWEEP.replace("trials: 5", "trials: 8").replace("pruner: none", "pruner: median")
                   .replace("sampler: tpe", "sampler: random") + "    epochs: 10\n")
    runs = [invoke("sweep", sweep, "--workers", 1, "--runs-dir", tmp_path / "sweeps") for _ in range(2)]
    for result in runs:
        assert result.exit_code == 0, result.output
    first, second = (_summary(result.output)[0]["trials"] for result in runs)
    strip = [{k: t[k] for k in ("number", "state", "value", "params")} for t in first]
    assert strip == [{k: t[k] for k in ("number", "state", "value", "params")} for t in second]
    assert any(t["state"] == "pruned" for t in first)


def test_sweep_mistakes_are_located(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cases = [("optimizer.learning_rate:", "optimizer.learning_rte:", "sweep.yaml:8:5",
              "did you mean 'learning_rate'"),
             ("{choice: [8, 16, 32]}", "{choice: [8, -16, 32]}", "sweep.yaml:9:5", "expected a positive integer"),
             ("log_uniform", "log_unform", "sweep.yaml:8:31", "did you mean 'log_uniform'"),
             ("metric: val_mae", "metric: val_mea", "sweep.yaml:3:11", "did you mean 'val_mae'"),
             ("trials: 5", "trails: 5", "sweep.yaml:4:3", "did you mean 'trials'"),
             ("[1.0e-4, 1.0e-2]", "[1.0e-2, 1.0e-4]", "sweep.yaml:8:44", "low < high")]
    for old, new, where, message in cases:
        result = invoke("sweep", _files(tmp_path, SWEEP.replace(old, new)))
        assert result.exit_code == 2, result.output
        assert where in result.output and message in result.output, (new, result.output)
    assert not (tmp_path / "sweeps").exists()  # refused before any folder was made


@pytest.mark.slow
def test_a_real_scheduler_with_worker_processes_runs_the_trials(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dask = str(Path(sys.executable).with_name("dask"))
    scheduler = subprocess.Popen([dask, "scheduler", "--port", "0", "--no-dashboard"], stderr=subprocess.PIPE,
                                 text=True)
    worker = None
    try:
        address = None
        deadline = time.time() + 60
        while address is None and time.time() < deadline:
            found = re.search(r"tcp://[0-9.]+:\d+", scheduler.stderr.readline())
            address = found.group(0) if found else None
        assert address, "the scheduler did not start"
        worker = subprocess.Popen([dask, "worker", address, "--nworkers", "2", "--nthreads", "1", "--no-dashboard"],
                                  stderr=subprocess.DEVNULL, cwd="/")
        result = invoke("sweep", _files(tmp_path), "--cluster", address, "--runs-dir", tmp_path / "sweeps")
        assert result.exit_code == 0, result.output
        summary, _ = _summary(result.output)
        workers = {t["worker"] for t in summary["trials"]}
        assert all(t["state"] == "complete" for t in summary["trials"]) and len(summary["trials"]) == 5
        assert workers and all(pid != __import__("os").getpid() for pid in workers)
    finally:
        for process in (worker, scheduler):
            if process is not None:
                process.terminate()
                process.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGINT", "SIGKILL"])
def test_an_interrupted_or_killed_sweep_resumes_to_its_trial_count(tmp_path, how):
    import signal

    sweep = _files(tmp_path, SWEEP.replace("trials: 5", "trials: 12") + "    epochs: 30\n")
    nnctl = str(Path(sys.executable).with_name("nnctl"))
    process = subprocess.Popen([nnctl, "sweep", str(sweep), "--workers", "1", "--runs-dir", str(tmp_path / "s")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    lines = []
    for line in process.stdout:  # stop it once two trials have finished
        lines.append(line)
        if sum(entry.startswith("trial ") for entry in lines) == 2:
            process.send_signal(getattr(signal, how))
            break
    out, err = process.communicate(timeout=120)
    folder = Path(re.search(r"into (\S+)", lines[0]).group(1))
    if how == "SIGINT":  # a clean stop: the summary so far, and how to go on
        assert process.returncode == 130, err
        assert "continue with: nnctl sweep --resume" in err
        stopped = json.loads((folder / "sweep.json").read_text())
        assert stopped["interrupted"] and 2 <= len(stopped["trials"]) < 12
    else:  # killed outright: the study in the journal is all there is; its running trial is failed on resume
        assert process.returncode == -signal.SIGKILL and not (folder / "sweep.json").exists()
    resumed = invoke("sweep", "--resume", folder, "--workers", 1)
    assert resumed.exit_code == 0, resumed.output
    summary = json.loads((folder / "sweep.json").read_text())
    finished = [t for t in summary["trials"] if t["state"] in ("complete", "pruned")]
    assert len(summary["trials"]) == 12 and not summary["interrupted"]
    assert len(finished) >= 12 - 2  # at most the trials running at the interrupt failed
    shown = invoke("sweep", "show", folder)
    assert shown.exit_code == 0 and "best marked *" in shown.output


def test_kfold_on_workers_gives_each_fold_the_same_bytes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "base.yaml").write_text(BASE.replace("validation: {split: 0.25}", "validation: {kfold: 3}"))
    sequential = invoke("kfold", tmp_path / "base.yaml", "--runs-dir", tmp_path / "one")
    parallel = invoke("kfold", tmp_path / "base.yaml", "--runs-dir", tmp_path / "many", "--workers", 2)
    for result in (sequential, parallel):
        assert result.exit_code == 0, result.output
    one, many = (next((tmp_path / root).glob("tiny/2*")) for root in ("one", "many"))
    for fold in (1, 2, 3):
        assert (one / f"fold_{fold}/weights.safetensors").read_bytes() == \
            (many / f"fold_{fold}/weights.safetensors").read_bytes()
    summaries = [json.loads((folder / "kfold.json").read_text())["final"] for folder in (one, many)]
    assert summaries[0] == summaries[1]
    assert parallel.output.count("fold ") >= 3  # one line per fold, as they finish in order


def test_kfold_trials_are_scored_by_their_folds_mean_curve(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sweep = _files(tmp_path, SWEEP.replace("trials: 5", "trials: 2") + "    validation: {kfold: 2}\n")
    result = invoke("sweep", sweep, "--workers", 2, "--runs-dir", tmp_path / "sweeps")
    assert result.exit_code == 0, result.output
    summary, folder = _summary(result.output)
    for trial in summary["trials"]:
        run = Path(trial["run"])
        assert (run / "fold_1" / "weights.safetensors").is_file() and (run / "fold_2").is_dir()
        kfold = json.loads((run / "kfold.json").read_text())
        assert trial["value"] == pytest.approx(min(kfold["per_epoch"]["val_mae"]["mean"]))


def test_an_rdb_storage_url_holds_the_study_and_is_remembered(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sweep = _files(tmp_path, SWEEP.replace("trials: 5", "trials: 2"))
    database = tmp_path / "study.db"
    result = invoke("sweep", sweep, "--workers", 1, "--storage", f"sqlite:///{database}", "--runs-dir", tmp_path / "s")
    assert result.exit_code == 0, result.output
    summary, folder = _summary(result.output)
    assert database.stat().st_size > 0 and not (folder / "study.journal").exists()
    assert json.loads((folder / "study.json").read_text()) == {"storage": f"sqlite:///{database}", "masked": False}
    more = (folder / "sweep.yaml").read_text().replace("trials: 2", "trials: 3")
    (folder / "sweep.yaml").write_text(more)
    resumed = invoke("sweep", "--resume", folder, "--workers", 1)  # the recorded storage, one more trial
    assert resumed.exit_code == 0, resumed.output
    assert len(json.loads((folder / "sweep.json").read_text())["trials"]) == 3
