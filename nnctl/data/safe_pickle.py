"""Reading Keras's pickled sequence files (imdb.npz, reuters.npz) without unpickling them, and the pickle-free
cache (flat int32 tokens + int64 offsets) that later loads read instead.

A file's hash cannot vouch for a pickle (local copies legitimately differ from Keras's bytes), and an allow-list
of globals still let NumPy's `__setstate__` read past a crafted buffer, so object members are decoded by our own
opcode interpreter (`object_pickle`), which rebuilds the rows itself and never calls anything the file names.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

import numpy as np

from nnctl.data.npy_reader import read_array_file, read_data, read_header
from nnctl.data.object_pickle import PickleRefused, decode_object_rows
from nnctl.data.sequences import Sequences
from nnctl.errors import NnctlError, clip
from nnctl.host import size_text

CACHE_FORMAT = 1
# Keras's largest pickled member (imdb.npz's x_train) is 14 MiB; the decoder's slowest opcodes run at ~4 MB/s,
# so this bounds a crafted member to seconds
MAX_PICKLE = 64 << 20


def _decoded(raw, shape, dtype, data_size: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, offsets) of the 1-D object array pickled in the next `data_size` bytes of `raw`."""
    if dtype != np.dtype(object) or len(shape) != 1:
        raise NnctlError(f"{where} is not a 1-D object array of sequences (header: {dtype}, shape "
                         f"{clip(shape, 100)})")
    if data_size > MAX_PICKLE:
        raise NnctlError(f"{where} holds a {size_text(data_size)} pickle; nnctl decodes pickled sequence files "
                         f"up to {size_text(MAX_PICKLE)} (Keras's largest is 14 MiB)")
    try:
        return decode_object_rows(raw.read(max(data_size, 0)), shape[0])
    except PickleRefused as err:
        raise NnctlError(f"{where}: {err}") from None


def read_object_rows(raw, shape, dtype, data_size: int, where: str) -> np.ndarray:
    """The pickled object array as an object array of 1-D int64 rows (views into one flat array)."""
    tokens, offsets = _decoded(raw, shape, dtype, data_size, where)
    rows = np.empty(len(offsets) - 1, dtype=object)
    for i in range(len(rows)):
        rows[i] = tokens[offsets[i]:offsets[i + 1]]
    return rows


def _read_sequences(raw, shape, dtype, data_size: int, where: str) -> Sequences:
    """The pickled object array as `Sequences`, with no per-row object on the way."""
    tokens, offsets = _decoded(raw, shape, dtype, data_size, where)
    if len(tokens) and (tokens.min() < np.iinfo(np.int32).min or tokens.max() > np.iinfo(np.int32).max):
        raise NnctlError(f"{where}: sequence tokens must fit in int32")
    return Sequences(tokens.astype(np.int32), offsets)


def read_npy(raw, size: int, where: str) -> np.ndarray:
    """The array in the `size`-byte `.npy` stream `raw`, as `load_npz_objects` reads each member."""
    shape, fortran, dtype, nbytes = read_header(raw, where)
    if dtype.hasobject:
        return read_object_rows(raw, shape, dtype, size - raw.tell(), where)
    if size - raw.tell() != nbytes:
        raise NnctlError(f"{where}: its header declares {nbytes} bytes of data, it holds {size - raw.tell()}")
    return read_data(raw, shape, fortran, dtype, nbytes, where)


def load_npz_objects(path) -> dict[str, np.ndarray]:
    """Every array of an `.npz`, sizes checked before reading: plain members without pickle, object members
    decoded by `object_pickle` (as object arrays of 1-D integer arrays)."""
    return read_array_file(path, read_object=read_object_rows)


def load_npz_sequences(path) -> dict[str, Sequences | np.ndarray]:
    """Like `load_npz_objects`, with object members as `Sequences`: flat from the decoder to the result."""
    return read_array_file(path, read_object=_read_sequences)


def _source_stamp(source: Path) -> np.ndarray:
    """What a cache remembers of its source: a changed size or modification time makes it stale."""
    stat = source.stat()
    return np.array([CACHE_FORMAT, stat.st_size, stat.st_mtime_ns], dtype=np.int64)


def _read_cache(cache: Path, stamp: np.ndarray) -> dict | None:
    try:
        stored = read_array_file(cache)
    except NnctlError:
        return None  # unreadable or torn: rebuild it
    if "__source__" not in stored or not np.array_equal(stored["__source__"], stamp):
        return None
    arrays = {key: value for key, value in stored.items() if key != "__source__"}
    out = {}
    try:
        for key, array in arrays.items():
            if key.endswith(".tokens"):
                name = key[:-len(".tokens")]
                out[name] = Sequences(array, arrays[f"{name}.offsets"])
            elif not key.endswith(".offsets"):
                out[key] = array
    except (KeyError, ValueError, TypeError):
        return None  # a cache someone edited: rebuild it
    return out


def _write_cache(cache: Path, stamp: np.ndarray, data: dict) -> None:
    arrays = {"__source__": stamp}
    for key, value in data.items():
        if isinstance(value, Sequences):
            arrays[f"{key}.tokens"], arrays[f"{key}.offsets"] = value.tokens, value.offsets
        else:
            arrays[key] = value
    # a unique name opened with "x" (not mkstemp, whose files are private to the user) so the umask applies
    temp = cache.with_name(f".{cache.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with open(temp, "xb") as out:
            np.savez(out, **arrays)
        os.replace(temp, cache)
    except OSError:
        pass  # a read-only cache folder only costs the next run another conversion
    finally:
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)


def load_sequence_npz(source, cache=None) -> dict[str, Sequences | np.ndarray]:
    """A Keras sequence `.npz` with object members as `Sequences`, read from the pickle-free `cache` when it
    was made from this very source file, else converted from `source` and cached (atomically) for next time."""
    source = Path(source)
    try:
        stamp = _source_stamp(source)
    except FileNotFoundError:
        raise NnctlError(f"no such file: {source}") from None
    if cache is not None and Path(cache).is_file():
        cached = _read_cache(Path(cache), stamp)
        if cached is not None:
            return cached
    data = load_npz_sequences(source)
    if cache is not None:
        _write_cache(Path(cache), stamp, data)
    return data
