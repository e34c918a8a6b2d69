"""The pieces NumPy's array pickles are made of, as inert values (names, list, dtype and array shells), and
the checked builders that turn a recognised REDUCE/BUILD pattern into an array without calling NumPy's code.
"""

from __future__ import annotations

import numpy as np

from nnctl.errors import NnctlError


class PickleRefused(NnctlError):
    """The payload is not an object array of integer rows (the caller adds the file and member)."""


class Name:
    """A global the payload named, kept inert: only the interpreter's REDUCE patterns give it a meaning."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name


RECONSTRUCT, NDARRAY, DTYPE, FROMBUFFER, ENCODE = (Name(n) for n in (
    "_reconstruct", "ndarray", "dtype", "_frombuffer", "encode"))
GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): RECONSTRUCT, ("numpy._core.multiarray", "_reconstruct"): RECONSTRUCT,
    ("numpy", "ndarray"): NDARRAY, ("numpy", "dtype"): DTYPE,
    ("numpy.core.numeric", "_frombuffer"): FROMBUFFER, ("numpy._core.numeric", "_frombuffer"): FROMBUFFER,
    ("_codecs", "encode"): ENCODE,  # protocol 2 spells bytes as _codecs.encode(latin-1 text, "latin1")
}
# NEWTRUE/NEWFALSE push these instead of bools, so a bool can never pass for an integer token
TRUE, FALSE = Name("True"), Name("False")
INT_CODES = {f"{kind}{size}" for kind in "iu" for size in (1, 2, 4, 8)}


class DtypeShell:
    """`numpy.dtype(code, False, True)` awaiting its BUILD state (which carries the byte order)."""

    __slots__ = ("code", "dtype")

    def __init__(self, code):
        self.code, self.dtype = code, None


class ArrayShell:
    """`_reconstruct(ndarray, (0,), b"b")` awaiting its BUILD state; `array` is what we built from it."""

    __slots__ = ("array",)

    def __init__(self):
        self.array = None


class ObjectRows:
    """The object array, once its state checked out: its rows are list `number` of the interpreter's lists."""

    __slots__ = ("number",)

    def __init__(self, number: int):
        self.number = number


def kind_of(value) -> str:
    return value.name if type(value) is Name else type(value).__name__.lstrip("_")


def is_int(value, expected: int) -> bool:
    return type(value) is int and value == expected


def latin1_bytes(text: str) -> bytes:
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        raise PickleRefused("_codecs.encode of text that is not latin-1") from None


def dtype_from_state(code: str, state) -> np.dtype:
    """The dtype `code` with the byte order NumPy's dtype state (version, order, ...) gives it."""
    if type(state) is not tuple or len(state) != 8 or not is_int(state[0], 3) or type(state[1]) is not str \
            or state[1] not in ("<", ">", "|", "="):
        raise PickleRefused("a dtype's state is not NumPy's")
    if code[0] == "O":
        return np.dtype(object)
    return np.dtype((">" if state[1] == ">" else "<") + code)


def integer_row(data, dtype, shape) -> np.ndarray:
    """A 1-D integer array from raw bytes, once the shape × itemsize matches the bytes exactly."""
    if type(dtype) is DtypeShell:
        dtype = dtype.dtype
    if not isinstance(dtype, np.dtype) or dtype.kind not in "iu":
        raise PickleRefused("a row is not an integer array")
    if type(data) is str:  # Python 2 pickles hold raw bytes as latin-1 text
        data = latin1_bytes(data)
    if type(data) is not bytes:
        raise PickleRefused("an integer row's data is not bytes")
    if type(shape) is not tuple or len(shape) != 1 or type(shape[0]) is not int or shape[0] < 0:
        raise PickleRefused("an integer row is not 1-D")
    if shape[0] * dtype.itemsize != len(data):
        raise PickleRefused(f"an integer row declares {shape[0]} items of {dtype.itemsize} bytes but holds "
                            f"{len(data)} bytes")
    return np.frombuffer(data, dtype).astype(dtype.newbyteorder("="))
