"""Reading Keras's pickled sequence files (imdb.npz, reuters.npz) without ever running their pickles' code,
and the pickle-free cache (flat int32 tokens + int64 offsets) that later loads read instead.

A file's hash cannot vouch for a pickle (local copies legitimately differ from Keras's bytes), so the unpickler
itself is restricted: it can only rebuild NumPy arrays, and the result must be rows of plain integers.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import secrets
import zipfile
from pathlib import Path

import numpy as np

from nnctl.data.sequences import Sequences
from nnctl.errors import NnctlError

# `ndarray.__reduce__` names NumPy's array rebuilder; fetching it this way avoids importing the private
# `numpy._core` (or the deprecated `numpy.core`) module.
_RECONSTRUCT = np.empty(0).__reduce__()[0]

# The only globals an object-array pickle refers to (checked with pickletools on imdb.npz and reuters.npz):
# NumPy >= 2 writes `numpy._core.multiarray`, NumPy 1 `numpy.core.multiarray`. Rows are plain lists, built by
# pickle opcodes with no global at all (`list` is allowed for writers that spell it out).
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("builtins", "list"): list,
    ("__builtin__", "list"): list,
}

CACHE_FORMAT = 1


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Refuses every global outside `_ALLOWED_GLOBALS`, before anything is called."""

    def __init__(self, file, source: Path):
        super().__init__(file, encoding="latin1")
        self.source = source

    def find_class(self, module, name):
        found = _ALLOWED_GLOBALS.get((module, name))
        if found is None:
            raise NnctlError(f"{self.source}: refusing to unpickle {module}.{name}: "
                             f"only NumPy arrays and plain lists/ints are allowed")
        return found

    def persistent_load(self, pid):
        raise NnctlError(f"{self.source}: refusing a pickle with persistent ids: "
                         f"only NumPy arrays and plain lists/ints are allowed")


def _int_row(value) -> np.ndarray | None:
    """`value` as a 1-D integer array when it is a list (or integer array) of ints; None otherwise."""
    if isinstance(value, np.ndarray):
        array = value
    elif isinstance(value, list):
        if not value:
            return np.zeros(0, dtype=np.int64)
        try:
            array = np.array(value)
        except (ValueError, TypeError, OverflowError):
            return None
    else:
        return None
    return array if array.ndim == 1 and array.dtype.kind in "iu" else None


def _checked_rows(loaded, shape, source: Path, member: str) -> np.ndarray:
    """The unpickled object array with each row as an integer array; NnctlError for anything else."""
    if type(loaded) is not np.ndarray or loaded.dtype != object or loaded.shape != shape or loaded.ndim != 1:
        raise NnctlError(f"{source}: member {member} is not a 1-D object array of sequences "
                         f"(got {type(loaded).__name__})")
    rows = np.empty(len(loaded), dtype=object)
    for i, value in enumerate(loaded):
        row = _int_row(value)
        if row is None:
            raise NnctlError(f"{source}: member {member} row {i} is not a list of integers "
                             f"(got {type(value).__name__})")
        rows[i] = row
    return rows


def _read_member(archive: zipfile.ZipFile, member: str, source: Path) -> np.ndarray:
    with archive.open(member) as raw:
        version = np.lib.format.read_magic(raw)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(raw)
        elif version in ((2, 0), (3, 0)):
            # 3.0 differs from 2.0 only in the header's text encoding (utf-8 vs latin-1), not its layout
            shape, _, dtype = np.lib.format.read_array_header_2_0(raw)
        else:
            raise NnctlError(f"{source}: member {member} has an unsupported .npy version {version}")
        if not dtype.hasobject:
            raw.seek(0)
            return np.lib.format.read_array(raw, allow_pickle=False)
        payload = io.BytesIO(raw.read())
    loaded = _ArrayOnlyUnpickler(payload, source).load()
    return _checked_rows(loaded, shape, source, member)


def load_npz_objects(path) -> dict[str, np.ndarray]:
    """Every array of an `.npz`: plain members read without pickle, object members through the restricted
    unpickler and checked to be rows of integers (returned as an object array of 1-D integer arrays)."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            return {member[:-len(".npy")]: _read_member(archive, member, path)
                    for member in archive.namelist() if member.endswith(".npy")}
    except NnctlError:
        raise
    except FileNotFoundError:
        raise NnctlError(f"no such file: {path}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, AttributeError,
            TypeError, IndexError, KeyError, MemoryError) as err:
        raise NnctlError(f"cannot read {path}: {type(err).__name__}: {err}") from None


def _source_stamp(source: Path) -> np.ndarray:
    """What a cache remembers of its source: a changed size or modification time makes it stale."""
    stat = source.stat()
    return np.array([CACHE_FORMAT, stat.st_size, stat.st_mtime_ns], dtype=np.int64)


def _read_cache(cache: Path, stamp: np.ndarray) -> dict | None:
    try:
        with np.load(cache, allow_pickle=False) as stored:
            if "__source__" not in stored.files or not np.array_equal(stored["__source__"], stamp):
                return None
            arrays = {key: stored[key] for key in stored.files if key != "__source__"}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None  # unreadable or torn: rebuild it
    out = {}
    for key, array in arrays.items():
        if key.endswith(".tokens"):
            name = key[:-len(".tokens")]
            out[name] = Sequences(array, arrays[f"{name}.offsets"])
        elif not key.endswith(".offsets"):
            out[key] = array
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
    data = {key: Sequences.from_lists(array) if array.dtype == object else array
            for key, array in load_npz_objects(source).items()}
    if cache is not None:
        _write_cache(Path(cache), stamp, data)
    return data
