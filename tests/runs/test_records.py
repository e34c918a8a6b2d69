"""The validating reader of run files: what stands in a file's place, JSON damage, and each record's checks."""

from __future__ import annotations

import json
import os

import pytest

from nnctl.runs import records, untrusted
from nnctl.runs.records import RunFileError

MANIFEST = {"status": "completed", "name": "tiny", "seed": 1, "started": "2024-05-13T07:30:05+00:00",
            "input_shape": [10], "data": [{"path": "/d/tiny.npz", "sha256": "ab"}], "epochs_completed": 3,
            "pid": 123, "future_key": {"kept": True}}


def problem(call, *args) -> str:
    with pytest.raises(RunFileError) as caught:
        call(*args)
    assert "\n" not in str(caught.value)
    return caught.value.problem


def write(folder, name, text):
    (folder / name).write_text(text, encoding="utf-8")
    return folder


# ---- what stands where a file should be ----------------------------------------------------------------------
def test_a_good_manifest_reads_back_as_written(tmp_path):
    write(tmp_path, "manifest.json", json.dumps(MANIFEST))
    assert records.read_manifest(tmp_path) == MANIFEST  # unknown keys kept, ints stay ints


@pytest.mark.parametrize("make, expected", [
    (lambda path: None, "file is missing"),
    (lambda path: path.mkdir(), "is a folder, not a file"),
    (lambda path: os.symlink("nowhere", path), "is a symlink to nowhere"),
    (lambda path: os.symlink(path.name, path), "is a symlink loop"),
    (lambda path: os.mkfifo(path), "is a FIFO (named pipe), not a file"),
    (lambda path: path.write_bytes(b""), "is empty"),
    (lambda path: path.write_bytes(b" \n"), "is empty"),
    (lambda path: path.write_bytes(b"\xff\xfe{}"), "is not UTF-8 text (byte 0)"),
    (lambda path: path.write_bytes(b"[" * 100_000), "nests deeper than 64 levels"),
    (lambda path: path.write_bytes(b"[" * 70 + b"]" * 70), "nests deeper than 64 levels"),
    (lambda path: path.write_bytes(b'{"status": "compl'), "is not valid JSON (line 1, column 12: "
                                                          "Unterminated string starting at)"),
])
def test_what_stands_in_a_files_place(tmp_path, make, expected):
    make(tmp_path / "manifest.json")
    assert problem(records.read_manifest, tmp_path) == expected


def test_a_file_larger_than_any_record_is_refused_unread(tmp_path, monkeypatch):
    monkeypatch.setattr(untrusted, "MAX_JSON_BYTES", 100)
    write(tmp_path, "history.json", json.dumps({"loss": [0.5] * 50}))
    size = (tmp_path / "history.json").stat().st_size
    assert problem(records.read_history, tmp_path) == f"is {size:,} bytes, more than nnctl ever writes there (100)"


def test_the_message_names_the_file(tmp_path):
    write(tmp_path, "manifest.json", "[]")
    with pytest.raises(RunFileError) as caught:
        records.read_manifest(tmp_path)
    assert str(caught.value) == f"{tmp_path / 'manifest.json'}: holds a list, expected a JSON object (mapping)"


# ---- manifest.json -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("null", "holds null, expected a JSON object (mapping)"),
    ('"x"', "holds a string, expected a JSON object (mapping)"),
    ("1", "holds a number, expected a JSON object (mapping)"),
    ('{"name": "tiny"}', "`status` is missing"),
    ('{"status": "done", "name": "tiny"}', "`status` should be 'running', 'completed', 'interrupted', 'failed' or "
                                           "'stopped', got \"done\""),
    ('{"status": "running", "name": 1, "seed": true}', "`name` should be a string, got 1; `seed` should be an "
                                                       "integer, got true"),
    ('{"status": "running", "name": "a", "input_shape": [10, 0]}', "`input_shape[1]` should be greater than 0, got 0"),
    ('{"status": "running", "name": "a", "data": [{"path": 1}]}', "`data[0].path` should be a string, got 1; "
                                                                  "`data[0].sha256` is missing"),
    ('{"status": "running", "name": "a", "phases": {"x": "y"}}', "`phases.x` should be a number, got \"y\""),
])
def test_manifest_damage(tmp_path, text, expected):
    write(tmp_path, "manifest.json", text)
    assert problem(records.read_manifest, tmp_path) == expected


def test_an_input_shape_too_large_for_memory(tmp_path):
    manifest = {**MANIFEST, "input_shape": [100000, 100000]}
    with pytest.raises(RunFileError, match=r"`input_shape` \[100000, 100000\] holds more than"):
        records.input_shape(manifest, tmp_path)
    assert records.input_shape(MANIFEST, tmp_path) == (10,)


def test_many_problems_are_summed_up_in_one_short_line(tmp_path):
    write(tmp_path, "manifest.json", json.dumps({key: [1] * 1000 for key in ("status", "name", "seed", "error")}))
    text = problem(records.read_manifest, tmp_path)
    assert text.endswith("(and 2 more)") and len(text) < 200


# ---- metrics.json, history.json, kfold.json ------------------------------------------------------------------
def test_metrics(tmp_path):
    assert records.read_metrics(tmp_path) == {}  # not written yet
    good = {"epochs": 3, "train": {"loss": 0.3}, "validation": {"loss": None}, "test": {"loss": 0.4, "samples": 60},
            "test (checkpoints/best.safetensors)": {"loss": 0.5, "samples": 60}}
    write(tmp_path, "metrics.json", json.dumps(good))
    assert records.read_metrics(tmp_path) == good
    write(tmp_path, "metrics.json", '{"test": [0.4]}')
    assert problem(records.read_metrics, tmp_path) == "`test` should be a mapping, got a list"
    write(tmp_path, "metrics.json", '{"test (x)": {"loss": "low"}}')
    assert problem(records.read_metrics, tmp_path) == "`test (x).loss` should be a number, got \"low\""
    write(tmp_path, "metrics.json", '{"test": {"loss": 1e999}}')
    assert problem(records.read_metrics, tmp_path) == "`test.loss` should be a finite number, got inf"


def test_history_reads_nan_as_none_and_wants_one_length(tmp_path):
    write(tmp_path, "history.json", '{"loss": [0.5, NaN], "val_loss": [Infinity, 0.4]}')
    assert records.read_history(tmp_path) == {"loss": [0.5, None], "val_loss": [None, 0.4]}
    write(tmp_path, "history.json", '{"loss": [0.5, 0.4], "val_loss": [0.6]}')
    assert problem(records.read_history, tmp_path) == "`val_loss` has 1 value(s) but `loss` has 2"
    write(tmp_path, "history.json", '{"loss": [0.5, "x"]}')
    assert problem(records.read_history, tmp_path) == "`loss[1]` should be a number, got \"x\""


def test_kfold_summary(tmp_path):
    summary = {"folds": 2, "epochs": 1, "per_epoch": {"loss": {"mean": [0.5], "std": [0.1]}},
               "final": {"loss": {"mean": 0.5, "std": 0.1}}, "best": {"val_loss": {"epoch": 1, "mean": 0.4, "std": 0}}}
    write(tmp_path, "kfold.json", json.dumps(summary))
    assert records.read_kfold(tmp_path) == summary
    write(tmp_path, "kfold.json", "{}")  # no fold finished
    assert records.read_kfold(tmp_path) == {}
    write(tmp_path, "kfold.json", '{"per_epoch": {"loss": {"mean": [0.5]}}}')
    assert problem(records.read_kfold, tmp_path) == "`per_epoch.loss.std` is missing"


# ---- events.jsonl ----------------------------------------------------------------------------------------------
def test_events_skip_torn_and_foreign_lines(tmp_path):
    assert records.read_events(tmp_path) == []
    lines = [b'{"epoch": 1, "loss": 0.5}', b'{"epoch": 2, "lo', b"[" * 100_000, b"\xff\xfe", b"[1, 2]", b"",
             b'{"epoch": 2, "loss": 0.4}']
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(lines))
    assert records.read_events(tmp_path) == [{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": 0.4}]
    (tmp_path / "events.jsonl").unlink()
    (tmp_path / "events.jsonl").mkdir()
    assert problem(records.read_events, tmp_path) == "is a folder, not a file"


# ---- preprocessing.json --------------------------------------------------------------------------------------
def test_preprocessing_states_round_trip(tmp_path):
    states = [{"type": "standardize", "mean": [0.0, 1.5], "std": [1.0, 2.0]}, {"type": "one_hot", "classes": 3},
              {"type": "rescale", "scale": 0.5, "offset": 0.0}, {"type": "multi_hot", "width": 100}]
    write(tmp_path, "preprocessing.json", json.dumps({"transforms": states}))
    assert records.read_preprocessing(tmp_path) == states


@pytest.mark.parametrize("transforms, expected", [
    ([{"type": "sharpen"}], "`transforms[0]` names an unknown transform \"sharpen\" (allowed: flatten, impute, "
                            "multi_hot, one_hot, pad_sequences, rescale, reshape, standardize)"),
    ([{"mean": [1]}], "`transforms[0]` names an unknown transform null (allowed: flatten, impute, multi_hot, "
                      "one_hot, pad_sequences, rescale, reshape, standardize)"),
    ([{"type": "standardize", "mean": [0.0]}], "`transforms[0]` (standardize) lacks `std`, which its fit learned"),
    ([{"type": "standardize", "mean": [0.0], "std": [0.0]}], "`transforms[0]`.std should be a list of positive "
                                                            "numbers, got a list"),
    ([{"type": "standardize", "mean": [0.0, 1.0], "std": [1.0]}], "`transforms[0]` has 2 means but 1 stds"),
    ([{"type": "one_hot", "classes": "3"}], "`transforms[0]`.classes should be a positive integer, got \"3\""),
    ([{"type": "rescale"}], "`transforms[0]` (rescale): `scale` is missing"),
    ([{"type": "flatten", "extra": 1}], "`transforms[0]` (flatten): `extra` is not a key this file has"),
    ("standardize", "`transforms` should be a list, got \"standardize\""),
    ([1], "`transforms[0]` should be a mapping, got 1"),
])
def test_preprocessing_damage(tmp_path, transforms, expected):
    write(tmp_path, "preprocessing.json", json.dumps({"transforms": transforms}))
    assert problem(records.read_preprocessing, tmp_path) == expected


def test_preprocessing_without_its_key(tmp_path):
    write(tmp_path, "preprocessing.json", "{}")
    assert problem(records.read_preprocessing, tmp_path) == "`transforms` is missing"


# ---- config.yaml ---------------------------------------------------------------------------------------------
def test_config_goes_through_the_config_loader(tmp_path, tiny_config_text):
    from nnctl.config.yamlfile import ConfigError

    write(tmp_path, "config.yaml", tiny_config_text)
    assert records.load_run_config(tmp_path).config.name == "tiny"
    write(tmp_path, "config.yaml", tiny_config_text.replace("epochs: 3", "epochs: many"))
    with pytest.raises(ConfigError, match=r"config\.yaml:\d+:\d+: epochs: expected a positive integer"):
        records.load_run_config(tmp_path)
    (tmp_path / "config.yaml").unlink()
    (tmp_path / "config.yaml").mkdir()
    assert problem(records.load_run_config, tmp_path) == "is a folder, not a file"


def test_replaceable_outputs(tmp_path):
    (tmp_path / "history.json").mkdir()
    records.check_replaceable(tmp_path, ["weights.safetensors"])
    assert problem(records.check_replaceable, tmp_path, ["history.json"]) == (
        "is a folder, not a file: the run's own file cannot be written there")


# ---- preprocessing.json: a CSV's columns and an impute transform (issue 15) ----------------------------------
CSV_RECORD = {"header": True, "columns": ["a", "b", "y"], "features": ["b", "a"], "target": "y",
              "classes": ["cat", "dog"]}


def test_csv_columns_and_impute_round_trip(tmp_path):
    states = [{"type": "impute", "strategy": "constant", "fill_value": 0.0, "values": [0.0, 0.0]}]
    write(tmp_path, "preprocessing.json", json.dumps({"transforms": states, "csv": CSV_RECORD}))
    assert records.read_preprocessing(tmp_path) == states and records.read_csv_columns(tmp_path) == CSV_RECORD
    write(tmp_path, "preprocessing.json", json.dumps({"transforms": []}))
    assert records.read_csv_columns(tmp_path) is None


@pytest.mark.parametrize("change, expected", [
    ({"features": ["b", "z"]}, "`csv` names a column that is not in `columns`: \"z\""),
    ({"columns": ["a", "b", "y", "a"]}, "`csv.columns` names a column twice"),
    ({"classes": ["cat", "cat"]}, "`csv.classes` names a class twice"),
    ({"classes": []}, "`csv.classes` should have at least 1 item"),
    ({"header": "yes"}, "`csv.header` should be true or false, got \"yes\""),
    ({"extra": 1}, "`csv.extra` is not a key this file has"),
])
def test_csv_columns_damage(tmp_path, change, expected):
    write(tmp_path, "preprocessing.json", json.dumps({"transforms": [], "csv": {**CSV_RECORD, **change}}))
    assert problem(records.read_csv_columns, tmp_path).startswith(expected.split(" should")[0])


@pytest.mark.parametrize("state, expected", [
    ({"type": "impute", "values": [1.0, None]}, "`transforms[0]`.values should be a list of numbers, got a list"),
    ({"type": "impute"}, "`transforms[0]` (impute) lacks `values`, which its fit learned"),
    ({"type": "impute", "strategy": "mode", "values": [1.0]}, "`transforms[0]` (impute): "),
])
def test_impute_state_damage(tmp_path, state, expected):
    write(tmp_path, "preprocessing.json", json.dumps({"transforms": [state]}))
    assert problem(records.read_preprocessing, tmp_path).startswith(expected)
