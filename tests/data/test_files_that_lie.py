"""Data files that lie, through `load_config` → `load_data`: non-finite values, non-UTF-8 CSVs, 0-d, empty and
non-numeric arrays, FIFOs and directories, a symlinked text file, long lines — each one located error."""

import os
import re
import time

import numpy as np
import pytest

import nnctl.host
from test_files import config_error, load

GOOD_X = np.arange(40, dtype=np.float32).reshape(10, 4)
GOOD_Y = np.arange(10, dtype=np.float32)


def write(path, **arrays):
    np.savez(path, **{"x_train": GOOD_X, "y_train": GOOD_Y, **arrays})
    return path


@pytest.mark.parametrize("key, row, column", [("x_train", 7, ", column 2"), ("y_train", 4, ""),
                                             ("x_test", 1, ", column 0"), ("y_test", 2, "")])
@pytest.mark.parametrize("value, text", [(np.nan, "NaN"), (np.inf, r"\+inf"), (-np.inf, "-inf")])
def test_non_finite_values_in_an_npz_are_located(tmp_path, key, row, column, value, text):
    arrays = {"x_test": GOOD_X[:3].copy(), "y_test": GOOD_Y[:3].copy()}
    array = arrays.get(key, (GOOD_X if key == "x_train" else GOOD_Y).copy())
    array[(row, int(column[-1])) if column else row] = value
    write(tmp_path / "d.npz", **{**arrays, key: array})
    message = config_error(tmp_path, "  path: d.npz")
    assert f"c.yaml:3:9: data.path: d.npz: {key} has " in message
    assert re.search(f"{text} at row {row}{column}; nnctl trains on finite numbers only", message)


def test_inf_in_the_validation_file_and_nan_in_an_npy(tmp_path):
    write(tmp_path / "d.npz")
    x_val = np.ones((3, 4), np.float32)
    x_val[2, 3] = np.inf
    np.savez(tmp_path / "val.npz", x_val=x_val, y_val=np.ones(3, np.float32))
    message = config_error(tmp_path, "  path: d.npz\n  validation: {path: val.npz}")
    assert "data.validation.path: val.npz: x_val has +inf at row 2, column 3" in message
    x = GOOD_X.copy()
    x[5, 1] = np.nan
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", GOOD_Y)
    message = config_error(tmp_path, "  dataset: {type: npy, x: x.npy, y: y.npy}")
    assert "data.dataset.x: x.npy: the array has NaN at row 5, column 1" in message


def test_nan_in_a_csv_names_the_line_and_column(tmp_path):
    (tmp_path / "t.csv").write_text("a,b,y\n1,2,0\n\n3,nan,1\n5,6,inf\n7,8,1\n", encoding="utf-8")
    message = config_error(tmp_path, "  dataset: {type: csv, path: t.csv, target: y}")
    assert "t.csv:4: column 'b' is missing a value, got 'nan'; fill it in or add an `impute` transform" in message
    (tmp_path / "t.csv").write_text("a,b,y\n1,2,0\n5,6,-inf\n7,8,1e300\n", encoding="utf-8")
    message = config_error(tmp_path, "  dataset: {type: csv, path: t.csv, target: y}")
    assert "t.csv:3: column 'y' must be a finite number (at most ±3.4e38), got '-inf'" in message


def test_a_csv_that_is_not_utf8_is_located(tmp_path):
    (tmp_path / "t.csv").write_bytes("a,b,y\n1,2,0\n3,4,1\n5,caf\xe9,0\n".encode("latin-1"))
    message = config_error(tmp_path, "  dataset: {type: csv, path: t.csv, target: y}")
    assert f"{tmp_path / 't.csv'}:4: not UTF-8 text (byte 0xe9 at column 6); save the CSV as UTF-8" in message


@pytest.mark.parametrize("arrays, expected", [
    ({"x_train": np.array(1.0), "y_train": np.array(2.0)}, "x_train is a single value (a 0-d array)"),
    ({"x_train": GOOD_X, "y_train": np.array(2.0)}, "y_train is a single value (a 0-d array)"),
    ({"x_train": np.zeros((0, 4)), "y_train": np.zeros(0)}, "x_train has no rows"),
    ({"x_train": GOOD_X.astype(complex), "y_train": GOOD_Y}, "x_train holds complex numbers (complex128)"),
    ({"x_train": GOOD_X.astype(str), "y_train": GOOD_Y}, "x_train holds text (<U32)"),
    ({"x_train": GOOD_X, "y_train": GOOD_Y[:9]}, "x_train has 10 rows but y_train has 9"),
])
def test_arrays_that_are_not_rows_of_numbers(tmp_path, arrays, expected):
    np.savez(tmp_path / "d.npz", **arrays)
    assert f"data.path: d.npz: {expected}" in config_error(tmp_path, "  path: d.npz")


def test_empty_files(tmp_path):
    (tmp_path / "d.npz").write_bytes(b"")
    assert "d.npz is not an .npz (zip) file" in config_error(tmp_path, "  path: d.npz")
    (tmp_path / "t.csv").write_bytes(b"")
    assert "t.csv needs a header row and at least one data row" in config_error(
        tmp_path, "  dataset: {type: csv, path: t.csv, target: y}")


@pytest.mark.parametrize("data, name", [("  path: d.npz", "d.npz"),
                                        ("  dataset: {type: csv, path: t.csv, target: y}", "t.csv"),
                                        ("  dataset: {type: npy, x: x.npy, y: y.npy}", "x.npy")])
def test_a_fifo_or_a_directory_is_refused_at_once(tmp_path, data, name):
    os.mkfifo(tmp_path / name)
    np.save(tmp_path / "y.npy", GOOD_Y)
    started = time.perf_counter()
    assert f"{tmp_path / name} is a FIFO (named pipe), not a data file" in config_error(tmp_path, data)
    assert time.perf_counter() - started < 2  # nothing opened the pipe (an open would block)
    os.unlink(tmp_path / name)
    (tmp_path / name).mkdir()
    assert f"{tmp_path / name} is a folder, not a data file" in config_error(tmp_path, data)


def test_an_npz_symlinked_to_a_text_file_is_not_a_zip(tmp_path):
    (tmp_path / "notes.txt").write_text("just some text\n" * 50, encoding="utf-8")
    (tmp_path / "d.npz").symlink_to(tmp_path / "notes.txt")
    message = config_error(tmp_path, "  path: d.npz")
    assert "d.npz is not an .npz (zip) file" in message and "pickled" not in message


def test_csv_errors_never_echo_a_long_line(tmp_path):
    # a "CSV" that is really some other file, one 100,000-character line long
    (tmp_path / "t.csv").write_text(",".join(f"column{i}" for i in range(10_000)) + "\n1\n", encoding="utf-8")
    message = config_error(tmp_path, "  dataset: {type: csv, path: t.csv, target: y}")
    assert "t.csv has no column 'y' (columns: column0, column1" in message and len(message) < 500
    (tmp_path / "t.csv").write_text("a,y\n" + "x" * 100_000 + ",1\n", encoding="utf-8")
    message = config_error(tmp_path, "  dataset: {type: csv, path: t.csv, target: y}")
    assert "t.csv:2: column 'a' must be a number, got 'xxx" in message and len(message) < 500
    (tmp_path / "t.csv").write_text("a,y\n" + "1," + "x" * 100_000 + "\n", encoding="utf-8")
    message = config_error(tmp_path, "  dataset: {type: csv, path: t.csv, target: y}")
    assert "t.csv:2: column 'y' (the target) holds a class name longer than 100 characters, got 'xxx" in message
    assert len(message) < 500


def test_a_csv_too_big_for_memory_is_refused_before_reading(tmp_path, monkeypatch):

    (tmp_path / "t.csv").write_text("a,y\n" + "1,0\n" * 1000, encoding="utf-8")
    monkeypatch.setattr(nnctl.host, "available_memory", lambda: 1000)
    message = config_error(tmp_path, "  dataset: {type: csv, path: t.csv, target: y}")
    assert "t.csv needs 15.6 KiB of memory to load, but only 1000 bytes is available" in message
