"""Honest run states: a run with no finished epoch is never evaluated, `runs/<name>` skips it, a run that did
not complete says which epoch its weights are from, and a SIGKILLed run reads as `stopped`."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from nnctl.runs import browse
from nnctl.runs.rundir import RunDirectory
from nnctl.train import session
from nnctl.train.session_callbacks import InterruptHandler
from tests.conftest import invoke, run_path


class StopBeforeTraining(InterruptHandler):
    requested = True  # as when Ctrl-C arrives while data loads or kernels compile


class StopAfterFirstEpoch(InterruptHandler):
    def on_epoch_end(self, epoch, logs=None):
        self._handle(None, None)  # as a Ctrl-C between epochs 1 and 2


def train(config, runs, *extra, code):
    result = invoke("train", config, "--runs-dir", runs, "-q", *extra)
    assert result.exit_code == code, result.output + result.stderr
    assert "Traceback" not in result.output + result.stderr
    return result


def test_a_run_stopped_before_its_first_epoch_offers_no_resume_and_cannot_be_evaluated(tmp_path, tiny_config,
                                                                                       monkeypatch):
    monkeypatch.setattr(session, "InterruptHandler", StopBeforeTraining)
    result = train(tiny_config, tmp_path / "runs", code=130)
    assert "--resume" not in result.stderr and "no weights were saved" in result.stderr
    run = run_path(result.stdout)
    for command in (["evaluate", run], ["evaluate", tmp_path / "runs" / "tiny"], ["predict", run, "--input",
                                                                                   tmp_path / "tiny.npz"]):
        refused = invoke(*command)
        lines = [line for line in refused.stderr.splitlines() if line.strip()]
        assert refused.exit_code == 2 and len(lines) == 1, refused.output + refused.stderr
        assert "has no trained weights" in lines[0] and "interrupted" in lines[0] and str(run) in lines[0]
    resumed = invoke("train", "--resume", run)
    assert resumed.exit_code == 2 and resumed.stderr.strip() == (
        f"error: {run} stopped before its first epoch finished: there is no checkpoint to continue from; train the "
        f"config again")


def test_runs_name_means_the_newest_run_with_weights(tmp_path, tiny_config, monkeypatch):
    runs = tmp_path / "runs"
    trained = run_path(train(tiny_config, runs, code=0).stdout)
    time.sleep(1.01)  # another start second: another folder name
    monkeypatch.setattr(session, "InterruptHandler", StopBeforeTraining)
    empty = run_path(train(tiny_config, runs, code=130).stdout)
    assert (runs / "tiny" / "latest").resolve() == trained.resolve()  # the link is given back
    (runs / "tiny" / "latest").unlink()
    (runs / "tiny" / "latest").symlink_to(empty.name)  # as an older nnctl left it
    assert RunDirectory.open(runs / "tiny").path == trained
    assert RunDirectory.open(runs / "tiny" / "latest").path == trained
    assert RunDirectory.open(empty).path == empty  # a run folder named directly is that folder
    evaluated = invoke("evaluate", runs / "tiny", "--json")
    assert evaluated.exit_code == 0 and "note:" not in evaluated.stderr, evaluated.stderr


def test_an_interrupted_run_says_which_epoch_its_weights_are_from(tmp_path, tiny_config, monkeypatch):
    monkeypatch.setattr(session, "InterruptHandler", StopAfterFirstEpoch)
    result = train(tiny_config, tmp_path / "runs", code=130)
    run = run_path(result.stdout)
    assert f"nnctl train --resume {run}" in result.stderr
    for command in (["evaluate", run, "--json"], ["predict", run, "--input", tmp_path / "tiny.npz"]):
        done = invoke(*command)
        assert done.exit_code == 0, done.output + done.stderr
        assert "note: the run is interrupted: these weights are those of epoch 1 of 3" in done.stderr


KILLED = """\
import sys
from nnctl.nn.callbacks import Callback
from nnctl.train import session
from nnctl.config import load_config

class Hang(Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            print("epoch 2 done", flush=True)
            import time
            time.sleep(600)

resolved = load_config(sys.argv[1])
session.train(resolved, sys.argv[2], progress=Hang())
"""


def test_a_run_killed_with_sigkill_reads_as_stopped_and_its_checkpoint_is_evaluated(tmp_path, tiny_config):
    runs = tmp_path / "runs"
    env = {**os.environ, "NNCTL_CHECKPOINT_SECONDS": "0"}
    child = subprocess.Popen([sys.executable, "-c", KILLED, str(tiny_config), str(runs)], stdout=subprocess.PIPE,
                             text=True, env=env)
    try:
        assert child.stdout.readline().strip() == "epoch 2 done"
        run = (runs / "tiny" / "latest").resolve()
        assert [row["status"] for row in browse.list_runs(runs)] == ["running"]  # its writer is alive
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert json.loads((run / "manifest.json").read_text())["status"] == "running"
    assert [row["status"] for row in browse.list_runs(runs)] == ["stopped"]
    listed = invoke("runs", runs)
    assert listed.exit_code == 0 and "stopped" in listed.output and "running" not in listed.output
    done = invoke("evaluate", runs / "tiny", "--json")
    assert done.exit_code == 0, done.output + done.stderr
    assert "note: the run is stopped: these weights are those of epoch 2 of 3 (checkpoints/last.safetensors)" \
        in done.stderr


@pytest.mark.parametrize("status", ["completed", "interrupted", "failed"])
def test_an_ended_run_keeps_its_status_whoever_holds_no_lock(tmp_path, status):
    run = RunDirectory(tmp_path / "run")
    run.path.mkdir()
    run.update_manifest(status=status, name="x")
    assert run.state(run.manifest()) == status
    run.update_manifest(status="running")
    assert run.state(run.manifest()) == "stopped"
    with run.lock():
        assert run.state(run.manifest()) == "running"


EARLY_STOPPING = """
callbacks:
  - {type: early_stopping, monitor: loss, mode: max, patience: 2, restore_best_weights: true}
"""


def test_restored_best_weights_are_announced_and_their_epochs_figures_are_reported(tmp_path, tiny_config):
    # In max mode a falling training loss keeps epoch 1 best: patience runs out at epoch 3 of 6.
    tiny_config.write_text(tiny_config.read_text().replace("epochs: 3", "epochs: 6") + EARLY_STOPPING)
    result = invoke("train", tiny_config, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output + result.stderr
    run = run_path(result.stdout)
    history = json.loads((run / "history.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    best = max(range(len(history["loss"])), key=lambda i: history["loss"][i]) + 1
    assert len(history["loss"]) < 6 and metrics["restored_epoch"] == best
    lines = result.stdout.splitlines()
    stop_line = f"Epoch {len(history['loss'])}: early stopping"
    restore_line = f"Restoring model weights from the end of the best epoch: {best}."
    assert lines.index(restore_line) == lines.index(stop_line) + 1
    assert metrics["train"]["loss"] == history["loss"][best - 1]
    assert metrics["validation"]["loss"] == history["val_loss"][best - 1]
    # The saved weights are that epoch's: evaluating them on the validation split gives its figure back.
    evaluated = invoke("evaluate", run, "--split", "validation", "--json")
    assert json.loads(evaluated.stdout)["loss"] == pytest.approx(history["val_loss"][best - 1], rel=1e-5)
    cells = dict(browse.compare_runs([run])["rows"])["val_loss final"]
    assert cells[0]["epoch"] == best and cells[0]["value"] == history["val_loss"][best - 1]
