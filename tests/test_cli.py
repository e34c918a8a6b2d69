"""The `nnctl` commands end to end on a tiny generated data set: through click's CliRunner and as real processes."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import safetensors.numpy
from click.testing import CliRunner

from nnctl import __version__
from nnctl.cli import main
from nnctl.config import load_config
from tests.conftest import run_path

EPOCH_LINE = re.compile(r"^Epoch \d+/\d+ - ")
NOTE_LINE = re.compile(r"^(loading compiled kernels|compiling kernels) … [\d.]+ s ")
LOAD_LINE = re.compile(r"^loading data … [\d.]+ s$")  # the first phase, kept when it ends (not a terminal)


def nnctl(*args, cwd=None, **options) -> subprocess.CompletedProcess:
    """`python -m nnctl ARGS` as a real process (no TTY: stdout is a pipe)."""
    return subprocess.run([sys.executable, "-m", "nnctl", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=120, **options)


def train(config, runs_dir, *args):
    result = CliRunner().invoke(main, ["train", str(config), "--runs-dir", str(runs_dir), *args])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def trained(tmp_path_factory, make_npz, tiny_config_text):
    """One finished run of the tiny config, shared by the read-only checks below."""
    folder = tmp_path_factory.mktemp("trained")
    make_npz(folder / "tiny.npz")
    config = folder / "tiny.yaml"
    config.write_text(tiny_config_text, encoding="utf-8")
    result = train(config, folder / "runs")
    return SimpleNamespace(folder=folder, config=config, result=result, run=run_path(result.stdout))


@pytest.fixture
def inputs(trained, tmp_path):
    """`x.npy`: the first 7 test rows."""
    with np.load(trained.folder / "tiny.npz") as data:
        x = data["x_test"][:7]
    np.save(tmp_path / "x.npy", x)
    return tmp_path / "x.npy"


# ---- train -------------------------------------------------------------------------------------
def test_train_output_is_one_plain_line_per_epoch(trained):
    out = trained.result.stdout
    assert "\r" not in out and "\x1b" not in out
    lines = out.splitlines()
    assert LOAD_LINE.match(lines.pop(0)), out
    assert NOTE_LINE.match(lines[0]), lines[0]
    assert all(EPOCH_LINE.match(line) for line in lines[1:4]), out
    assert [line.split(" - ")[0] for line in lines[1:4]] == ["Epoch 1/3", "Epoch 2/3", "Epoch 3/3"]
    assert re.match(r"^test: loss: \d+\.\d{4} - accuracy: \d+\.\d{4}$", lines[4]), lines[4]
    assert lines[5].startswith("run: ") and len(lines) == 6
    assert trained.result.stderr == ""


def test_run_line_names_the_run_and_latest_points_at_it(trained):
    run = trained.run
    assert run.is_dir() and run.parent == trained.folder / "runs" / "tiny"
    assert re.fullmatch(r"\d{8}-\d{6}(-\d+)?", run.name)
    latest = run.parent / "latest"
    assert latest.is_symlink() and latest.resolve() == run.resolve()


def test_run_directory_files(trained):
    run = trained.run
    expected = {"config.yaml", "manifest.json", "history.json", "events.jsonl", "weights.safetensors",
                "preprocessing.json", "metrics.json"}
    assert expected <= {p.name for p in run.iterdir()}
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]

    saved = load_config(run / "config.yaml").config
    assert Path(saved.data.path).is_absolute() and Path(saved.data.path) == trained.folder / "tiny.npz"
    assert (saved.name, saved.seed, saved.epochs, saved.batch_size) == ("tiny", 1, 3, 16)

    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["seed"] == 1 and manifest["epochs_completed"] == 3
    assert {"nnctl", "python", "numpy", "numba"} <= set(manifest["versions"])
    assert manifest["versions"]["nnctl"] == __version__
    assert manifest["config_sha256"] == hashlib.sha256((run / "config.yaml").read_bytes()).hexdigest()
    data = manifest["data"] if isinstance(manifest["data"], list) else [manifest["data"]]
    assert [entry["sha256"] for entry in data] == [hashlib.sha256((trained.folder / "tiny.npz").read_bytes())
                                                     .hexdigest()]
    assert manifest["started"] <= manifest["ended"]
    assert isinstance(manifest["compile_seconds"], float) and manifest["compile_seconds"] >= 0
    assert {"load", "compile", "train", "write"} <= set(manifest["phases"])
    started, ended = (datetime.fromisoformat(manifest[key]).timestamp() for key in ("started", "ended"))
    assert started - 1 <= manifest["first_step_time"] <= ended + 1  # ISO times are whole seconds

    history = json.loads((run / "history.json").read_text())
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "epoch_time", "lr"} <= set(history)
    assert all(len(values) == 3 for values in history.values())
    assert all(np.isfinite(history["loss"]))

    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    assert [event["epoch"] for event in events] == [1, 2, 3]
    assert [event["loss"] for event in events] == history["loss"]

    weights = safetensors.numpy.load_file(str(run / "weights.safetensors"))
    assert weights["dense/kernel"].shape == (10, 8) and weights["dense/bias"].shape == (8,)
    assert weights["dense_1/kernel"].shape == (8, 1) and weights["dense_1/bias"].shape == (1,)
    assert all(w.dtype == np.float32 and np.isfinite(w).all() for w in weights.values())

    assert json.loads((run / "preprocessing.json").read_text()) == {"transforms": []}

    metrics = json.loads((run / "metrics.json").read_text())
    assert {"train", "validation", "test"} <= set(metrics)
    assert metrics["train"]["loss"] == history["loss"][-1]
    assert metrics["validation"]["accuracy"] == history["val_accuracy"][-1]
    assert metrics["test"]["samples"] == 60 and set(metrics["test"]) == {"loss", "accuracy", "samples"}


def test_same_seed_twice_is_byte_identical_in_two_run_dirs(tmp_path, tiny_config):
    first = run_path(train(tiny_config, tmp_path / "runs").stdout)
    second = run_path(train(tiny_config, tmp_path / "runs").stdout)
    assert first != second and first.is_dir() and second.is_dir()
    assert (tmp_path / "runs" / "tiny" / "latest").resolve() == second.resolve()
    weights = [safetensors.numpy.load_file(str(run / "weights.safetensors")) for run in (first, second)]
    assert weights[0].keys() == weights[1].keys()
    assert all(weights[0][key].tobytes() == weights[1][key].tobytes() for key in weights[0])
    histories = [json.loads((run / "history.json").read_text()) for run in (first, second)]
    for history in histories:
        del history["epoch_time"]
    assert histories[0] == histories[1]


def test_equal_weights_give_a_byte_identical_file(trained, tmp_path):
    """What `same seed → byte-identical weights.safetensors` needs: saving is deterministic (16 tries)."""
    from nnctl.runs.rundir import RunDirectory

    weights = safetensors.numpy.load_file(str(trained.run / "weights.safetensors"))
    metadata = {"format": "nnctl", "epochs": "3"}  # what train() writes
    copies = {RunDirectory(tmp_path).save_weights(weights, metadata=metadata, filename=f"w{i}.safetensors")
              .read_bytes() for i in range(16)}
    assert len(copies) == 1


def test_set_is_applied_and_recorded(tmp_path, tiny_config):
    result = train(tiny_config, tmp_path / "runs", "--set", "epochs=2", "--set", "optimizer.learning_rate=0.05")
    run = run_path(result.stdout)
    assert sum(bool(EPOCH_LINE.match(line)) for line in result.stdout.splitlines()) == 2
    saved = load_config(run / "config.yaml").config
    assert (saved.epochs, saved.optimizer.learning_rate) == (2, 0.05)
    history = json.loads((run / "history.json").read_text())
    assert len(history["loss"]) == 2 and history["lr"] == [0.05, 0.05]


def test_quiet_prints_only_the_run_line(tmp_path, tiny_config):
    result = train(tiny_config, tmp_path / "runs", "--quiet")
    assert result.stdout.splitlines() == [f"run: {run_path(result.stdout)}"]
    assert result.stderr == ""


def test_check_summarizes_a_good_config(tiny_config):
    result = CliRunner().invoke(main, ["check", str(tiny_config)])
    assert result.exit_code == 0, result.output
    assert result.stdout == (f"{tiny_config}: ok (2 layers, 97 parameters, 192 training rows, 48 validation rows, "
                             f"60 test rows)\n")


def test_config_show_applies_set(tiny_config):
    result = CliRunner().invoke(main, ["config", "show", str(tiny_config), "--set", "epochs=2"])
    assert result.exit_code == 0, result.output
    assert "\nepochs: 2\n" in result.stdout and "\nbatch_size: 16\n" in result.stdout


# ---- evaluate ----------------------------------------------------------------------------------
def test_evaluate_json(trained):
    result = CliRunner().invoke(main, ["evaluate", str(trained.run.parent / "latest"), "--json"])
    assert result.exit_code == 0, result.output
    scores = json.loads(result.stdout)
    assert set(scores) == {"loss", "accuracy", "samples"} and scores["samples"] == 60
    assert 0 <= scores["accuracy"] <= 1 and scores["loss"] > 0
    saved = json.loads((trained.run / "metrics.json").read_text())["test"]
    assert scores == pytest.approx(saved)


def test_evaluate_table_on_the_validation_split(trained):
    result = CliRunner().invoke(main, ["evaluate", str(trained.run), "--split", "validation"])
    assert result.exit_code == 0, result.output
    assert "validation split" in result.stdout
    assert re.search(r"samples\s*│\s*48", result.stdout), result.stdout


@pytest.fixture
def run_copy(trained, tmp_path):
    """A copy of the trained run (its `latest` link beside it), free to damage."""
    import shutil

    copy = tmp_path / "runs" / "tiny" / trained.run.name
    shutil.copytree(trained.run, copy)
    return copy


def _read_only(monkeypatch):
    """Every write into a run fails as on a read-only mount (tests run as root, where chmod does not stop one)."""
    import errno

    from nnctl.runs import rundir

    def refuse(path, data):
        raise rundir.describe_os_error(OSError(errno.EROFS, os.strerror(errno.EROFS)), path)

    monkeypatch.setattr(rundir, "atomic_write_bytes", refuse)


@pytest.mark.parametrize("as_json", [False, True])
def test_evaluate_on_a_read_only_run_prints_the_figures_then_one_line(run_copy, monkeypatch, as_json):
    before = (run_copy / "metrics.json").read_bytes()
    _read_only(monkeypatch)
    result = CliRunner().invoke(main, ["evaluate", str(run_copy)] + (["--json"] if as_json else []))
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    if as_json:
        assert set(json.loads(result.stdout)) == {"loss", "accuracy", "samples"}
    else:
        assert re.search(r"samples\s*│\s*60", result.stdout), result.stdout
    assert result.stderr == (f"error: {run_copy / 'metrics.json'}: the results were not saved: cannot write "
                             f"{run_copy / 'metrics.json'}: Read-only file system\n")
    assert (run_copy / "metrics.json").read_bytes() == before


def _setpriv():
    import shutil

    if shutil.which("setpriv") is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv to run a process as another user")
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.mark.slow  # the other user compiles the kernels afresh (~10 s)
def test_evaluate_and_predict_on_a_read_only_run_as_another_user(tmp_path_factory, make_npz, tiny_config_text):
    """A real read-only run folder: chmod a-w, read by a user that is not root (whom chmod does not stop)."""
    import stat
    import tempfile

    become = _setpriv()
    folder = Path(tempfile.mkdtemp(prefix="nnctl-ro-"))  # outside pytest's root-only temp folder
    try:
        make_npz(folder / "tiny.npz")
        (folder / "tiny.yaml").write_text(tiny_config_text, encoding="utf-8")
        run = run_path(train(folder / "tiny.yaml", folder / "runs", "--quiet").stdout)
        with np.load(folder / "tiny.npz") as data:
            np.save(folder / "x.npy", data["x_test"][:3])
        (folder / "cache").mkdir()
        for path in [folder, *folder.rglob("*")]:  # readable by all, writable by none (but the cache)
            mode = path.stat().st_mode | stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
            if path.is_dir():
                mode |= stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
            path.chmod(0o777 if path == folder / "cache" else mode & ~0o222)
        # Numba caches compiled kernels beside its sources, which that user may not write either.
        env = {**os.environ, "NUMBA_CACHE_DIR": str(folder / "cache"), "HOME": str(folder / "cache")}
        evaluate = subprocess.run([*become, sys.executable, "-m", "nnctl", "evaluate", str(run), "--json"],
                                  capture_output=True, text=True, timeout=120, env=env)
        assert evaluate.returncode == 1, evaluate.stderr
        assert set(json.loads(evaluate.stdout)) == {"loss", "accuracy", "samples"}
        assert evaluate.stderr.startswith(f"error: {run / 'metrics.json'}: the results were not saved: ")
        assert evaluate.stderr.endswith(": Permission denied\n") and len(evaluate.stderr.splitlines()) == 1
        predict = subprocess.run([*become, sys.executable, "-m", "nnctl", "predict", str(run), "--input",
                                  str(folder / "x.npy"), "--output", str(run / "out.csv")],
                                 capture_output=True, text=True, timeout=120, env=env)
        assert predict.returncode == 2 and "Traceback" not in predict.stderr
        assert predict.stderr == f"error: {run / 'out.csv'}: cannot write (Permission denied)\n"
    finally:
        for path in [folder, *folder.rglob("*")]:
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)
        import shutil
        shutil.rmtree(folder, ignore_errors=True)


def test_a_damaged_metrics_json_is_not_overwritten(run_copy):
    (run_copy / "metrics.json").write_text("[1, 2", encoding="utf-8")
    result = CliRunner().invoke(main, ["evaluate", str(run_copy), "--json"])
    assert result.exit_code == 2 and json.loads(result.stdout)["samples"] == 60
    assert result.stderr.startswith(f"error: {run_copy / 'metrics.json'}: is not valid JSON (line 1, column 6: ")
    assert result.stderr.endswith("; the results were not saved over it\n")
    assert (run_copy / "metrics.json").read_text() == "[1, 2"


def _nan_weights(run):
    tensors = safetensors.numpy.load((run / "weights.safetensors").read_bytes())
    tensors["dense_1/bias"][0] = np.nan  # the output's: a hidden layer's NaN could vanish behind a ReLU
    (run / "weights.safetensors").write_bytes(safetensors.numpy.save(tensors))


def test_evaluate_json_on_nan_weights_is_strict_json_with_null(run_copy):
    _nan_weights(run_copy)
    result = CliRunner().invoke(main, ["evaluate", str(run_copy), "--json"])
    assert result.exit_code == 0, result.output
    assert "NaN" not in result.stdout
    scores = json.loads(result.stdout, parse_constant=lambda name: pytest.fail(f"{name} in --json output"))
    assert scores["loss"] is None and scores["samples"] == 60
    assert result.stderr == (f"note: {run_copy / 'weights.safetensors'}: `dense_1/bias` hold(s) non-finite "
                             f"values (NaN or inf)\n")
    assert json.loads((run_copy / "metrics.json").read_text())["test"]["loss"] is None


def test_evaluate_text_on_nan_weights_says_why(run_copy):
    _nan_weights(run_copy)
    result = CliRunner().invoke(main, ["evaluate", str(run_copy)])
    assert result.exit_code == 0, result.output
    assert re.search(r"loss\s*│\s*nan \(the weights hold non-finite values\)", result.stdout), result.stdout


def test_runs_and_compare_json_are_strict_with_nan_in_a_history(run_copy):
    history = json.loads((run_copy / "history.json").read_text())
    history["val_loss"][-1] = float("nan")  # Python's json writes the non-standard NaN token
    (run_copy / "history.json").write_text(json.dumps(history), encoding="utf-8")
    for args in (["runs", str(run_copy.parent), "--json"], ["compare", str(run_copy), str(run_copy), "--json"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        json.loads(result.stdout, parse_constant=lambda name: pytest.fail(f"{name} in {args[0]} --json output"))


def test_evaluate_a_kfold_run_evaluates_every_fold_or_the_one_named(tiny_config, tmp_path):
    result = CliRunner().invoke(main, ["kfold", str(tiny_config), "--folds", "2", "--runs-dir", str(tmp_path),
                                       "--quiet"])
    run = run_path(result.stdout)
    both = CliRunner().invoke(main, ["evaluate", str(run), "--json"])
    assert both.exit_code == 0 and json.loads(both.stdout)["folds"] == 2, both.output
    fold = CliRunner().invoke(main, ["evaluate", str(run), "--weights", "fold_2/weights.safetensors", "--json"])
    assert fold.exit_code == 0 and json.loads(fold.stdout)["samples"] == 60, fold.output


# ---- predict -----------------------------------------------------------------------------------
@pytest.mark.parametrize("output, message", [
    ("nope/out.csv", "error: {out}: cannot write: the folder {parent} does not exist\n"),
    ("folder.csv", "Error: Invalid value for '--output': File '{out}' is a directory.\n"),  # click's own check
    ("out.txt", "error: cannot write outputs to 'out.txt': use a .npy, .npz, .csv or .jsonl file\n"),
])
def test_predict_output_that_cannot_be_written(trained, inputs, tmp_path, output, message):
    (tmp_path / "folder.csv").mkdir()
    out = tmp_path / output
    result = CliRunner().invoke(main, ["predict", str(trained.run), "--input", str(inputs), "--output", str(out)])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    assert result.stderr.endswith(message.format(out=out, parent=out.parent)) and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_predict_output_on_a_read_only_file_system(trained, inputs, tmp_path, monkeypatch):
    import errno

    from nnctl.train import inference

    def refuse(path, data):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(inference, "atomic_write_bytes", refuse)
    out = tmp_path / "out.npy"
    result = CliRunner().invoke(main, ["predict", str(trained.run), "--input", str(inputs), "--output", str(out)])
    assert result.exit_code == 2 and result.stderr == f"error: {out}: cannot write (Read-only file system)\n"
    assert not out.exists()


def test_predict_outputs_agree_across_formats(trained, inputs, tmp_path):
    runner = CliRunner()
    for suffix in ("npy", "csv", "jsonl"):
        result = runner.invoke(main, ["predict", str(trained.run), "--input", str(inputs),
                                      "--output", str(tmp_path / f"out.{suffix}")])
        assert result.exit_code == 0, result.output
        assert result.stdout == f"wrote 7 prediction(s) to {tmp_path / f'out.{suffix}'}\n"
    from_npy = np.load(tmp_path / "out.npy")
    assert from_npy.shape == (7, 1) and ((from_npy > 0) & (from_npy < 1)).all()
    with open(tmp_path / "out.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["output"]
    from_csv = np.array([[float(v) for v in row] for row in rows[1:]])
    from_jsonl = np.array([json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()])
    np.testing.assert_allclose(from_csv, from_npy, rtol=1e-6)
    np.testing.assert_allclose(from_jsonl, from_npy, rtol=1e-6)


def test_predict_table_has_one_row_per_sample(trained, inputs):
    result = CliRunner().invoke(main, ["predict", str(trained.run), "--input", str(inputs)])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if re.match(r"^│\s*\d+\s*│\s*[01]\s*│\s*0\.\d{4}\s*│$", line)]
    assert len(rows) == 7, result.stdout
    assert "class" in result.stdout and "probability" in result.stdout


def test_predict_table_stops_at_50_rows(trained, tmp_path):
    np.save(tmp_path / "many.npy", np.zeros((53, 10), np.float32))
    result = CliRunner().invoke(main, ["predict", str(trained.run), "--input", str(tmp_path / "many.npy")])
    assert result.exit_code == 0, result.output
    assert len([line for line in result.stdout.splitlines() if re.match(r"^│\s*\d+\s*│", line)]) == 50
    assert result.stdout.splitlines()[-1] == "… 3 more rows: use --output FILE to save them all"


def test_predict_reads_csv_with_a_header(trained, inputs, tmp_path):
    x = np.load(inputs)
    np.savetxt(tmp_path / "x.csv", x, delimiter=",", header=",".join(f"f{i}" for i in range(10)), comments="")
    runner = CliRunner()
    for name in ("x.csv", "x.npy"):
        result = runner.invoke(main, ["predict", str(trained.run), "--input", str(inputs.parent / name),
                                      "--output", str(tmp_path / f"{name}.npy")])
        assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(tmp_path / "x.csv.npy"), np.load(tmp_path / "x.npy.npy"), rtol=1e-5)


@pytest.mark.parametrize("command", [["evaluate"], ["predict", "--input", "x.npy"]])
def test_a_folder_that_is_not_a_run(tmp_path, command):
    result = CliRunner().invoke(main, [command[0], str(tmp_path), *command[1:]])
    assert result.exit_code == 2
    assert result.stderr == f"error: {tmp_path} is not a run directory (no manifest.json)\n"
    missing = CliRunner().invoke(main, [command[0], str(tmp_path / "nope"), *command[1:]])
    assert missing.exit_code == 2 and missing.stderr == f"error: no such run: {tmp_path / 'nope'}\n"


def test_predict_inputs_of_the_wrong_width(trained, tmp_path):
    np.save(tmp_path / "narrow.npy", np.zeros((3, 7), np.float32))
    result = CliRunner().invoke(main, ["predict", str(trained.run), "--input", str(tmp_path / "narrow.npy")])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert result.stderr == (f"error: {tmp_path / 'narrow.npy'}: the model takes inputs of shape [10] per sample, "
                             f"the file has [7]\n")


PREDICT_INPUTS_THAT_LIE = [  # (file name, how to make it in folder `d`, the message's end)
    ("x.csv", lambda d: (d / "x.csv").write_bytes(b"1,2\n\xff\xfe,3\n"), "x.csv:2: not UTF-8 text"),
    ("x.csv", lambda d: (d / "x.csv").write_text("a,b\n1,2\n1,nan\n"), "x.csv:3: column 'b' is missing a value, got 'nan'"),
    ("x.npy", lambda d: np.save(d / "x.npy", np.array([[1.0, np.inf]])), "x.npy: x has +inf at row 0, column 1"),
    ("x.npy", lambda d: np.save(d / "x.npy", np.float32(3)), "x.npy: x is a single value"),
    ("x.npy", lambda d: np.save(d / "x.npy", np.zeros((0, 10), np.float32)), "x.npy: x has no rows"),
    ("x.npy", lambda d: os.mkfifo(d / "x.npy"), "x.npy is a FIFO (named pipe), not an input file"),
    ("x.txt", lambda d: os.mkfifo(d / "x.txt"), "x.txt is a FIFO (named pipe), not a text file"),
    ("x.txt", lambda d: (d / "x.txt").write_bytes(b"good\n\xff\n"), "x.txt:2: not UTF-8 text"),
]


@pytest.mark.parametrize("name, make, message", PREDICT_INPUTS_THAT_LIE)
def test_predict_inputs_that_lie_are_one_line(trained, tmp_path, name, make, message):
    make(tmp_path)
    result = CliRunner().invoke(main, ["predict", str(trained.run), "--input", str(tmp_path / name)])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit) and len(result.stderr.splitlines()) == 1
    assert message in result.stderr, result.stderr

# ---- summary, help, version --------------------------------------------------------------------
IMDB = """\
name: imdb
data: {path: not-needed.npz}
model:
  input_shape: [10000]
  layers:
    - {type: dense, units: 16, activation: relu}
    - {type: dense, units: 16, activation: relu}
    - {type: dense, units: 1, activation: sigmoid}
loss: binary_crossentropy
optimizer: rmsprop
metrics: [accuracy]
"""


def test_summary_of_the_book_imdb_model_reads_no_data(tmp_path):
    """With `model.input_shape` given, summary needs no data file (here it does not exist)."""
    (tmp_path / "imdb.yaml").write_text(IMDB, encoding="utf-8")
    result = CliRunner().invoke(main, ["summary", str(tmp_path / "imdb.yaml")])
    assert result.exit_code == 0, result.output
    params = [line.split("│")[-2].strip() for line in result.stdout.splitlines() if "(Dense)" in line]
    assert params == ["160,016", "272", "17"]
    assert "(None, 16)" in result.stdout and "(None, 1)" in result.stdout
    assert " Total params: 160,305 (626.19 KB)" in result.stdout.splitlines()
    assert " Non-trainable params: 0 (0.00 B)" in result.stdout.splitlines()


@pytest.mark.parametrize("config, total, rows", [
    # Keras's model.summary() for the book's listings 5.1, 6.1 (maxlen 20) and 6.4 (maxlen 500).
    ("mnist_convnet", "93,322", [("conv2d (Conv2D)", "(None, 26, 26, 32)", "320"),
                                 ("max_pooling2d_1 (MaxPooling2D)", "(None, 5, 5, 64)", "0"),
                                 ("conv2d_2 (Conv2D)", "(None, 3, 3, 64)", "36,928")]),
    ("imdb_embedding", "80,161", [("embedding (Embedding)", "(None, 20, 8)", "80,000"),
                                  ("flatten (Flatten)", "(None, 160)", "0")]),
    ("imdb_conv1d", "1,315,937", [("embedding (Embedding)", "(None, 500, 128)", "1,280,000"),
                                  ("conv1d (Conv1D)", "(None, 494, 32)", "28,704"),
                                  ("max_pooling1d (MaxPooling1D)", "(None, 98, 32)", "0"),
                                  ("conv1d_1 (Conv1D)", "(None, 92, 32)", "7,200"),
                                  ("global_max_pooling1d (GlobalMaxPooling1D)", "(None, 32)", "0")]),
])
def test_summary_of_the_book_nd_models_matches_keras(config, total, rows):
    result = CliRunner().invoke(main, ["summary", str(Path(__file__).parent.parent / "configs" / f"{config}.yaml")])
    assert result.exit_code == 0, result.output + result.stderr
    table = [[cell.strip() for cell in line.split("│")[1:-1]] for line in result.stdout.splitlines() if "│" in line]
    for row in rows:
        assert list(row) in table
    assert f" Total params: {total} " in result.stdout and " Non-trainable params: 0 (0.00 B)" in result.stdout


def test_summary_reads_the_input_shape_from_the_data(tiny_config):
    result = CliRunner().invoke(main, ["summary", str(tiny_config)])
    assert result.exit_code == 0, result.output
    assert " Total params: 97 (388.00 B)" in result.stdout.splitlines()


def _commands(group, prefix=()):
    for name, command in group.commands.items():
        yield prefix + (name,)
        if hasattr(command, "commands"):
            yield from _commands(command, prefix + (name,))


ALL_COMMANDS = list(_commands(main))


def test_help_lists_every_command():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert {"train", "evaluate", "predict", "summary", "check", "config", "schema"} <= set(main.commands)
    listed = result.stdout.split("Commands:")[1]
    for name in main.commands:
        assert re.search(rf"^  {name}\b", listed, re.M), name
    assert "Example" in result.stdout


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=" ".join)
def test_every_command_help_has_an_example(command):
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.stdout


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"nnctl, version {__version__}\n"


def test_importing_the_cli_loads_neither_numpy_nor_numba():
    code = ("import sys, nnctl.cli; heavy = [m for m in ('numba', 'numpy', 'pydantic') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_help_and_version_as_a_process():
    helped = nnctl("--help")
    assert helped.returncode == 0 and "Commands:" in helped.stdout
    version = nnctl("--version")
    assert version.returncode == 0 and version.stdout == f"nnctl, version {__version__}\n"


# ---- as real processes -------------------------------------------------------------------------
def test_train_evaluate_predict_as_processes(tmp_path, tiny_config, inputs):
    trained = nnctl("train", "tiny.yaml", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert trained.stderr == ""
    lines = trained.stdout.splitlines()
    assert "\r" not in trained.stdout and "\x1b" not in trained.stdout
    assert LOAD_LINE.match(lines.pop(0)), trained.stdout
    assert NOTE_LINE.match(lines[0]) and len(lines) == 6
    assert all(EPOCH_LINE.match(line) for line in lines[1:4]) and lines[4].startswith("test: ")
    run = tmp_path / run_path(trained.stdout)  # relative to the working folder: runs/tiny/<stamp>
    assert run.is_dir() and (tmp_path / "runs" / "tiny" / "latest").resolve() == run.resolve()

    evaluated = nnctl("evaluate", "runs/tiny/latest", "--json", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    scores = json.loads(evaluated.stdout)
    assert set(scores) == {"loss", "accuracy", "samples"} and scores["samples"] == 60

    predicted = nnctl("predict", "runs/tiny/latest", "--input", inputs, "--output", "out.csv", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    assert predicted.stdout == "wrote 7 prediction(s) to out.csv\n"
    from_csv = np.loadtxt(tmp_path / "out.csv", delimiter=",", skiprows=1, ndmin=2)
    in_process = CliRunner().invoke(main, ["predict", str(run), "--input", str(inputs), "--output",
                                           str(tmp_path / "out.npy")])
    assert in_process.exit_code == 0, in_process.output
    np.testing.assert_allclose(from_csv, np.load(tmp_path / "out.npy"), rtol=1e-6)


def test_bad_config_as_a_process(tmp_path, tiny_config):
    tiny_config.write_text(tiny_config.read_text().replace("units: 8", "units: sixteen"), encoding="utf-8")
    result = nnctl("train", "tiny.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == "error: tiny.yaml:8:28: model.layers[0].units: expected a positive integer, got 'sixteen'\n"
    assert not (tmp_path / "runs").exists()


BIG = """\
name: big
seed: 3
data: {path: big.npz}
model:
  layers:
    - {type: dense, units: 64, activation: relu}
    - {type: dense, units: 64, activation: relu}
    - {type: dense, units: 1, activation: sigmoid}
loss: binary_crossentropy
metrics: [accuracy]
epochs: 200
batch_size: 8
"""


@pytest.mark.slow
def test_ctrl_c_stops_after_the_epoch_and_keeps_everything(tmp_path, make_npz):
    """200 epochs of 20,000 rows take about 10 s here; SIGINT after the first epoch stops the run cleanly."""
    make_npz(tmp_path / "big.npz", rows=20000, features=50, test_rows=0)
    (tmp_path / "big.yaml").write_text(BIG, encoding="utf-8")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "nnctl", "train", "big.yaml"], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen = []
        for line in process.stdout:
            seen.append(line)
            if line.startswith("Epoch 1/"):
                break
        assert seen and seen[-1].startswith("Epoch 1/200 - "), "".join(seen)
        interrupted_at = time.monotonic()
        process.send_signal(signal.SIGINT)
        rest, errors = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, errors
    assert time.monotonic() - interrupted_at < 10
    assert "Traceback" not in errors
    assert "interrupted after" in errors
    run = tmp_path / run_path("".join(seen) + rest)
    manifest = json.loads((run / "manifest.json").read_text())
    completed = manifest["epochs_completed"]
    assert manifest["status"] == "interrupted" and 1 <= completed < 200
    history = json.loads((run / "history.json").read_text())
    assert all(len(values) == completed for values in history.values())
    assert len((run / "events.jsonl").read_text().splitlines()) == completed
    weights = safetensors.numpy.load_file(str(run / "weights.safetensors"))
    assert weights["dense/kernel"].shape == (50, 64)
    assert all(np.isfinite(w).all() for w in weights.values())


def test_a_cli_option_error_names_the_option(tmp_path, tiny_config):
    result = CliRunner().invoke(main, ["train", str(tiny_config), "--device", "cuda", "--runs-dir",
                                       str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert "--device cuda: device: cannot run on cuda: " in result.stderr  # here: no GPU, or the extra missing
    assert "--set" not in result.stderr and not (tmp_path / "runs").exists()


def test_help_lists_the_devices():
    from nnctl.cli import DEVICES
    from nnctl.nn.cudapath import DEVICES as MODEL_DEVICES

    assert DEVICES == [*MODEL_DEVICES, "auto"]
    result = CliRunner().invoke(main, ["train", "--help"])
    assert "--device [cpu|cuda|auto]" in result.output


# ---- predict on CSV files as people have them (issue 15) ---------------------------------------
IRIS_CONFIG = """\
name: iris
seed: 1
data:
  dataset: {type: csv, path: iris.csv, target: species}
  transforms: [standardize]
model:
  input_shape: [4]
  layers: [{type: dense, units: 8, activation: relu}, {type: dense, units: 3, activation: softmax}]
loss: sparse_categorical_crossentropy
metrics: [accuracy]
epochs: 2
batch_size: 8
"""


@pytest.fixture(scope="module")
def iris_run(tmp_path_factory):
    """A run trained on an iris look-alike with the species as text."""
    from tests.data import sklearn_like

    folder = tmp_path_factory.mktemp("iris")
    sklearn_like.iris(folder / "iris.csv")
    (folder / "iris.yaml").write_text(IRIS_CONFIG, encoding="utf-8")
    result = train(folder / "iris.yaml", folder / "runs")
    lines = (folder / "iris.csv").read_text().splitlines()
    return SimpleNamespace(folder=folder, run=run_path(result.stdout), header=lines[0].split(","),
                           rows=[line.split(",") for line in lines[1:6]])


def write_columns(path, header, rows, names):
    """`rows` (with `header`) written with only the columns `names`, in that order (None: no header row)."""
    picked = [[row[header.index(name)] for name in names] for row in rows]
    path.write_text("\n".join(([",".join(names)] if names and header else []) + [",".join(r) for r in picked]) + "\n")
    return path


def predict_npy(run, source, out):
    result = CliRunner().invoke(main, ["predict", str(run), "--input", str(source), "--output", str(out)])
    assert result.exit_code == 0, result.output
    return np.load(out)


def test_predict_matches_csv_columns_by_header_name(iris_run, tmp_path):
    header, rows = iris_run.header, iris_run.rows
    features = header[:4]
    same = predict_npy(iris_run.run, write_columns(tmp_path / "a.csv", header, rows, features), tmp_path / "a.npy")
    shuffled = ["petal_width", "species", "sepal_length", "petal_length", "sepal_width"]  # target kept, dropped
    moved = predict_npy(iris_run.run, write_columns(tmp_path / "b.csv", header, rows, shuffled), tmp_path / "b.npy")
    np.testing.assert_array_equal(moved, same)
    (tmp_path / "c.csv").write_text("\n".join(",".join(r[:4]) for r in rows) + "\n")  # no header: by position
    np.testing.assert_array_equal(predict_npy(iris_run.run, tmp_path / "c.csv", tmp_path / "c.npy"), same)
    (tmp_path / "d.csv").write_text("\n".join(",".join(r) for r in rows) + "\n")  # the training layout, no header
    np.testing.assert_array_equal(predict_npy(iris_run.run, tmp_path / "d.csv", tmp_path / "d.npy"), same)


@pytest.mark.parametrize("names, message", [
    (["sepal_length", "sepal_width", "petal_length"], "missing column(s) 'petal_width'"),
    (["sepal_length", "sepal_width", "petal_length", "petal_width", "colour"], "unknown column(s) 'colour'"),
    (["sepal_length", "sepal_width", "petal_len", "petal_width"],
     "missing column(s) 'petal_length'; unknown column(s) 'petal_len'"),
])
def test_predict_refuses_missing_or_unknown_csv_columns_by_name(iris_run, tmp_path, names, message):
    rows = [row[:4] + ["1.0"] for row in iris_run.rows]
    header = iris_run.header[:4] + ["colour"]
    if "petal_len" in names:
        header = [name if name != "petal_length" else "petal_len" for name in header]
    source = write_columns(tmp_path / "x.csv", header, rows, names)
    result = CliRunner().invoke(main, ["predict", str(iris_run.run), "--input", str(source)])
    assert result.exit_code == 2, result.output
    assert result.stderr == (f"error: {source}: {message} (the model was trained on: 'sepal_length', "
                             f"'sepal_width', 'petal_length', 'petal_width')\n")


def test_predict_csv_without_a_header_of_another_width(iris_run, tmp_path):
    (tmp_path / "x.csv").write_text("1,2,3\n4,5,6\n")
    result = CliRunner().invoke(main, ["predict", str(iris_run.run), "--input", str(tmp_path / "x.csv")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.startswith(f"error: {tmp_path / 'x.csv'}: rows of 3 values without a header; the model "
                                    f"takes 4 (or the training file's 5 columns)")


def test_predict_prints_csv_classes_by_name(iris_run, tmp_path):
    source = write_columns(tmp_path / "x.csv", iris_run.header, iris_run.rows, iris_run.header[:4])
    result = CliRunner().invoke(main, ["predict", str(iris_run.run), "--input", str(source)])
    assert result.exit_code == 0, result.output
    assert re.search(r"│\s*\d (setosa|versicolor|virginica)\s*│", result.stdout), result.stdout
    saved = json.loads((iris_run.run / "preprocessing.json").read_text())
    assert saved["csv"]["classes"] == ["setosa", "versicolor", "virginica"]
    assert saved["csv"]["features"] == iris_run.header[:4]


def test_predict_csv_errors_name_line_column_and_value(iris_run, tmp_path):
    (tmp_path / "x.csv").write_text("sepal_length,sepal_width,petal_length,petal_width\n1,2,3,4\n1,2,oops,4\n")
    result = CliRunner().invoke(main, ["predict", str(iris_run.run), "--input", str(tmp_path / "x.csv")])
    assert result.exit_code == 2
    assert result.stderr == f"error: {tmp_path / 'x.csv'}:3: column 'petal_length' must be a number, got 'oops'\n"


DIABETES_CONFIG = """\
name: diabetes
seed: 1
data:
  dataset: {type: csv, path: diabetes.csv, target: target}
  transforms: [{type: impute, strategy: median}, standardize]
model:
  input_shape: [10]
  layers: [{type: dense, units: 4, activation: relu}, {type: dense, units: 1}]
loss: mse
metrics: [mae]
epochs: 2
batch_size: 8
"""


def test_predict_reapplies_the_imputation_fitted_on_train(tmp_path):
    from tests.data import sklearn_like

    path = sklearn_like.diabetes(tmp_path / "diabetes.csv")
    lines = path.read_text().splitlines()
    lines[3] = ",".join(["NA"] + lines[3].split(",")[1:])  # a missing age in the training rows
    path.write_text("\n".join(lines) + "\n")
    (tmp_path / "diabetes.yaml").write_text(DIABETES_CONFIG, encoding="utf-8")
    run = run_path(train(tmp_path / "diabetes.yaml", tmp_path / "runs").stdout)
    saved = json.loads((run / "preprocessing.json").read_text())["transforms"][0]
    ages = [float(line.split(",")[0]) for line in lines[1:] if not line.startswith("NA")]
    assert saved["type"] == "impute" and saved["values"][0] == pytest.approx(np.median(ages))
    header, row = lines[0].split(","), lines[1].split(",")
    (tmp_path / "a.csv").write_text(f"{','.join(header[:10])}\n{','.join(row[:10])}\nNA,{','.join(row[1:10])}\n")
    (tmp_path / "b.csv").write_text(f"{','.join(header[:10])}\n{','.join(row[:10])}\n{saved['values'][0]!r},"
                                    f"{','.join(row[1:10])}\n")
    imputed = predict_npy(run, tmp_path / "a.csv", tmp_path / "a.npy")
    np.testing.assert_allclose(imputed, predict_npy(run, tmp_path / "b.csv", tmp_path / "b.npy"), rtol=1e-6)


def test_predict_refuses_missing_values_without_impute(iris_run, tmp_path):
    (tmp_path / "x.csv").write_text("sepal_length,sepal_width,petal_length,petal_width\n1,2,3,4\n1,,3,4\n")
    result = CliRunner().invoke(main, ["predict", str(iris_run.run), "--input", str(tmp_path / "x.csv")])
    assert result.exit_code == 2
    assert result.stderr == (f"error: {tmp_path / 'x.csv'}:3: column 'sepal_width' is missing a value, got ''; "
                             f"fill it in or add an `impute` transform\n")


SKLEARN_LIKE_CONFIG = """\
name: {name}
seed: 3
data:
  dataset: {{type: csv, path: {name}.csv, target: {target}}}
  transforms: [standardize]
  validation: {{split: 0.25}}
model:
  layers: [{{type: dense, units: {units}, activation: {activation}}}]
loss: {loss}
epochs: 2
batch_size: 8
"""


@pytest.mark.parametrize("name, target, units, activation, loss, shown", [
    ("iris", "species", 3, "softmax", "sparse_categorical_crossentropy", r"\d (setosa|versicolor|virginica)"),
    pytest.param("wine", "target", 3, "softmax", "sparse_categorical_crossentropy", r"\d class_\d",
                 marks=pytest.mark.slow),  # CI loads all four in tests/data/test_csv_table.py, trains on iris
    pytest.param("breast_cancer", "target", 1, "sigmoid", "binary_crossentropy", r"│\s*[01]\s*│",
                 marks=pytest.mark.slow),
    pytest.param("diabetes", "target", 1, "linear", "mse", r"│\s*-?\d+\.\d+", marks=pytest.mark.slow),
])
def test_scikit_learn_look_alikes_train_evaluate_and_predict(tmp_path, name, target, units, activation, loss, shown):
    from tests.data import sklearn_like

    getattr(sklearn_like, name)(tmp_path / f"{name}.csv")
    (tmp_path / "c.yaml").write_text(SKLEARN_LIKE_CONFIG.format(name=name, target=target, units=units,
                                                                activation=activation, loss=loss))
    run = run_path(train(tmp_path / "c.yaml", tmp_path / "runs").stdout)
    evaluated = CliRunner().invoke(main, ["evaluate", str(run), "--split", "validation"])
    assert evaluated.exit_code == 0, evaluated.output
    # the training file itself, target column included: it is dropped by name
    predicted = CliRunner().invoke(main, ["predict", str(run), "--input", str(tmp_path / f"{name}.csv")])
    assert predicted.exit_code == 0, predicted.output
    assert len([line for line in predicted.stdout.splitlines() if re.match(r"^│\s*\d+\s*│", line)]) == 30
    assert re.search(shown, predicted.stdout), predicted.stdout


def test_predict_for_a_model_trained_without_a_header(tmp_path):
    from tests.data import sklearn_like

    sklearn_like.diabetes(tmp_path / "diabetes.csv", header=False)
    (tmp_path / "c.yaml").write_text(DIABETES_CONFIG.replace("target: target}", "target: 10, header: false}"))
    run = run_path(train(tmp_path / "c.yaml", tmp_path / "runs").stdout)
    rows = [line.split(",") for line in (tmp_path / "diabetes.csv").read_text().splitlines()[:3]]
    (tmp_path / "a.csv").write_text("\n".join(",".join(row[:10]) for row in rows) + "\n")
    (tmp_path / "b.csv").write_text("\n".join(",".join(row) for row in rows) + "\n")  # the target left in
    np.testing.assert_array_equal(predict_npy(run, tmp_path / "a.csv", tmp_path / "a.npy"),
                                  predict_npy(run, tmp_path / "b.csv", tmp_path / "b.npy"))
    (tmp_path / "c.csv").write_text(",".join(sklearn_like.DIABETES[:10]) + "\n" + ",".join(rows[0][:10]) + "\n")
    result = CliRunner().invoke(main, ["predict", str(run), "--input", str(tmp_path / "c.csv")])
    assert result.exit_code == 2
    assert result.stderr == (f"error: {tmp_path / 'c.csv'}: the first row is a header, but the model was trained on "
                             f"a CSV without one (10 columns by position): remove the header row\n")
