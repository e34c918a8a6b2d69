"""Exact resume, the checkpoint a killed run leaves, and the NaN stop, through the real command line."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from nnctl.nn import checkpoint
from nnctl.nn.callbacks import Callback, TerminateOnNaN
from nnctl.nn.layers import Dense
from nnctl.nn.model import Sequential
from nnctl.runs.rundir import RunDirectory
from nnctl.train.session import CHECKPOINT
from tests.conftest import invoke, run_path, write_npz

# Dropout makes the layered path draw masks from the run's generator; without it the compiled fast path runs.
CONFIG = """\
name: resumable
seed: 7
data:
  path: tiny.npz
  validation: {{split: 0.25}}
model:
  layers:
    - {{type: dense, units: 16, activation: relu}}
{dropout}    - {{type: dense, units: 8, activation: relu}}
    - {{type: dense, units: 1, activation: sigmoid}}
loss: binary_crossentropy
optimizer: {{type: adam, learning_rate: 0.02}}
metrics: [accuracy]
epochs: 6
batch_size: 16
callbacks:
  - {{type: reduce_lr_on_plateau, monitor: val_loss, patience: 1, factor: 0.5, min_delta: 0.05}}
  - {{type: early_stopping, monitor: val_accuracy, patience: 20, restore_best_weights: true}}
  - {{type: model_checkpoint, monitor: val_loss, save_best_only: true}}
  - csv_logger
"""


def write_config(folder, dropout: bool, text=CONFIG):
    write_npz(folder / "tiny.npz")
    path = folder / "resumable.yaml"
    path.write_text(text.format(dropout="    - {type: dropout, rate: 0.3}\n" if dropout else ""), encoding="utf-8")
    return path


def train(*args, code=0):
    result = invoke("train", *args)
    assert result.exit_code == code, result.output + result.stderr
    return result


def csv_rows(run) -> list[dict]:
    with open(run.path / "history.csv", newline="") as handle:
        return [{k: v for k, v in row.items() if k != "epoch_time"} for row in csv.DictReader(handle)]


def values(history: dict) -> dict:
    return {key: value for key, value in history.items() if key != "epoch_time"}


@pytest.mark.parametrize("dropout", [False, True], ids=["fast-path", "layered-with-dropout"])
def test_a_run_stopped_after_3_epochs_and_resumed_to_6_equals_an_uninterrupted_6_epoch_run(tmp_path, dropout):
    config = write_config(tmp_path, dropout)
    whole = RunDirectory(run_path(train(config, "--runs-dir", tmp_path / "a").stdout))
    part = RunDirectory(run_path(train(config, "--runs-dir", tmp_path / "b", "--set", "epochs=3").stdout))
    assert len(part.read_json("history.json")["loss"]) == 3
    resumed = train("--resume", part.path, "--set", "epochs=6", "-q")
    assert run_path(resumed.stdout) == part.path  # continued in place

    assert (part.path / "weights.safetensors").read_bytes() == (whole.path / "weights.safetensors").read_bytes()
    assert values(part.read_json("history.json")) == values(whole.read_json("history.json"))
    lrs = whole.read_json("history.json")["lr"]
    assert lrs[0] == 0.02 and min(lrs) < 0.02  # the plateau callback did act, and its state carried over
    assert csv_rows(part) == csv_rows(whole) and len(csv_rows(whole)) == 6  # no second header after resuming
    assert (part.path / "checkpoints" / "best.safetensors").read_bytes() == \
        (whole.path / "checkpoints" / "best.safetensors").read_bytes()
    manifest = part.manifest()
    assert manifest["status"] == "completed" and manifest["epochs_completed"] == 6
    assert manifest["resumed"][0]["from_epoch"] == 3 and manifest["resumed"][0]["to_epoch"] == 6
    assert {"event": "resume", "from_epoch": 3}.items() <= part.read_events()[3].items()


def test_the_checkpoint_holds_everything_a_resume_needs(tmp_path):
    config = write_config(tmp_path, dropout=True)
    run = RunDirectory(run_path(train(config, "--runs-dir", tmp_path, "--set", "epochs=2").stdout))
    snapshot = checkpoint.load(run.path / CHECKPOINT)
    assert snapshot.epochs_done == 2 and snapshot.state["iterations"] == 2 * 12  # 180 rows, batch 16
    assert snapshot.state["rng"]["bit_generator"] == "PCG64"
    assert [c["type"] for c in snapshot.state["callbacks"]] == ["ReduceLROnPlateau", "EarlyStopping",
                                                                 "ModelCheckpoint", "CSVLogger"]
    assert {"optimizer/slot_0", "optimizer/slot_1", "weights/dense/kernel"} <= set(snapshot.tensors)
    assert any(key.startswith("callbacks/1/") for key in snapshot.tensors)  # EarlyStopping's best weights
    assert len(snapshot.state["history"]["loss"]) == 2


def test_resume_refuses_what_would_not_continue_exactly(tmp_path):
    config = write_config(tmp_path, dropout=False)
    run = run_path(train(config, "--runs-dir", tmp_path, "--set", "epochs=2").stdout)
    changed = train("--resume", run, "--set", "epochs=4", "--set", "optimizer.learning_rate=0.5", code=2)
    assert "optimizer: cannot change when resuming" in changed.stderr and "allowed: epochs" in changed.stderr
    assert "Traceback" not in changed.output + changed.stderr
    done = train("--resume", run, code=2)
    assert "already trained 2 epoch(s) of 2" in done.stderr and "--set epochs=4" in done.stderr
    both = train(config, "--resume", run, code=2)
    assert "not both" in both.stderr
    good = (run / CHECKPOINT).read_bytes()
    (run / CHECKPOINT).write_bytes(good[:len(good) // 2])
    torn = train("--resume", run, "--set", "epochs=3", code=2)
    assert "a damaged checkpoint" in torn.stderr
    (run / CHECKPOINT).write_bytes((run / "weights.safetensors").read_bytes())
    weights = train("--resume", run, "--set", "epochs=3", code=2)
    assert "not an nnctl checkpoint" in weights.stderr


def test_resume_refuses_changed_data(tmp_path):
    config = write_config(tmp_path, dropout=False)
    run = run_path(train(config, "--runs-dir", tmp_path, "--set", "epochs=1").stdout)
    write_npz(tmp_path / "tiny.npz", seed=5)
    result = train("--resume", run, "--set", "epochs=2", code=2)
    assert "tiny.npz changed since the run started" in result.stderr


REGRESSION = """\
name: diverge
seed: 0
data: {path: tiny.npz, validation: {split: 0.25}}
model:
  layers:
    - {type: dense, units: 8, activation: relu}
    - {type: dense, units: 1}
loss: mse
optimizer: {type: sgd, learning_rate: 1.0e+12}
epochs: 5
batch_size: 16
"""


def test_a_diverging_run_stops_at_the_first_nan_step_and_keeps_the_last_good_state(tmp_path):
    write_npz(tmp_path / "tiny.npz")
    (tmp_path / "diverge.yaml").write_text(REGRESSION)
    result = train(tmp_path / "diverge.yaml", "--runs-dir", tmp_path, code=1)
    assert "the loss became" in result.stderr and "at epoch 1, step" in result.stderr
    assert "Traceback" not in result.output + result.stderr
    run = RunDirectory(run_path(result.stdout))
    assert run.manifest()["status"] == "failed" and "at epoch 1, step" in run.manifest()["error"]
    weights = run.load_weights()
    assert all(np.isfinite(w).all() for w in weights.values())  # the initial weights, not the NaN ones
    snapshot = checkpoint.load(run.path / CHECKPOINT)
    assert snapshot.epochs_done == 0
    assert all(np.array_equal(weights[name], value) for name, value in snapshot.weights().items())


def test_terminate_on_nan_names_the_epoch_and_step_of_the_first_bad_loss():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 5)).astype(np.float32), rng.standard_normal(64).astype(np.float32)

    class Poison(Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:  # after the second epoch, as if the weights had blown up
                self.model.store.values[:] = np.nan

    for fast_path in (True, False):
        model = Sequential([Dense(4, activation="relu"), Dense(1)], input_shape=(5,), seed=0)
        model.compile("sgd", "mse")
        history = model.fit(x, y, epochs=5, batch_size=8, callbacks=[Poison(), TerminateOnNaN()],
                            fast_path=fast_path)
        assert len(history["loss"]) == 2
        assert model.nonfinite == {"epoch": 3, "step": 1, "steps": 8, "loss": model.nonfinite["loss"]}
        assert np.isnan(model.nonfinite["loss"]) and model.stopped_mid_epoch == 2


def test_without_terminate_on_nan_the_library_fit_runs_on_like_keras():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((32, 3)).astype(np.float32), rng.standard_normal(32).astype(np.float32)
    model = Sequential([Dense(1)], input_shape=(3,), seed=0)
    model.compile({"type": "sgd", "learning_rate": 1e20}, "mse")
    history = model.fit(x, y, epochs=3, batch_size=8)
    assert len(history["loss"]) == 3 and not np.isfinite(history["loss"][-1]) and model.nonfinite is None


@pytest.mark.slow
def test_a_run_killed_with_sigkill_mid_epoch_resumes_to_the_same_bytes(tmp_path):
    long_run = CONFIG.replace("epochs: 6", "epochs: 3000").replace(
        "  - {{type: early_stopping, monitor: val_accuracy, patience: 20, restore_best_weights: true}}\n", "")
    config = write_config(tmp_path, dropout=False, text=long_run)
    env = {**os.environ, "NNCTL_CHECKPOINT_SECONDS": "0.2"}
    command = [sys.executable, "-m", "nnctl", "train", str(config), "--runs-dir", str(tmp_path / "killed"), "-q"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    target = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        found = list((tmp_path / "killed").glob(f"resumable/2*/{CHECKPOINT}"))
        if found and checkpoint.load(found[0]).epochs_done >= 2:
            target = found[0].parent.parent
            break
        time.sleep(0.02)
    assert target is not None and process.poll() is None, "the run ended before it could be killed"
    time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    run = RunDirectory(target)
    assert run.manifest()["status"] == "running"  # it never got to say otherwise
    done = checkpoint.load(run.path / CHECKPOINT).epochs_done
    assert 2 <= done < 3000

    resumed = subprocess.run([sys.executable, "-m", "nnctl", "train", "--resume", str(run.path), "-q"],
                             env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    whole = RunDirectory(run_path(train(config, "--runs-dir", tmp_path / "whole", "-q").stdout))
    assert (run.path / "weights.safetensors").read_bytes() == (whole.path / "weights.safetensors").read_bytes()
    assert values(run.read_json("history.json")) == values(whole.read_json("history.json"))
    assert run.manifest()["status"] == "completed" and run.manifest()["resumed"][0]["from_epoch"] == done


def test_class_weight_from_the_config_weighs_the_loss_like_keras(tmp_path, tiny_config):
    def first_loss(*overrides):
        run = run_path(train(tiny_config, "--runs-dir", tmp_path, "--set", "epochs=1", *overrides).stdout)
        return RunDirectory(run).read_json("history.json")["loss"][0], (run / "weights.safetensors").read_bytes()

    plain, plain_weights = first_loss()
    ones, ones_weights = first_loss("--set", "class_weight={0: 1, 1: 1}")
    heavy, _ = first_loss("--set", "class_weight={0: 1.0, 1: 5.0}")
    assert ones == plain and ones_weights == plain_weights  # weight 1 everywhere changes nothing
    assert heavy > 1.5 * plain  # the positives' losses count five times
    config = (run_path(train(tiny_config, "--runs-dir", tmp_path, "--set", "class_weight={1: 2}").stdout)
              / "config.yaml").read_text()
    assert "class_weight:\n  1: 2" in config  # saved with integer class ids, so the run reloads


def test_evaluate_and_predict_take_a_checkpoint_file(tmp_path):
    config = write_config(tmp_path, dropout=False)
    run = run_path(train(config, "--runs-dir", tmp_path).stdout)
    final = invoke("evaluate", run, "--json")
    best = invoke("evaluate", run, "--json", "--weights", "checkpoints/best.safetensors")
    last = invoke("evaluate", run, "--json", "--weights", run / CHECKPOINT)
    assert final.exit_code == best.exit_code == last.exit_code == 0, best.output + best.stderr
    saved = RunDirectory(run).read_json("metrics.json")
    assert "test (checkpoints/best.safetensors)" in saved and saved["test"] == json.loads(final.stdout)
    missing = invoke("evaluate", run, "--weights", "checkpoints/nope.safetensors")
    assert missing.exit_code == 2 and "nope.safetensors: file is missing" in missing.stderr
