"""Checks on the arrays a data file gave us, before anything trains on them: rows, numeric dtypes, finite values.

Each failure names the file, the array, and for a non-finite value its first row and column and how many more.
"""

from __future__ import annotations

import numpy as np

from nnctl.errors import NnctlError, clip

_ROWS_PER_CHUNK = 1 << 16  # the finite scan's temporary mask stays small, whatever the array's size
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_rows(array: np.ndarray, name: str, source: str) -> None:
    """`array` holds numbers, one sample per row, and at least one row."""
    if array.ndim == 0:
        raise NnctlError(f"{source}: {name} is a single value (a 0-d array); it needs one row per sample")
    if array.dtype.kind not in "biuf":
        kind = {"c": "complex numbers", "O": "Python objects", "U": "text", "S": "bytes", "V": "records",
                "M": "dates", "m": "time spans"}.get(array.dtype.kind, str(array.dtype))
        raise NnctlError(f"{source}: {name} holds {kind} ({array.dtype}); it must hold numbers (int, float or bool)")
    if len(array) == 0:
        raise NnctlError(f"{source}: {name} has no rows")


def _value_text(value) -> str:
    if np.isfinite(value):
        return f"{float(value):.6g} (beyond float32's range: inf once converted for training)"
    return "NaN" if np.isnan(value) else "+inf" if value > 0 else "-inf"


def check_finite(array: np.ndarray, name: str, source: str, rows=None, columns=None) -> None:
    """NnctlError at the first NaN or ±inf of `array` (or a value float32 cannot hold): its row (`rows[i]`
    when given, e.g. CSV line numbers) and column (`columns[j]` when given, e.g. CSV header names), and how
    many more there are."""
    if array.dtype.kind != "f" or array.size == 0:
        return  # integers and bools cannot hold NaN or inf
    flat = array.reshape(len(array), -1)
    first, count = None, 0
    for start in range(0, len(flat), _ROWS_PER_CHUNK):
        chunk = flat[start:start + _ROWS_PER_CHUNK]
        bad = ~np.isfinite(chunk)
        if chunk.dtype.itemsize > 4:  # the trainer computes in float32
            with np.errstate(invalid="ignore"):
                bad |= np.abs(chunk) > _FLOAT32_MAX
        found = int(np.count_nonzero(bad))
        if found and first is None:
            row, column = np.unravel_index(int(np.flatnonzero(bad)[0]), bad.shape)
            first = (start + int(row), int(column))
        count += found
    if first is None:
        return
    row, column = first
    value = flat[row, column]
    where_row = f"row {row}" if rows is None else rows[row]
    if columns is not None:
        where_column = f", column '{clip(columns[column], 60)}'"
    elif array.ndim == 1:
        where_column = ""
    elif array.ndim > 2:
        where_column = f", position {tuple(int(i) for i in np.unravel_index(column, array.shape[1:]))}"
    else:
        where_column = f", column {column}"
    more = f" (and {count - 1} more non-finite values)" if count > 1 else ""
    raise NnctlError(f"{source}: {name} has {_value_text(value)} at {where_row}{where_column}{more}; nnctl "
                     f"trains on finite numbers only: fill in or drop those values")
