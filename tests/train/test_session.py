"""The training session: Ctrl-C keeps only whole epochs; the run folder's checkpoint, events, lock, file-system
errors (one line, exit 2 before training, 1 during it) and non-finite weights."""

import errno
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from nnctl.nn import checkpoint
from nnctl.nn.callbacks import Callback, TerminateOnNaN
from nnctl.nn.layers import Dense
from nnctl.nn.model import Sequential
from nnctl.runs import rundir
from nnctl.runs.rundir import RunDirectory
from nnctl.train.session import CHECKPOINT, InterruptHandler
from tests.conftest import invoke, run_path

RNG = np.random.default_rng(0)
X = RNG.standard_normal((64, 5)).astype(np.float32)
Y = X.sum(axis=1)


def small_model():
    model = Sequential([Dense(4, activation="relu"), Dense(1)], input_shape=(5,), seed=0)
    model.compile("rmsprop", "mse")
    return model


def test_a_stop_asked_for_before_fit_trains_nothing():
    handler = InterruptHandler()
    handler.requested = True  # as when Ctrl-C arrives while kernels compile
    model = small_model()
    before = model.get_weights()
    history = model.fit(X, Y, epochs=3, batch_size=8, callbacks=[handler])
    assert history == {} and model.stopped_mid_epoch == 0
    assert all(np.array_equal(before[k], v) for k, v in model.get_weights().items())


def test_a_signal_between_epochs_stops_before_the_next_one():
    handler = InterruptHandler()
    model = small_model()

    class SignalAfterFirstEpoch(Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                handler._handle(None, None)

    history = model.fit(X, Y, epochs=5, batch_size=8, callbacks=[handler, SignalAfterFirstEpoch()])
    assert len(history["loss"]) == 1 and handler.requested and model.stopped_mid_epoch is None


# ---- what a run folder says while and after it is written ---------------------------------------------------



def train_cli(*args, code):
    result = invoke("train", *[str(a) for a in args])
    assert result.exit_code == code, result.output + result.stderr
    assert "Traceback" not in result.output + result.stderr
    return result


def one_error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_the_first_finished_epoch_is_always_checkpointed_and_events_wait_for_their_checkpoint(tmp_path, tiny_config,
                                                                                              monkeypatch):
    monkeypatch.setenv("NNCTL_CHECKPOINT_SECONDS", "1000")  # only the first epoch and the end are written
    seen = []  # (epochs in the checkpoint file, epochs in events.jsonl) at every checkpoint write
    real_save = checkpoint.Snapshot.save

    def spy(snapshot, path):
        out = real_save(snapshot, path)
        events = RunDirectory(path.parent.parent).read_events()
        seen.append((snapshot.epochs_done, [e["epoch"] for e in events if "epoch" in e]))
        return out

    monkeypatch.setattr(checkpoint.Snapshot, "save", spy)
    run = RunDirectory(run_path(train_cli(tiny_config, "--runs-dir", tmp_path / "runs", "-q", code=0).stdout))
    # Epoch 1 is on disk before epoch 2 starts; its event is written only after it.
    assert seen == [(1, []), (3, [1])]
    assert [e["epoch"] for e in run.read_events()] == [1, 2, 3]


def test_a_second_writer_is_refused_before_writing_anything_naming_the_pid(tmp_path, tiny_config):
    run = run_path(train_cli(tiny_config, "--runs-dir", tmp_path / "runs", "-q", code=0).stdout)
    hold = ("import sys, time\nfrom nnctl.runs.rundir import RunDirectory\n"
            "with RunDirectory(sys.argv[1]).lock():\n    print('locked', flush=True)\n    time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = {path: path.stat().st_mtime_ns for path in run.rglob("*")}
        refused = train_cli("--resume", run, "--set", "epochs=5", code=2)
        line = one_error_line(refused)
        assert f"process {holder.pid}" in line and str(run) in line
        assert {path: path.stat().st_mtime_ns for path in run.rglob("*")} == before
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    train_cli("--resume", run, "--set", "epochs=5", "-q", code=0)  # the killed holder left no stale lock


@pytest.mark.parametrize("case", ["dangling", "loop", "name-is-a-file", "latest-is-a-folder", "long-name",
                                  "read-only-runs"])
def test_a_runs_folder_that_cannot_take_the_run_is_one_line_and_exit_2(tmp_path, tiny_config, monkeypatch, case):
    runs, extra = tmp_path / "runs", []
    if case == "dangling":
        os.symlink(tmp_path / "nowhere", runs)
        words = "it is a broken symbolic link"
    elif case == "loop":
        os.symlink(runs, runs)
        words = "Too many levels of symbolic links"
    elif case == "name-is-a-file":
        runs.mkdir()
        (runs / "tiny").write_text("x")
        words = "tiny: it is a file, not a folder"
    elif case == "latest-is-a-folder":
        (runs / "tiny" / "latest").mkdir(parents=True)
        words = "latest is a real folder"
    elif case == "long-name":
        # The config refuses it first now (at most 100 characters); the run folder's own check is in test_rundir.
        extra, words = ["--set", "name=" + "n" * 300], "name"
    else:
        runs.mkdir()
        real_mkdir = os.mkdir

        def read_only(path, *args, **kwargs):
            if str(path).startswith(str(runs)):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
            return real_mkdir(path, *args, **kwargs)

        monkeypatch.setattr(os, "mkdir", read_only)
        words = "Read-only file system"
    line = one_error_line(train_cli(tiny_config, "--runs-dir", runs, *extra, code=2))
    assert words in line and len(line) < 340, line
    assert not list(tmp_path.rglob("manifest.json"))


def test_resuming_a_read_only_run_is_one_line_and_exit_2(tmp_path, tiny_config, monkeypatch):
    run = run_path(train_cli(tiny_config, "--runs-dir", tmp_path / "runs", "-q", code=0).stdout)
    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        if str(path).startswith(str(run)) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    line = one_error_line(train_cli("--resume", run, "--set", "epochs=5", code=2))
    assert line == f"error: cannot write the lock file {run / '.lock'}: Read-only file system"


def fill_disk_after(monkeypatch, checkpoints: int, everything: bool = False):
    """From the `checkpoints`+1-th checkpoint write on, writes fail with ENOSPC (all writes when `everything`)."""
    real = rundir._replace_with
    count = {"checkpoints": 0, "full": False}

    def write(path, data):
        if path.name == "last.safetensors":
            count["checkpoints"] += 1
            count["full"] = count["full"] or count["checkpoints"] > checkpoints
        if count["full"] and (everything or path.name == "last.safetensors"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path.with_name(".tmp")))
        return real(path, data)

    monkeypatch.setattr(rundir, "_replace_with", write)
    monkeypatch.setenv("NNCTL_CHECKPOINT_SECONDS", "0")  # a checkpoint every epoch


def test_a_full_disk_during_a_checkpoint_fails_the_run_and_keeps_the_last_checkpoint_whole(tmp_path, tiny_config,
                                                                                          monkeypatch):
    fill_disk_after(monkeypatch, checkpoints=2)
    result = train_cli(tiny_config, "--runs-dir", tmp_path / "runs", "--set", "epochs=5", "-q", code=1)
    run = RunDirectory(run_path(result.stdout))
    line = one_error_line(result)
    assert f"cannot write {run.path / CHECKPOINT}: No space left on device" in line
    assert "checkpoints/last.safetensors is whole and holds epoch 2" in line and "--resume" in line
    assert line.count("No space left on device") == 1
    manifest = run.manifest()
    assert manifest["status"] == "failed" and manifest["epochs_completed"] == 2
    assert checkpoint.load(run.path / CHECKPOINT).epochs_done == 2
    assert [e["epoch"] for e in run.read_events()] == [1, 2]
    assert len(run.read_json("history.json")["loss"]) == 2
    assert run.load_weights()["dense/kernel"].tobytes() == \
        checkpoint.load(run.path / CHECKPOINT).weights()["dense/kernel"].tobytes()
    monkeypatch.undo()
    train_cli("--resume", run.path, "-q", code=0)  # room again: it continues from epoch 2


def test_when_nothing_can_be_written_any_more_the_message_says_the_run_is_not_marked(tmp_path, tiny_config,
                                                                                    monkeypatch):
    fill_disk_after(monkeypatch, checkpoints=1, everything=True)
    result = train_cli(tiny_config, "--runs-dir", tmp_path / "runs", "-q", code=1)
    run = RunDirectory(run_path(result.stdout))
    line = one_error_line(result)
    assert "No space left on device" in line and "holds epoch 1" in line
    assert "the run could not be marked failed: cannot write" in line and "manifest.json" in line
    assert run.manifest()["status"] == "running" and checkpoint.load(run.path / CHECKPOINT).epochs_done == 1
    assert [e["epoch"] for e in run.read_events()] == [1]


def test_nan_weights_under_a_finite_loss_fail_the_run_and_keep_the_last_good_epoch():
    class PoisonBias(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:  # ReLU turns the NaN unit into 0: every later loss stays finite
                self.model.store.params[1].value[0] = np.nan

    for fast_path in (True, False):
        model = small_model()
        history = model.fit(X, Y, epochs=5, batch_size=8, callbacks=[PoisonBias(), TerminateOnNaN()],
                            fast_path=fast_path)
        assert len(history["loss"]) == 2 and np.isfinite(history["loss"]).all()
        assert model.nonfinite == {"epoch": 3, "weights": "dense/bias", "value": "nan"}
        assert model.stopped_mid_epoch == 2


def test_a_run_whose_weights_turn_nan_is_failed_with_the_weights_of_the_last_good_epoch(tmp_path, tiny_config):
    from nnctl.config import load_config
    from nnctl.train.session import prepare, train

    resolved = load_config(tiny_config)
    prepared = prepare(resolved)
    x = prepared.splits.train[0]
    x[5, 3] = np.nan  # a NaN feature the loader would refuse; ReLU hides it from the loss
    result = train(resolved, tmp_path / "runs", prepared=prepared)
    assert result.status == "failed"
    assert result.error.startswith("the weights became non-finite (nan in dense/") and "at the end of epoch 1" in result.error
    assert "the weights kept are the initial ones" in result.error
    run = result.run
    assert run.manifest()["status"] == "failed"
    assert all(np.isfinite(w).all() for w in run.load_weights().values())
    assert checkpoint.load(run.path / CHECKPOINT).epochs_done == 0 and run.read_json("history.json") == {}
    assert json.loads((run.path / "metrics.json").read_text())["epochs"] == 0


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_a_real_write_limit_during_the_first_checkpoint_fails_the_run_in_one_line(tmp_path, tiny_config):
    import resource

    # Python ignores SIGXFSZ, so a file growing past RLIMIT_FSIZE fails with EFBIG like a full disk would.
    text = tiny_config.read_text().replace("units: 8, activation: relu}", "units: 256, activation: relu}\n"
                                           "    - {type: dense, units: 256, activation: relu}")
    tiny_config.write_text(text)

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (400_000, resource.RLIM_INFINITY))

    done = subprocess.run([sys.executable, "-m", "nnctl", "train", str(tiny_config), "--runs-dir", "runs", "-q"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300, preexec_fn=limit_file_size)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "checkpoints/last.safetensors: File too large" in errors[0], done.stderr
    assert "no checkpoint was written" in errors[0]
    run = RunDirectory(tmp_path / run_path(done.stdout))
    assert run.manifest()["status"] == "failed" and not (run.path / CHECKPOINT).exists()
    assert run.read_events() == [] and not (run.path / "weights.safetensors").exists()


def test_a_resume_removes_the_temp_files_a_killed_writer_left(tmp_path, tiny_config):
    run = run_path(train_cli(tiny_config, "--runs-dir", tmp_path / "runs", "-q", code=0).stdout)
    torn = run / "checkpoints" / ".last.safetensors.99999.0123abcd.tmp"
    torn.write_bytes(b"half a checkpoint")
    train_cli("--resume", run, "--set", "epochs=4", "-q", code=0)
    assert not torn.exists() and not list(run.rglob("*.tmp"))
