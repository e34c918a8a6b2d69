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
import zipfile
from pathlib import Path

import numpy as np

from nnctl.data.object_pickle import PickleRefused, decode_object_rows
from nnctl.data.sequences import Sequences
from nnctl.errors import NnctlError

CACHE_FORMAT = 1


def read_npy(raw, where: str) -> np.ndarray:
    """The array in the `.npy` stream `raw` (`where` names it in errors): plain arrays without pickle, a 1-D
    object array decoded by `object_pickle` into an object array of 1-D integer arrays."""
    version = np.lib.format.read_magic(raw)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(raw)
    elif version in ((2, 0), (3, 0)):
        # 3.0 differs from 2.0 only in the header's text encoding (utf-8 vs latin-1), not its layout
        shape, _, dtype = np.lib.format.read_array_header_2_0(raw)
    else:
        raise NnctlError(f"{where} has an unsupported .npy version {version}")
    if not dtype.hasobject:
        raw.seek(0)
        return np.lib.format.read_array(raw, allow_pickle=False)
    if dtype != np.dtype(object) or len(shape) != 1:
        raise NnctlError(f"{where} is not a 1-D object array of sequences (header: {dtype}, shape {shape})")
    try:
        found = decode_object_rows(raw.read(), shape[0])
    except PickleRefused as err:
        raise NnctlError(f"{where}: {err}") from None
    rows = np.empty(len(found), dtype=object)
    for i, row in enumerate(found):
        rows[i] = row
    return rows


def _read_member(archive: zipfile.ZipFile, member: str, source: Path) -> np.ndarray:
    with archive.open(member) as raw:
        return read_npy(raw, f"{source}: member {member}")


def load_npz_objects(path) -> dict[str, np.ndarray]:
    """Every array of an `.npz`: plain members read without pickle, object members decoded by `object_pickle`
    (returned as an object array of 1-D integer arrays)."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            return {member[:-len(".npy")]: _read_member(archive, member, path)
                    for member in archive.namelist() if member.endswith(".npy")}
    except NnctlError:
        raise
    except FileNotFoundError:
        raise NnctlError(f"no such file: {path}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
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
