"""`nnctl runs` and `nnctl compare`: runs trained through the CLI, and run folders written by hand (half-written
ones included) the way RunDirectory writes them."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
import yaml

from nnctl.runs import RunDirectory
from nnctl.runs.browse import (best_value, compare_runs, config_diff, flatten_config, format_duration,
                               higher_is_better, list_runs, main_metric, read_run)
from tests.conftest import invoke, run_path

MONDAY = datetime(2024, 5, 13, 9, 30, 5)  # local time, as RunDirectory.create names folders


def iso(when: datetime) -> str:
    """A local time as the manifest's `started` holds it (UTC, seconds)."""
    return when.astimezone(timezone.utc).isoformat(timespec="seconds")


def cells(stdout: str) -> dict:
    """{first cell: the other cells} of each line of a plain table (cells are 2+ spaces apart)."""
    rows = [re.split(r" {2,}", line.strip()) for line in stdout.splitlines() if "  " in line.strip()]
    return {row[0]: row[1:] for row in rows}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, make_npz, tiny_config_text):
    """Three real runs of the tiny config: lr 0.01 for 3 epochs, lr 0.001 for 4 epochs, and a 2-fold run."""
    folder = tmp_path_factory.mktemp("browse")
    make_npz(folder / "tiny.npz")
    config = folder / "tiny.yaml"
    config.write_text(tiny_config_text, encoding="utf-8")
    runs = folder / "runs"
    made = []
    for args in (["train"], ["train", "--set", "optimizer.learning_rate=0.001", "--set", "epochs=4"],
                 ["kfold", "--folds", "2", "--set", "name=tiny_cv"]):
        result = invoke(args[0], config, "--runs-dir", runs, "--quiet", *args[1:])
        assert result.exit_code == 0, result.output
        made.append(run_path(result.stdout))
    return SimpleNamespace(runs=runs, first=made[0], second=made[1], kfold=made[2])


def write_run(runs_dir, name, history, *, when=MONDAY, status="completed", test=None, config=None, seconds=42):
    """A finished run's files as `nnctl train` writes them (manifest, history, metrics, config)."""
    run = RunDirectory.create(runs_dir, name, now=when)
    started = when.astimezone(timezone.utc)
    run.write_text("config.yaml", yaml.safe_dump(config or {"name": name, "epochs": len(history["loss"])},
                                                 sort_keys=False))
    run.update_manifest(status=status, name=name, seed=0, started=started.isoformat(timespec="seconds"),
                        ended=(started + timedelta(seconds=seconds)).isoformat(timespec="seconds"),
                        epochs_completed=len(history["loss"]), error=None)
    run.write_json("history.json", history)
    run.write_json("metrics.json", {"epochs": len(history["loss"]), **({"test": test} if test else {})})
    return run


REGRESSION = {"loss": [30.0, 12.0, 9.0], "mae": [4.0, 2.9, 2.5], "val_loss": [20.0, 11.0, 13.0],
              "val_mae": [3.5, 2.6, 2.8], "epoch_time": [0.1, 0.1, 0.1], "lr": [0.001] * 3}
CLASSIFIER = {"loss": [0.6, 0.4, 0.3, 0.2], "accuracy": [0.7, 0.8, 0.9, 0.95],
              "val_loss": [0.5, 0.45, 0.47, 0.5], "val_accuracy": [0.75, 0.86, 0.88, 0.87]}


# ---- the figure a run is judged by ---------------------------------------------------------------------------
@pytest.mark.parametrize("key, higher", [("val_accuracy", True), ("acc", True), ("val_binary_accuracy", True),
                                         ("val_sparse_top_k_categorical_accuracy", True), ("val_auc", True),
                                         ("precision", True), ("val_recall", True), ("val_loss", False),
                                         ("val_mae", False), ("mean_squared_error", False)])
def test_metric_direction(key, higher):
    assert higher_is_better(key) is higher


@pytest.mark.parametrize("history, metric, best", [
    (CLASSIFIER, "val_accuracy", (0.88, 3)),           # max: the first non-loss validation metric
    (REGRESSION, "val_mae", (2.6, 2)),                 # min: an error
    ({"loss": [3.0, 2.0], "val_loss": [2.5, 2.7]}, "val_loss", (2.5, 1)),
    ({"loss": [3.0, 2.0], "mae": [1.0, 0.5]}, None, None),  # no validation data
    ({"loss": [1.0, None], "val_loss": [None, 0.9]}, "val_loss", (0.9, 2)),  # NaN is stored as null
])
def test_main_metric_and_its_best_epoch(tmp_path, history, metric, best):
    record = read_run(write_run(tmp_path, "net", history).path)
    assert main_metric(record.history) == metric
    found = best_value(record, metric) if metric else None
    assert (found and (found["value"], found["epoch"])) == best


# ---- nnctl runs ----------------------------------------------------------------------------------------------
def test_runs_lists_every_run_once_oldest_first(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "mlp", CLASSIFIER, when=MONDAY + timedelta(hours=2), test={"loss": 0.41, "accuracy": 0.871,
                                                                               "samples": 60})
    write_run(runs, "boston", REGRESSION, when=MONDAY + timedelta(hours=1), seconds=185)
    write_run(runs, "mlp", CLASSIFIER, when=MONDAY, status="interrupted")
    result = invoke("runs", runs)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["name", "started", "status", "epochs", "best", "validation", "test", "duration"]
    assert len(lines) == 4  # the `latest` links add no rows
    assert [line.split()[:2] for line in lines[1:]] == [["mlp", "2024-05-13"], ["boston", "2024-05-13"],
                                                        ["mlp", "2024-05-13"]]
    assert re.split(r" {2,}", lines[1]) == ["mlp", "2024-05-13 09:30:05", "interrupted", "4",
                                            "val_accuracy 0.8800 (epoch 3)", "42 s"]
    assert "val_mae 2.6000 (epoch 2)" in lines[2] and lines[2].endswith("3 min 05 s")
    assert "accuracy 0.8710" in lines[3]  # the test figure of the run's main metric


NO_VALIDATION = {"loss": [30.0, 12.0, 9.0], "mae": [4.0, 2.9, 2.5], "lr": [0.001] * 3}


@pytest.mark.parametrize("history, test, shown", [
    (NO_VALIDATION, {"loss": 11.0, "mae": 2.4, "samples": 10}, "mae 2.4000"),  # no validation: still the MAE
    (CLASSIFIER, {"loss": 0.41, "accuracy": 0.871, "samples": 60}, "accuracy 0.8710"),
    ({"loss": [1.0, 0.5], "val_loss": [1.1, 0.7]}, {"loss": 0.6, "samples": 5}, "loss 0.6000"),  # loss alone
    ({"loss": [1.0, 0.5], "val_loss": [1.1, 0.7]}, {"loss": 0.6, "acc": 0.7, "samples": 5}, "acc 0.7000"),
])
def test_runs_test_column_shows_the_main_metric(tmp_path, history, test, shown):
    write_run(tmp_path / "runs", "r", history, test=test)
    result = invoke("runs", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    row = re.split(r" {2,}", result.stdout.splitlines()[1])
    assert shown in row


def test_runs_json_for_scripts(tmp_path):
    run = write_run(tmp_path / "runs", "mlp", CLASSIFIER, test={"loss": 0.41, "accuracy": 0.871, "samples": 60})
    result = invoke("runs", tmp_path / "runs", "--json")
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)
    assert row == {"name": "mlp", "path": str(run.path.resolve()), "started": MONDAY.astimezone().isoformat(),
                   "status": "completed", "kfold": None, "folds_done": None, "folds_label": "", "epochs": 4,
                   "best": {"metric": "val_accuracy", "mode": "max", "value": 0.88, "epoch": 3, "std": None},
                   "test": {"loss": 0.41, "accuracy": 0.871, "samples": 60}, "duration_s": 42.0, "problems": []}


def test_runs_of_real_training_with_a_kfold_run_as_one_row(trained):
    result = invoke("runs", trained.runs)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines[1:]] == ["tiny", "tiny", "tiny_cv"]
    assert "(2-fold)" in lines[3] and " ± " in lines[3]
    history = json.loads((trained.second / "history.json").read_text())
    best = max(history["val_accuracy"])
    assert f"val_accuracy {best:.4f} (epoch {history['val_accuracy'].index(best) + 1})" in lines[2]
    test = json.loads((trained.second / "metrics.json").read_text())["test"]
    assert f"accuracy {test['accuracy']:.4f}" in lines[2]
    [cv] = [row for row in list_runs(trained.runs) if row["kfold"]]
    summary = json.loads((trained.kfold / "kfold.json").read_text())
    assert cv["kfold"] == 2 and cv["epochs"] == 3 and cv["test"] is None
    assert (cv["best"]["value"], cv["best"]["std"], cv["best"]["epoch"]) == (
        summary["best"]["val_accuracy"]["mean"], summary["best"]["val_accuracy"]["std"],
        summary["best"]["val_accuracy"]["epoch"])


def test_runs_of_one_name_or_one_run(trained):
    by_name = invoke("runs", trained.runs / "tiny", "--json")
    assert [row["path"] for row in json.loads(by_name.stdout)] == [str(trained.first), str(trained.second)]
    latest = invoke("runs", trained.runs / "tiny" / "latest", "--json")
    assert [row["path"] for row in json.loads(latest.stdout)] == [str(trained.second.resolve())]


def test_half_written_runs_show_what_they_hold(tmp_path):
    runs = tmp_path / "runs"
    # killed mid-training: status still running, no history.json yet, the last event line torn
    killed = RunDirectory.create(runs, "killed", now=MONDAY)
    killed.update_manifest(status="running", name="killed", started=iso(MONDAY))
    for epoch, (loss, accuracy) in enumerate([(0.6, 0.7), (0.5, 0.8)], start=1):
        killed.append_event({"epoch": epoch, "time": "…", "loss": loss, "val_loss": loss + 0.1,
                             "val_accuracy": accuracy})
    with open(killed.path / "events.jsonl", "ab") as events:
        events.write(b'{"epoch": 3, "loss": 0.')
    torn = RunDirectory.create(runs, "torn", now=MONDAY + timedelta(minutes=1))
    (torn.path / "manifest.json").write_text('{"status": "compl', encoding="utf-8")
    RunDirectory.create(runs, "empty", now=MONDAY + timedelta(minutes=2))  # died before writing anything
    # a K-fold run still on its second fold: no kfold.json, fold_1 finished
    cv = RunDirectory.create(runs, "cv", now=MONDAY + timedelta(minutes=3))
    cv.update_manifest(status="running", name="cv", kfold=3, started=iso(MONDAY + timedelta(minutes=3)))
    RunDirectory(cv.path / "fold_1").write_json("history.json", REGRESSION)
    RunDirectory(cv.path / "fold_2").append_event({"epoch": 1, "loss": 25.0})

    result = invoke("runs", runs)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines[1:]] == ["killed", "torn", "empty", "cv"]
    assert lines[1].split()[3:8] == ["stopped", "2", "val_accuracy", "0.8000", "(epoch"]  # no writer alive
    assert lines[2].split()[3] == "unknown" and lines[3].split()[3] == "unknown"
    assert "cv (1 of 3 folds)" in lines[4] and "val_mae 2.6000 ± 0.0000 (epoch 2)" in lines[4]
    empty = next((runs / "empty").glob("2024*"))
    notes = result.stderr.splitlines()
    assert len(notes) == 2, notes
    assert notes[0].startswith(f"note: {torn.path.resolve() / 'manifest.json'}: is not valid JSON (line 1, column ")
    assert notes[1] == f"note: {empty.resolve() / 'manifest.json'}: file is missing"


def test_runs_in_a_folder_without_runs(tmp_path):
    assert invoke("runs", tmp_path).stdout == f"no runs in {tmp_path}\n"
    assert json.loads(invoke("runs", tmp_path, "--json").stdout) == []
    missing = invoke("runs", tmp_path / "nope")
    assert missing.exit_code == 2 and missing.stderr == f"error: no such folder: {tmp_path / 'nope'}\n"


def test_runs_on_a_terminal_is_a_rich_table(tmp_path, monkeypatch):
    write_run(tmp_path / "runs", "mlp", CLASSIFIER)
    monkeypatch.setattr("nnctl.cli_runs._on_terminal", lambda: True)
    monkeypatch.setenv("COLUMNS", "150")  # the terminal's width
    result = invoke("runs", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    header, row = result.stdout.splitlines()[1], result.stdout.splitlines()[3]
    assert header.startswith("┃ name") and "┃ best validation" in header
    assert row.startswith("│ mlp") and "val_accuracy 0.8800 (epoch 3)" in row


def test_format_duration():
    assert [format_duration(s) for s in (None, 0.4, 42, 185, 7620)] == ["", "<1 s", "42 s", "3 min 05 s",
                                                                        "2 h 07 min"]


# ---- nnctl compare -------------------------------------------------------------------------------------------
def test_compare_two_real_runs(trained):
    result = invoke("compare", trained.first, trained.runs / "tiny")  # runs/<name> is its latest run
    assert result.exit_code == 0, result.output
    table, config = result.stdout.split("config differences:\n")
    rows = cells(table)
    assert rows["metric"] == [f"tiny/{trained.first.name}", f"tiny/{trained.second.name}"]
    assert rows["status"] == ["completed", "completed"] and rows["epochs"] == ["3", "4"]
    for run, column in ((trained.first, 0), (trained.second, 1)):
        history = json.loads((run / "history.json").read_text())
        assert rows["val_loss final"][column] == f"{history['val_loss'][-1]:.4f}"
        best = min(history["val_loss"])
        assert rows["val_loss best"][column] == f"{best:.4f} (epoch {history['val_loss'].index(best) + 1})"
        test = json.loads((run / "metrics.json").read_text())["test"]
        assert rows["test accuracy"][column] == f"{test['accuracy']:.4f}"
    assert list(rows) == ["metric", "status", "epochs"] + [f"{key} {kind}" for key in (
        "loss", "accuracy", "val_loss", "val_accuracy") for kind in ("final", "best")] + [
        "test loss", "test accuracy", "duration"]
    assert config.splitlines() == ["  optimizer.learning_rate: 0.01 → 0.001", "  epochs: 3 → 4"]


def test_compare_a_run_with_a_kfold_run_as_json(trained):
    result = invoke("compare", trained.first, trained.kfold, "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["labels"] == ["tiny", "tiny_cv"]
    rows = dict((name, cells) for name, cells in found["rows"])
    assert rows["status"] == ["completed", "completed (2-fold)"]
    summary = json.loads((trained.kfold / "kfold.json").read_text())
    assert rows["val_loss final"][1] == {"value": summary["final"]["val_loss"]["mean"], "epoch": None,
                                         "std": summary["final"]["val_loss"]["std"]}
    assert rows["test accuracy"][1] is None
    assert ["data.validation.kfold", ["null", "2"]] in found["config"]
    assert ["name", ["tiny", "tiny_cv"]] in found["config"]


def test_compare_needs_runs(trained, tmp_path):
    not_a_run = invoke("compare", trained.first, tmp_path)
    assert not_a_run.exit_code == 2
    assert not_a_run.stderr == f"error: {tmp_path} is not a run directory (no manifest.json)\n"
    missing = invoke("compare", trained.first, tmp_path / "nope")
    assert missing.exit_code == 2 and missing.stderr == f"error: no such run: {tmp_path / 'nope'}\n"
    alone = invoke("compare", trained.first)
    assert alone.exit_code == 2 and "give two or more runs to compare" in alone.stderr


def test_config_diff_by_key_path():
    first = "optimizer: {type: rmsprop, learning_rate: 0.001}\nmodel:\n  layers: [{units: 16}, {units: 1}]\n"
    second = ("optimizer: {type: rmsprop, learning_rate: 0.01, momentum: 0.9}\n"
              "model:\n  layers: [{units: 32}, {units: 16}, {units: 1}]\n")
    assert config_diff([first, second]) == [
        ("optimizer.learning_rate", ["0.001", "0.01"]), ("model.layers[0].units", ["16", "32"]),
        ("model.layers[1].units", ["1", "16"]), ("optimizer.momentum", ["(absent)", "0.9"]),
        ("model.layers[2].units", ["(absent)", "1"])]
    assert config_diff([first, first]) == []
    assert config_diff([first, None, second])[0] == ("optimizer.learning_rate", ["0.001", "?", "0.01"])


def test_flatten_config_keeps_empty_containers_as_leaves():
    assert flatten_config({"a": {"b": [1, {"c": None}]}, "d": [], "e": {}}) == {
        "a.b[0]": 1, "a.b[1].c": None, "d": [], "e": {}}


def test_compare_of_clashing_names_labels_by_folder(tmp_path):
    first = write_run(tmp_path, "mlp", CLASSIFIER, config={"epochs": 4, "batch_size": 16})
    second = write_run(tmp_path, "mlp", CLASSIFIER, config={"epochs": 4, "batch_size": 16})
    found = compare_runs([first.path, second.path])
    assert found["labels"] == ["mlp/20240513-093005", "mlp/20240513-093005-1"] and found["config"] == []
    assert invoke("compare", first.path, second.path).stdout.splitlines()[-1] == "config: identical"


def test_a_kfold_run_in_which_no_fold_finished_has_no_figures_and_says_so(tmp_path):
    runs = tmp_path / "runs"
    cv = RunDirectory.create(runs, "cv", now=MONDAY)
    cv.update_manifest(status="interrupted", name="cv", kfold=4, folds_completed=0, started=iso(MONDAY))
    RunDirectory(cv.path / "fold_1").write_json("history.json", REGRESSION)  # the stopped fold's first epochs
    cv.write_json("kfold.json", {"folds_planned": 4})
    [row] = json.loads(invoke("runs", runs, "--json").stdout)
    assert (row["folds_label"], row["best"]) == ("0 of 4 folds", None)  # fold 1's part-epochs are no K-fold figure
    cv.write_json("kfold.json", {"epochs": 3, "folds_planned": 4})  # figures without what they summarize: damage
    listed = invoke("runs", runs)
    assert "kfold.json: `epochs` is given but `per_epoch` is missing or empty" in listed.stderr
