"""Reading `.npy` and `.npz` files with every size checked before anything is inflated or allocated: the zip
member's declared size against the `.npy` header's shape × itemsize, the total against free memory.

Inflation then streams into the array NumPy would have made, capped at the declared size (a lying zip header
cannot inflate past it), and a huge member that compresses like a zip bomb is refused before it is read.
"""

from __future__ import annotations

import math
import tokenize
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np

from nnctl.errors import NnctlError, clip
from nnctl.host import check_fits, check_regular_file, size_text

# A member this large that inflates more than MAX_RATIO times is a zip bomb, not data: deflate tops out near
# 1030:1 on zeros, while real data sets (MNIST 5:1, IMDB 1.6:1, a one-hot label matrix ~50:1) stay far below.
BOMB_FLOOR = 64 << 20
MAX_RATIO = 200
_CHUNK = 1 << 22
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_NPY_MAGIC = b"\x93NUMPY"


def read_header(raw, where: str) -> tuple[tuple, bool, np.dtype, int]:
    """(shape, fortran_order, dtype, bytes of array data) from the `.npy` header at the start of `raw`."""
    try:
        with warnings.catch_warnings():  # a garbled header's escapes make `ast` warn before it refuses them
            warnings.simplefilter("ignore", DeprecationWarning)
            return _parse_header(raw, where)
    # NumPy parses the header dict with `ast`; a garbled one can also end in tokenize's or the parser's errors
    except (ValueError, EOFError, OSError, SyntaxError, TypeError, RecursionError, tokenize.TokenError) as err:
        raise NnctlError(f"{where} is not a readable .npy array: {type(err).__name__}: {str(err)[:200]}") from None


def _parse_header(raw, where: str) -> tuple[tuple, bool, np.dtype, int]:
    version = np.lib.format.read_magic(raw)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(raw)
    elif version in ((2, 0), (3, 0)):  # 3.0 differs from 2.0 only in the header's text encoding
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(raw)
    else:
        raise NnctlError(f"{where} has an unsupported .npy version {version}")
    if any(type(size) is not int or size < 0 for size in shape):
        raise NnctlError(f"{where}: its .npy header declares an impossible shape {clip(shape, 100)}")
    if dtype.itemsize == 0:  # NumPy would still allocate a byte per item, for data the file does not hold
        raise NnctlError(f"{where}: its .npy header declares {clip(dtype, 60)}, whose items hold no bytes")
    return shape, fortran, dtype, math.prod(shape) * dtype.itemsize


def read_data(raw, shape, fortran: bool, dtype: np.dtype, nbytes: int, where: str) -> np.ndarray:
    """The array data after the header, streamed into the array in chunks; exactly `nbytes` must be there."""
    array = np.empty(math.prod(shape), dtype)
    view = memoryview(array.reshape(-1).view(np.uint8)) if nbytes else memoryview(b"")
    got = 0
    while got < nbytes:
        count = raw.readinto(view[got:got + _CHUNK])
        if not count:
            raise NnctlError(f"{where} is truncated: its header declares {size_text(nbytes)} of data, it holds "
                             f"{size_text(got)}")
        got += count
    if fortran and len(shape) > 1:
        return array.reshape(shape[::-1]).transpose()
    return array.reshape(shape)


def _member_arrays(archive: zipfile.ZipFile, path: Path, read_object) -> dict[str, np.ndarray]:
    members = [info for info in archive.infolist() if info.filename.endswith(".npy")]
    check_fits(sum(info.file_size for info in members), str(path))
    out = {}
    for info in members:
        where = f"{path}: member {info.filename}"
        if info.file_size > BOMB_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise NnctlError(f"{where} inflates from {size_text(info.compress_size)} to "
                             f"{size_text(info.file_size)} ({info.file_size // max(info.compress_size, 1)}:1), "
                             f"like a zip bomb: nnctl refuses ratios over {MAX_RATIO}:1 above "
                             f"{size_text(BOMB_FLOOR)}; save it with np.savez (uncompressed)")
        with archive.open(info) as raw:
            shape, fortran, dtype, nbytes = read_header(raw, where)
            data_size = info.file_size - raw.tell()
            if dtype.hasobject:
                out[info.filename[:-4]] = read_object(raw, shape, dtype, data_size, where)
                continue
            if data_size != nbytes:  # np.save writes exactly the header and the data
                raise NnctlError(f"{where}: its .npy header declares {clip(shape, 100)} {clip(dtype, 60)} "
                                 f"({size_text(nbytes)}) but the zip member holds {size_text(max(data_size, 0))} "
                                 f"of data")
            out[info.filename[:-4]] = read_data(raw, shape, fortran, dtype, nbytes, where)
    return out


def refuse_objects(raw, shape, dtype, data_size: int, where: str):
    raise NnctlError(f"{where} holds pickled Python objects, which nnctl does not read from user files: save plain "
                     f"numeric arrays")


def read_array_file(path, read_object=refuse_objects) -> dict[str, np.ndarray]:
    """Every array in a `.npy` (as "x") or `.npz` file, told apart by their first bytes. Object arrays go to
    `read_object(raw, shape, dtype, data_size, where)` (by default: refused)."""
    path = Path(path)
    info = check_regular_file(path)
    try:
        with open(path, "rb") as handle:
            magic = handle.read(6)
            handle.seek(0)
            if magic.startswith(_ZIP_MAGIC) or (path.suffix.lower() == ".npz" and not magic.startswith(_NPY_MAGIC)):
                try:
                    archive = zipfile.ZipFile(handle)
                except zipfile.BadZipFile:
                    raise NnctlError(f"{path} is not an .npz (zip) file") from None
                with archive:
                    return _member_arrays(archive, path, read_object)
            if not magic.startswith(_NPY_MAGIC):
                raise NnctlError(f"{path} is not an .npy file (nor an .npz)")
            shape, fortran, dtype, nbytes = read_header(handle, str(path))
            if dtype.hasobject:
                return {"x": read_object(handle, shape, dtype, info.st_size - handle.tell(), str(path))}
            if info.st_size - handle.tell() < nbytes:
                raise NnctlError(f"{path} is truncated: its header declares {clip(shape, 100)} {clip(dtype, 60)} "
                                 f"({size_text(nbytes)}), the file holds {size_text(info.st_size - handle.tell())}")
            check_fits(nbytes, str(path))
            return {"x": read_data(handle, shape, fortran, dtype, nbytes, str(path))}
    # a member torn inside (bad CRC, a broken deflate stream), encrypted or compressed some unknown way
    except (OSError, zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError, RuntimeError) as err:
        raise NnctlError(f"cannot read {path}: {type(err).__name__}: {str(err)[:200]}") from None
