"""nnctl.nn.callbacks.paths: callback files stay inside the run folder (at config time, lexically, and when
written, with symbolic links resolved) and checkpoint names are formatted from the epoch and log values only.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from click.testing import CliRunner

from nnctl.cli import main
from nnctl.config.build import make_callback
from nnctl.errors import ArgumentError, NnctlError
from nnctl.nn.callbacks import CSVLogger, ModelCheckpoint
from nnctl.nn.callbacks.paths import check_run_path, check_template, confine, fill_template, template_fields
from nnctl.nn.layers import Dense
from nnctl.nn.model import Sequential

LOGS = ["loss", "accuracy", "val_loss", "val_accuracy", "lr", "epoch_time"]


@pytest.mark.parametrize("value, words", [
    ("/etc/passwd", "must be a path inside the run folder"), ("~/x.csv", "must be a path inside the run folder"),
    ("../x.csv", "leaves it through '..'"), ("a/../../x", "leaves it through '..'"), ("logs/../x", "'..'"),
    ("manifest.json", "run's own file manifest.json"), ("./config.yaml", "run's own file config.yaml"),
    ("history.json", "own file"), ("events.jsonl", "own file"), ("weights.safetensors", "own file"),
    ("metrics.json", "own file"), ("preprocessing.json", "own file"), ("kfold.json", "own file"),
    (".lock", "own file .lock"), ("checkpoints/last.safetensors", "resume checkpoint"),
    ("checkpoints//last.safetensors.tmp", "resume checkpoint"), ("checkpoints/last{epoch}", "resume checkpoint"),
    ("", "must be a file name"), (".", "must name a file"), ("checkpoints/", "must name a file"), ("a\x00b", "relative path"), ("a\\..\\b", "relative"),
])
def test_paths_that_leave_the_run_folder_or_name_its_files_are_refused(value, words):
    problem = check_run_path(value)
    assert problem is not None and words in problem


@pytest.mark.parametrize("value", ["history.csv", "logs/history.csv", "checkpoints/best.safetensors",
                                   "checkpoints/epoch_{epoch:03d}.safetensors", "./a/b/c.csv", "manifest.json.bak",
                                   "checkpoints/best-last.safetensors"])
def test_ordinary_relative_paths_are_allowed(value):
    assert check_run_path(value) is None
    assert check_run_path(".", "folder") is None  # tensorboard's log_dir may be the run folder itself


@pytest.mark.parametrize("template, words", [
    ("e{nope}", "field {nope} is not logged by this run (allowed: epoch, accuracy,"),
    ("e{val_loss:d}", "field {val_loss:d} cannot format a log value (a float)"),
    ("e{epoch:.3}", "field {epoch:.3} cannot format the epoch number (an integer)"),
])
def test_template_fields_must_be_logged_and_formattable(template, words):
    assert words in check_template(template, LOGS)


@pytest.mark.parametrize("template, words", [
    ("e{epoch:d", "is not a valid template"), ("{epoch.__class__.__init__.__globals__}", "no positions, attributes"),
    ("{epoch[0]}", "no positions, attributes"), ("{0}", "no positions"), ("{}", "no positions"),
    ("{epoch!r}", "is not allowed"), ("{epoch:/>20}", "is not allowed"), ("{epoch:.>5}", "is not allowed"),
    ("{epoch:{loss}}", "is not allowed"), ("e{epoch:s}", "is not allowed: give a numeric format"), ("{epoch:0999d}", "is not allowed"), ("e}", "is not a valid template"),
])
def test_template_structure_is_checked_when_the_callback_is_made(template, words):
    with pytest.raises(ArgumentError, match="`filepath`") as caught:
        template_fields(template)
    assert words in str(caught.value)
    with pytest.raises(ArgumentError):
        ModelCheckpoint(template)


def test_fill_template_reaches_only_the_epoch_and_log_values():
    assert fill_template("e{epoch:03d}-{val_loss:.3f}-{lr:.0e}", 7, {"val_loss": 0.25, "lr": 0.001}) == \
        "e007-0.250-1e-03"
    assert check_template("checkpoints/{epoch:03d}-{val_accuracy:.2%}", LOGS) is None
    with pytest.raises(ArgumentError, match="not in this epoch's logs"):
        fill_template("{val_loss}", 1, {"loss": 0.5})


def test_confine_resolves_symbolic_links(tmp_path):
    run, outside = tmp_path / "run", tmp_path / "outside"
    run.mkdir()
    outside.mkdir()
    assert confine(run, run / "logs" / "a.csv") == run / "logs" / "a.csv"
    assert confine(None, "/anywhere") == confine(None, "/anywhere")  # the Python API writes where it is told
    (run / "escape").symlink_to(outside)
    (run / "alias.json").symlink_to(run / "manifest.json")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "best").symlink_to(run / "checkpoints" / "last.safetensors")
    for path, words in ((run / "escape" / "x.csv", "outside the run folder"),
                        (run / "alias.json", "the run's own file manifest.json"),
                        (run / "checkpoints" / "best", "resume checkpoint")):
        with pytest.raises(NnctlError, match=words):
            confine(run, path)


def test_writers_refuse_a_symbolic_link_out_of_the_run_folder(tmp_path):
    run, outside = tmp_path / "run", tmp_path / "outside"
    run.mkdir()
    outside.mkdir()
    (run / "checkpoints").symlink_to(outside, target_is_directory=True)
    (run / "history.csv").symlink_to(outside / "stolen.csv")
    logger = make_callback({"type": "csv_logger"}, run)
    saver = make_callback({"type": "model_checkpoint"}, run)
    assert logger.filename == str(run / "history.csv") and saver.run_folder == run
    model = Sequential([Dense(1, activation="sigmoid")], input_shape=(2,), seed=0)
    model.compile("sgd", "binary_crossentropy")
    x, y = np.zeros((4, 2), np.float32), np.zeros(4, np.float32)
    for callback in (logger, saver):
        with pytest.raises(NnctlError, match="outside the run folder"):
            model.fit(x, y, epochs=1, batch_size=4, callbacks=[callback])
    assert list(outside.iterdir()) == []


def test_make_callback_refuses_paths_at_config_time(tmp_path):
    for spec in ({"type": "csv_logger", "filename": "../x.csv"}, {"type": "tensorboard", "log_dir": "/tmp/tb"},
                 {"type": "checkpoint", "filepath": "manifest.json"}):
        with pytest.raises(ArgumentError, match="^`(filename|log_dir|filepath)` must"):
            make_callback(spec, tmp_path)
    assert isinstance(make_callback({"type": "csv_logger", "filename": "logs/h.csv"}), CSVLogger)


CONFIG = """\
name: cb
seed: 0
data:
  dataset: {type: synthetic, samples: 60, features: 4}
  validation: {split: 0.25}
model:
  layers:
    - {type: dense, units: 1, activation: sigmoid}
loss: binary_crossentropy
metrics: [accuracy]
callbacks:
  - {type: csv_logger, filename: logs/history.csv}
  - CALLBACK
"""


@pytest.mark.parametrize("callback, key, words", [
    ("{type: csv_logger, filename: ../../../x.csv}", "filename", "callbacks[1].filename: `filename` must stay inside"),
    ("{type: model_checkpoint, filepath: ../x}", "filepath", "callbacks[1].filepath: `filepath` must stay inside"),
    ("{type: model_checkpoint, filepath: manifest.json}", "filepath", "the run's own file manifest.json"),
    ("{type: model_checkpoint, filepath: 'e{nope}'}", "filepath", "callbacks[1].filepath: field {nope} is not logged"),
    ("{type: model_checkpoint, filepath: 'e{epoch:d'}", "filepath", "is not a valid template"),
    ("{type: model_checkpoint, filepath: '{epoch.__class__.__init__.__globals__}'}", "filepath", "no positions, attrib"),
    ("{type: tensorboard, log_dir: /tmp/tb}", "log_dir", "callbacks[1].log_dir: `log_dir` must be a path inside"),
])
def test_nnctl_check_locates_bad_callback_paths(tmp_path, callback, key, words):
    column = len("  - ") + callback.index(f"{key}: ") + len(key) + 3  # the value's first character
    path = tmp_path / "cb.yaml"
    path.write_text(CONFIG.replace("CALLBACK", callback))
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: {path}:13:{column}: ") and words in line, line
    assert not os.path.exists(tmp_path / "x.csv")


def test_nnctl_check_accepts_good_templates(tmp_path):
    path = tmp_path / "cb.yaml"
    path.write_text(CONFIG.replace("CALLBACK", "{type: model_checkpoint, filepath: "
                                               "'checkpoints/e{epoch:03d}-{val_loss:.3f}.safetensors'}"))
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 0, result.output


def test_a_kfold_config_may_monitor_and_name_validation_figures(tmp_path):
    path = tmp_path / "cb.yaml"
    path.write_text(CONFIG.replace("validation: {split: 0.25}", "validation: {kfold: 3}").replace(
        "CALLBACK", "{type: model_checkpoint, monitor: val_accuracy, filepath: 'e{epoch}-{val_loss:.2f}'}"))
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 0, result.output
