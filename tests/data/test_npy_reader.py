""".npy/.npz sizes are checked before anything is inflated or allocated: zip bombs (honest and lying headers),
.npy headers that declare more than the file holds, sizes that cannot fit in memory, files that are not files."""

import io
import os
import struct
import time
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest

import nnctl.host

from nnctl.data import npy_reader
from nnctl.data.npy_reader import read_array_file
from nnctl.errors import NnctlError

GIB = 1 << 30


def npy_header(shape, descr="|u1") -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": descr, "fortran_order": False, "shape": shape})
    return out.getvalue()


def deflated_zeros(size: int) -> bytes:
    """A raw deflate stream of `size` zero bytes, made in milliseconds: one fully flushed 1 MiB block (it
    depends on nothing before it) repeated, then the final block."""
    block = zlib.compressobj(9, zlib.DEFLATED, -15)
    one = block.compress(bytes(1 << 20)) + block.flush(zlib.Z_FULL_FLUSH)
    return one * (size >> 20) + block.flush()


def raw_zip(path, name: str, data: bytes, declared_size: int, crc: int, method: int = zipfile.ZIP_DEFLATED):
    """A one-member zip written byte by byte, so its header can declare any uncompressed size (or lie)."""
    fields = (20, 0, method, 0, 0, crc, len(data), declared_size, len(name), 0)
    local = b"PK\x03\x04" + struct.pack("<HHHHHIIIHH", *fields) + name.encode()
    central = (b"PK\x01\x02" + struct.pack("<HHHHHHIIIHHHHHII", 20, *fields, 0, 0, 0, 0, 0)
               + name.encode())
    end = b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, 1, 1, len(central), len(local) + len(data), 0)
    path.write_bytes(local + data + central + end)
    return path


def measured(function):
    """(the NnctlError message or the result, seconds, peak traced MiB)."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        result = function()
    except NnctlError as err:
        result = str(err)
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] / (1 << 20)
    tracemalloc.stop()
    return result, seconds, peak


def test_an_honest_zip_bomb_is_refused_before_inflating(tmp_path):
    # 3 MiB that inflates to 3 GiB, and both headers say so
    header = npy_header((3 * GIB,))
    member = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = member.compress(header) + member.flush(zlib.Z_FULL_FLUSH) + deflated_zeros(3 * GIB)
    path = raw_zip(tmp_path / "bomb.npz", "x_train.npy", data, len(header) + 3 * GIB, 0)
    assert os.path.getsize(path) < 4 << 20
    message, seconds, peak = measured(lambda: read_array_file(path))
    assert "member x_train.npy inflates from 3.0 MiB to 3.0 GiB" in message and "like a zip bomb" in message
    assert seconds < 0.5 and peak < 8


def test_a_lying_zip_header_cannot_inflate_past_its_declared_size(tmp_path):
    # the member declares 1,000 data bytes (and so does the .npy header), but the stream inflates to 3 GiB
    header = npy_header((1000,))
    member = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = member.compress(header) + member.flush(zlib.Z_FULL_FLUSH) + deflated_zeros(3 * GIB)
    crc = zlib.crc32(header + bytes(1000))
    path = raw_zip(tmp_path / "liar.npz", "x.npy", data, len(header) + 1000, crc)
    result, seconds, peak = measured(lambda: read_array_file(path))
    assert seconds < 0.5 and peak < 16
    assert isinstance(result, dict) and result["x"].shape == (1000,) and not result["x"].any()


def test_a_lying_npy_header_is_refused_before_reading(tmp_path):
    # the .npy header declares 10**12 float64s; the member holds 80 bytes
    path = tmp_path / "small.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", npy_header((10**12,), "<f8") + bytes(80))
    message, seconds, _ = measured(lambda: read_array_file(path))
    assert "member x.npy: its .npy header declares (1000000000000,) float64 (7.3 TiB)" in message
    assert "holds 80 bytes of data" in message and seconds < 0.5


def test_a_truncated_npy_file_is_refused_before_allocating(tmp_path):
    path = tmp_path / "x.npy"
    path.write_bytes(npy_header((10**12,), "<f4") + bytes(40))
    with pytest.raises(NnctlError, match=r"x\.npy is truncated: its header declares \(1000000000000,\) float32 "
                                         r"\(3\.6 TiB\), the file holds 40 bytes"):
        read_array_file(path)


def test_sizes_that_cannot_fit_in_memory_are_refused_saying_how_much(tmp_path, monkeypatch):
    np.savez(tmp_path / "d.npz", x_train=np.zeros((768, 512), np.float32), y_train=np.zeros(768))
    np.save(tmp_path / "d.npy", np.zeros((768, 512), np.float32))
    monkeypatch.setattr(nnctl.host, "available_memory", lambda: 1 << 20)
    with pytest.raises(NnctlError, match=r"d\.npz needs 1\.5 MiB of memory to load, but only 1\.0 MiB"):
        read_array_file(tmp_path / "d.npz")
    with pytest.raises(NnctlError, match=r"d\.npy needs 1\.5 MiB of memory to load, but only 1\.0 MiB"):
        read_array_file(tmp_path / "d.npy")


@pytest.mark.parametrize("array", [np.arange(12, dtype=np.float32).reshape(3, 4),
                                   np.asfortranarray(np.arange(12.0).reshape(3, 4)), np.zeros((0, 5)),
                                   np.array(3.5), np.arange(6, dtype=">i4").reshape(2, 3)])
def test_arrays_read_back_exactly(tmp_path, array):
    np.save(tmp_path / "a.npy", array)
    np.savez_compressed(tmp_path / "a.npz", x=array)
    for name in ("a.npy", "a.npz"):
        back = read_array_file(tmp_path / name)["x"]
        np.testing.assert_array_equal(back, array)
        assert back.dtype == array.dtype and back.shape == array.shape


def test_files_that_are_not_regular_files_are_refused_at_once(tmp_path):
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    started = time.perf_counter()
    with pytest.raises(NnctlError, match=r"pipe\.npz is a FIFO \(named pipe\), not a data file"):
        read_array_file(fifo)
    assert time.perf_counter() - started < 1
    (tmp_path / "folder.npz").mkdir()
    with pytest.raises(NnctlError, match=r"folder\.npz is a folder, not a data file"):
        read_array_file(tmp_path / "folder.npz")
    with pytest.raises(NnctlError, match=r"null is a device, not a data file"):
        read_array_file("/dev/null")
    with pytest.raises(NnctlError, match=r"no such file: .*missing\.npz"):
        read_array_file(tmp_path / "missing.npz")


def test_a_symlink_to_text_is_not_an_npz_rather_than_a_pickle(tmp_path):
    (tmp_path / "notes.txt").write_text("hello\n" * 100)
    (tmp_path / "data.npz").symlink_to(tmp_path / "notes.txt")
    with pytest.raises(NnctlError, match=r"data\.npz is not an \.npz \(zip\) file"):
        read_array_file(tmp_path / "data.npz")
    (tmp_path / "data.npy").symlink_to(tmp_path / "notes.txt")
    with pytest.raises(NnctlError, match=r"data\.npy is not an \.npy file"):
        read_array_file(tmp_path / "data.npy")


def test_empty_and_torn_files_are_refused(tmp_path):
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(NnctlError, match="is not an .npz"):
        read_array_file(tmp_path / "empty.npz")
    np.savez_compressed(tmp_path / "t.npz", x=np.arange(1000.0))
    data = (tmp_path / "t.npz").read_bytes()
    (tmp_path / "t.npz").write_bytes(data[:60] + bytes(40) + data[100:])  # the deflate stream damaged
    with pytest.raises(NnctlError, match=r"cannot read .*t\.npz"):
        read_array_file(tmp_path / "t.npz")


def test_pickled_members_are_refused_in_user_files(tmp_path):
    rows = np.empty(2, dtype=object)
    rows[:] = [[1], [2, 3]]
    np.savez(tmp_path / "p.npz", x=rows)
    with pytest.raises(NnctlError, match=r"p\.npz: member x\.npy holds pickled Python objects"):
        read_array_file(tmp_path / "p.npz")



def _file_mutants(seed: int, count: int):
    """Byte flips, truncations and insertions of small .npz (stored, compressed, pickled) and .npy files."""
    import random

    rng = random.Random(seed)
    bases = {}
    for name, save in (("stored.npz", np.savez), ("deflated.npz", np.savez_compressed)):
        out = io.BytesIO()
        save(out, x=np.arange(60.0).reshape(6, 10), y=np.arange(6))
        bases[name] = out.getvalue()
    out = io.BytesIO()
    np.save(out, np.arange(60, dtype=np.float32).reshape(6, 10))
    bases["plain.npy"] = out.getvalue()
    rows = np.empty(3, dtype=object)
    rows[:] = [[1, 2], [3], []]
    out = io.BytesIO()
    np.savez(out, x=rows)
    bases["pickled.npz"] = out.getvalue()
    for _ in range(count):
        name = rng.choice(sorted(bases))
        data = bytearray(bases[name])
        kind = rng.random()
        if kind < 0.4:
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind < 0.7:
            data = data[:rng.randrange(len(data))]
        else:
            at = rng.randrange(len(data))
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        yield name, bytes(data)


def _read_mutants(tmp_path, seed, count):
    from nnctl.data.safe_pickle import load_npz_objects

    for name, data in _file_mutants(seed, count):
        path = tmp_path / name
        path.write_bytes(data)
        for read in (read_array_file, load_npz_objects):
            try:
                read(path)
            except NnctlError:
                pass


def test_mutated_files_are_refused_or_read(tmp_path):
    _read_mutants(tmp_path, seed=5, count=1000)  # anything but NnctlError fails the test


@pytest.mark.slow
@pytest.mark.long
def test_many_more_mutated_files(tmp_path):
    _read_mutants(tmp_path, seed=6, count=30000)


@pytest.mark.parametrize("shape, descr, message", [
    ((10**30,), "|V0", r"declares \|V0, whose items hold no bytes"),
    ((10**12,), "|S0", r"declares \|S0, whose items hold no bytes"),
    ((-5,), "<f4", r"declares an impossible shape \(-5,\)"),
    ((True, 3), "<f4", r"declares an impossible shape \(True, 3\)"),
    (tuple(range(1, 400)), "<f8", r"declares \(1, 2, 3, [^…]*…[^…]* float64"),
])
def test_impossible_headers_are_refused_before_allocating(tmp_path, shape, descr, message):
    (tmp_path / "h.npy").write_bytes(npy_header(shape, descr))
    with zipfile.ZipFile(tmp_path / "h.npz", "w") as archive:
        archive.writestr("x.npy", npy_header(shape, descr))
    for name in ("h.npy", "h.npz"):
        with pytest.raises(NnctlError, match=message) as err:
            read_array_file(tmp_path / name)
        assert len(str(err.value)) < 400
