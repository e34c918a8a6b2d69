"""The restricted unpickler (Keras's object-array layout accepted, anything else refused with no side effect) and
the pickle-free token cache (written once, read without pickle, invalidated when the source changes)."""

import io
import os
import pickle
import zipfile

import numpy as np
import pytest

from nnctl.data import safe_pickle
from nnctl.data.safe_pickle import load_npz_objects, load_sequence_npz
from nnctl.data.sequences import Sequences
from nnctl.errors import NnctlError

ROWS = [[11, 19, 13, 40], [5], [], [2, 2, 7]]


def object_array(rows):
    """An object array of Python lists, the way Keras's imdb.npz holds reviews."""
    array = np.empty(len(rows), dtype=object)
    for i, row in enumerate(rows):
        array[i] = row
    return array


def write_npz(path, **arrays):
    np.savez(path, **arrays)  # object arrays are pickled on save, as in Keras's files
    return path


def npy_bytes_with_pickle(payload: bytes, shape=(1,)) -> bytes:
    """A .npy member whose header says "object array" and whose body is `payload` (a pickle)."""
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": "|O", "fortran_order": False, "shape": shape})
    return out.getvalue() + payload


def write_raw_npz(path, **members: bytes):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(f"{name}.npy", data)
    return path


class RunsCommand:
    """Unpickling this runs `os.system(command)`: what a malicious dataset file would do."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


# --- the Keras layout is accepted -----------------------------------------------------------------------------

def test_keras_layout_is_read(tmp_path):
    path = write_npz(tmp_path / "imdb.npz", x_train=object_array(ROWS), y_train=np.array([1, 0, 1, 0]))
    arrays = load_npz_objects(path)
    assert set(arrays) == {"x_train", "y_train"}
    assert arrays["x_train"].dtype == object and len(arrays["x_train"]) == 4
    assert [row.tolist() for row in arrays["x_train"]] == ROWS
    assert arrays["y_train"].tolist() == [1, 0, 1, 0]


def test_old_numpy_spelling_is_read(tmp_path):
    # NumPy 1 wrote object arrays with protocol 3 and `numpy.core.multiarray`; protocol 3 names globals in text
    payload = pickle.dumps(object_array(ROWS), protocol=3)
    assert b"numpy._core.multiarray" in payload
    payload = payload.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    path = write_raw_npz(tmp_path / "old.npz", x=npy_bytes_with_pickle(payload, shape=(4,)))
    assert [row.tolist() for row in load_npz_objects(path)["x"]] == ROWS


def test_rows_stored_as_integer_arrays_are_read(tmp_path):
    rows = object_array([np.array(row, dtype=np.int32) for row in ROWS])
    path = write_npz(tmp_path / "a.npz", x=rows)
    assert [row.tolist() for row in load_npz_objects(path)["x"]] == ROWS


# --- anything else is refused, before it runs -----------------------------------------------------------------

def test_malicious_pickle_is_refused_without_side_effect(tmp_path):
    marker = tmp_path / "pwned"
    evil = object_array([[1, 2], RunsCommand(f"touch {marker}")])
    path = write_npz(tmp_path / "imdb.npz", x_train=evil, y_train=np.array([0, 1]))
    with pytest.raises(NnctlError, match=r"refusing to unpickle (posix|nt|os)\.system: only NumPy arrays and "
                                         r"plain lists/ints are allowed") as err:
        load_npz_objects(path)
    assert str(path) in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize("target", [eval, exec, getattr, __import__])
def test_other_globals_are_refused(tmp_path, target):
    class Call:
        def __reduce__(self):
            return target, ("1",)

    payload = pickle.dumps(object_array([Call()]))
    path = write_raw_npz(tmp_path / "x.npz", x=npy_bytes_with_pickle(payload))
    with pytest.raises(NnctlError, match=f"refusing to unpickle builtins.{target.__name__}"):
        load_npz_objects(path)


@pytest.mark.parametrize("rows", [["a", "b"], [[1.5, 2.0]], [[1, [2]]], [[[1, 2], [3, 4]]], [{"a": 1}], [(1, 2)],
                                  [[2**70]]])
def test_rows_that_are_not_lists_of_ints_are_refused(tmp_path, rows):
    path = write_npz(tmp_path / "x.npz", x=object_array(rows))
    with pytest.raises(NnctlError, match=r"x\.npz: member x\.npy: "):
        load_npz_objects(path)


def test_a_pickle_that_is_not_an_object_array_is_refused(tmp_path):
    path = write_raw_npz(tmp_path / "x.npz", x=npy_bytes_with_pickle(pickle.dumps([[1, 2]])))
    with pytest.raises(NnctlError, match="x.npy: the pickle does not hold one object array"):
        load_npz_objects(path)


def test_unreadable_files_give_one_clear_error(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(NnctlError, match=r"bad\.npz is not an \.npz \(zip\) file"):
        load_npz_objects(tmp_path / "bad.npz")
    with pytest.raises(NnctlError, match="no such file"):
        load_npz_objects(tmp_path / "missing.npz")
    truncated = write_raw_npz(tmp_path / "cut.npz", x=npy_bytes_with_pickle(pickle.dumps(object_array(ROWS))[:20]))
    with pytest.raises(NnctlError, match="cut.npz: member x.npy: .* runs past the end of the pickle"):
        load_npz_objects(truncated)


# --- the pickle-free cache ------------------------------------------------------------------------------------

@pytest.fixture
def source(tmp_path):
    return write_npz(tmp_path / "imdb.npz", x_train=object_array(ROWS), y_train=np.array([1, 0, 1, 0]))


def refuse_unpickling(monkeypatch):
    def fail(path):
        raise AssertionError("the source was unpickled again")
    monkeypatch.setattr(safe_pickle, "load_npz_sequences", fail)


def test_cache_round_trip_skips_the_unpickler(tmp_path, source, monkeypatch):
    cache = tmp_path / "cache" / "imdb.tokens.npz"
    first = load_sequence_npz(source, cache)
    assert isinstance(first["x_train"], Sequences) and first["x_train"].to_lists() == ROWS
    assert cache.is_file()
    with np.load(cache, allow_pickle=False) as stored:  # nothing pickled in the cache
        assert {key: stored[key].dtype.kind for key in stored.files} == {
            "__source__": "i", "x_train.tokens": "i", "x_train.offsets": "i", "y_train": "i"}
    refuse_unpickling(monkeypatch)
    second = load_sequence_npz(source, cache)
    np.testing.assert_array_equal(second["x_train"].tokens, first["x_train"].tokens)
    np.testing.assert_array_equal(second["x_train"].offsets, first["x_train"].offsets)
    np.testing.assert_array_equal(second["y_train"], first["y_train"])
    assert [p.name for p in cache.parent.iterdir()] == ["imdb.tokens.npz"]  # no temp files left


def test_a_changed_source_invalidates_the_cache(tmp_path, source, monkeypatch):
    cache = tmp_path / "imdb.tokens.npz"
    load_sequence_npz(source, cache)
    write_npz(source, x_train=object_array([[4, 4]]), y_train=np.array([1]))
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert load_sequence_npz(source, cache)["x_train"].to_lists() == [[4, 4]]
    refuse_unpickling(monkeypatch)
    assert load_sequence_npz(source, cache)["x_train"].to_lists() == [[4, 4]]


def test_a_touched_source_invalidates_the_cache(tmp_path, source, monkeypatch):
    cache = tmp_path / "imdb.tokens.npz"
    load_sequence_npz(source, cache)
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    refuse_unpickling(monkeypatch)
    with pytest.raises(AssertionError, match="unpickled again"):
        load_sequence_npz(source, cache)


def test_a_torn_cache_is_rebuilt(tmp_path, source):
    cache = tmp_path / "imdb.tokens.npz"
    cache.write_bytes(b"PK\x03\x04 torn")
    assert load_sequence_npz(source, cache)["x_train"].to_lists() == ROWS
    with np.load(cache, allow_pickle=False) as stored:
        assert "x_train.tokens" in stored.files


def test_an_unwritable_cache_folder_still_loads(tmp_path, source):
    (tmp_path / "not-a-folder").write_text("")
    data = load_sequence_npz(source, tmp_path / "not-a-folder" / "imdb.tokens.npz")
    assert data["x_train"].to_lists() == ROWS


# --- the real files decode exactly as the pickle-based reader did (only with NNCTL_DATA_DIR set) ----------------

# sha256 (first 16 hex digits) of Sequences.from_lists(rows).tokens / .offsets from the unpickler this decoder
# replaced (nnctl before issue #14), on Keras's imdb.npz and reuters.npz
OLD_READER_DIGESTS = {
    ("imdb.npz", "x_train"): ("839f238f42e49ed3", "fde3f42562089595"),
    ("imdb.npz", "x_test"): ("88455a6ba2a9e95f", "0aaf4ad93962212c"),
    ("reuters.npz", "x"): ("b191a12937bb1213", "5662db7baf65b8b6"),
}


@pytest.mark.slow
@pytest.mark.parametrize("filename, member", list(OLD_READER_DIGESTS))
def test_real_files_decode_as_before(filename, member):
    import hashlib

    folder = os.environ.get("NNCTL_DATA_DIR")
    if not folder or not os.path.isfile(os.path.join(folder, filename)):
        pytest.skip("set NNCTL_DATA_DIR to a folder with the Keras dataset files")
    rows = load_npz_objects(os.path.join(folder, filename))[member]
    assert all(row.dtype == np.int64 for row in rows)
    sequences = Sequences.from_lists(rows)
    digests = tuple(hashlib.sha256(a.tobytes()).hexdigest()[:16] for a in (sequences.tokens, sequences.offsets))
    assert digests == OLD_READER_DIGESTS[(filename, member)]
