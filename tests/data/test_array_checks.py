"""Checks on loaded arrays: a 0-d array, no rows or a non-numeric dtype is refused; the first NaN/±inf (or a
float64 beyond float32) is reported at its row and column, with how many more there are."""

import numpy as np
import pytest

from nnctl.data.array_checks import check_finite, check_rows
from nnctl.errors import clip
from nnctl.errors import NnctlError


@pytest.mark.parametrize("array, message", [
    (np.array(3.0), "x is a single value (a 0-d array); it needs one row per sample"),
    (np.zeros((0, 4)), "x has no rows"),
    (np.zeros(3, complex), "x holds complex numbers (complex128); it must hold numbers"),
    (np.array(["a", "b"]), "x holds text (<U1)"),
    (np.zeros(2, "datetime64[s]"), "x holds dates"),
])
def test_arrays_that_are_not_rows_of_numbers(array, message):
    with pytest.raises(NnctlError, match="^f.npz: " + message.replace("(", r"\(").replace(")", r"\)")):
        check_rows(array, "x", "f.npz")


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.uint8, bool])
def test_numeric_rows_pass(dtype):
    check_rows(np.zeros((2, 3), dtype), "x", "f.npz")
    check_finite(np.zeros((2, 3), dtype), "x", "f.npz")


@pytest.mark.parametrize("value, text", [(np.nan, "NaN"), (np.inf, "+inf"), (-np.inf, "-inf")])
def test_the_first_non_finite_value_is_located(value, text):
    x = np.zeros((5, 4), np.float32)
    x[3, 2] = value
    x[4, 0] = value
    with pytest.raises(NnctlError, match=rf"^f\.npz: x_train has {text.replace('+', '[+]')} at row 3, column 2 "
                                         rf"\(and 1 more non-finite values\)"):
        check_finite(x, "x_train", "f.npz")


def test_images_name_the_position_and_labels_only_the_row():
    x = np.zeros((3, 2, 2, 1), np.float32)
    x[1, 1, 0, 0] = np.nan
    with pytest.raises(NnctlError, match=r"x has NaN at row 1, position \(1, 0, 0\);"):
        check_finite(x, "x", "f.npz")
    with pytest.raises(NnctlError, match=r"y has -inf at row 2; nnctl trains on finite numbers only"):
        check_finite(np.array([0.0, 1.0, -np.inf]), "y", "f.npz")


def test_csv_rows_and_columns_by_their_names():
    x = np.zeros((2, 2), np.float32)
    x[1, 1] = np.nan
    with pytest.raises(NnctlError, match=r"t\.csv: a feature has NaN at line 9, column 'b'"):
        check_finite(x, "a feature", "t.csv", rows=["line 4", "line 9"], columns=["a", "b"])


def test_float64_beyond_float32_is_inf_for_training():
    with pytest.raises(NnctlError, match=r"x has 1e\+300 \(beyond float32's range: inf once converted"):
        check_finite(np.array([[1.0, 1e300]]), "x", "f.npz")
    check_finite(np.array([[1.0, 3e38]]), "x", "f.npz")


def test_a_big_array_is_scanned_in_chunks_and_counted_whole():
    x = np.zeros((200_000, 3), np.float32)
    x[150_000:, 1] = np.nan
    with pytest.raises(NnctlError, match=r"row 150000, column 1 \(and 49999 more"):
        check_finite(x, "x", "f.npz")


def test_clip_caps_echoed_text():
    assert clip("a" * 10) == "a" * 10
    assert len(clip("a" * 1000)) == 200 and "…" in clip("a" * 1000) and clip((1, 2)) == "(1, 2)"
