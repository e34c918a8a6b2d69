"""Unpickler fuzz: seeded mutants of NumPy's object-array pickles are each refused with NnctlError or decode to
a valid object array of integer rows — never another exception, never a crash (see `pickle_mutants`)."""

import io
import pickle
import time
import zipfile

import numpy as np
import pytest
from pickle_mutants import base_pickles, classify, mutants, npy_member, overdeclared_pickles

from nnctl.data.object_pickle import decode_object_rows
from nnctl.data.safe_pickle import load_npz_objects, load_npz_sequences, read_npy
from nnctl.data.sequences import Sequences
from nnctl.errors import NnctlError


def outcome(rows: int, payload: bytes) -> str:
    try:
        member = npy_member(payload, rows)
        loaded = read_npy(io.BytesIO(member), len(member), "fuzz.npz: member x.npy")
    except NnctlError as err:
        assert str(err).startswith("fuzz.npz: member x.npy"), err
        return "refused"
    return classify({"x": loaded})


def run_mutants(count: int, seed: int) -> dict:
    tally = {}
    for label, rows, payload in mutants(seed, count):
        found = outcome(rows, payload)
        assert found in ("refused", "ok"), (label, found)
        tally[found] = tally.get(found, 0) + 1
    return tally


def test_every_base_pickle_decodes_to_its_rows():
    for name, rows, payload in base_pickles():
        member = npy_member(payload, rows)
        array = read_npy(io.BytesIO(member), len(member), name)
        assert array.dtype == object and array.shape == (rows,), name
        assert all(row.ndim == 1 and row.dtype.kind in "iu" for row in array), name


@pytest.mark.parametrize("name, rows, payload", overdeclared_pickles(), ids=lambda case: str(case)[:40])
def test_the_overdeclared_setstate_payloads_are_refused(name, rows, payload):
    with pytest.raises(NnctlError, match="fuzz.npz: member x.npy: "):
        member = npy_member(payload, rows)
        read_npy(io.BytesIO(member), len(member), "fuzz.npz: member x.npy")


def test_mutants_are_refused_or_valid():
    tally = run_mutants(5000, seed=14)
    assert tally["refused"] > 4000 and tally.get("ok", 0) > 0  # the fuzzer reaches both ends


@pytest.mark.slow
@pytest.mark.long
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_many_more_mutants_are_refused_or_valid(seed):
    run_mutants(25000, seed=seed)


def test_the_same_via_a_file(tmp_path):
    """The whole path (zip member, header, pickle) for a few hundred mutants, as `nnctl` reads them."""
    path = tmp_path / "m.npz"
    for label, rows, payload in mutants(7, 300):
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("x.npy", npy_member(payload, rows))
        for read in (load_npz_objects, load_npz_sequences):
            try:
                loaded = read(path)
            except NnctlError as err:
                assert str(err).startswith((f"{path}: member x.npy", f"cannot read {path}")), err
                continue
            if read is load_npz_objects:
                assert classify(loaded) == "ok", label
            else:
                assert isinstance(loaded["x"], Sequences) and len(loaded["x"]) == rows, label


# --- bounds: what a crafted payload can cost --------------------------------------------------------------------

def _peak_kib_of(function) -> int:
    import tracemalloc
    tracemalloc.start()
    try:
        function()
    except NnctlError:
        pass
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak // 1024


@pytest.mark.parametrize("body, rows", [
    (b"]" + b"]\x94a" * 50_000, 50_000),                # rows kept alive through the memo
    (b"](" + b"K\x01" * 60_000 + b"e", 1),               # one long batch of ints
    (b"N" * 400_000, 1),                                 # the stack
    (b"(" * 1000, 1),                                    # MARKs
], ids=["memo", "ints", "stack", "marks"])
def test_memory_and_time_stay_linear_in_the_payload(body, rows):
    payload = b"\x80\x04" + body + b"."
    started = time.process_time()  # CPU time: a busy machine (parallel tests) does not stretch it
    with pytest.raises(NnctlError):
        decode_object_rows(payload, rows)
    assert time.process_time() - started < 2.0
    peak = _peak_kib_of(lambda: decode_object_rows(payload, rows))  # (tracemalloc slows it several times)
    assert peak < 32 * len(payload) // 1024 + 1024, (peak, len(payload))


def test_a_row_shared_through_the_memo_cannot_multiply_the_payload():
    row = list(range(1000, 2000))
    shared = np.empty(5000, dtype=object)
    shared[:] = [row] * 5000  # one list object: the pickle stores it once and refers to it 4,999 times
    payload = pickle.dumps(shared, protocol=4)
    assert len(payload) < 40_000
    with pytest.raises(NnctlError, match="shared through the memo add up to 5000000 tokens"):
        decode_object_rows(payload, 5000)
    few = np.empty(3, dtype=object)
    few[:] = [row] * 3  # sharing that stays within the payload's size is a legitimate pickle
    tokens, offsets = decode_object_rows(pickle.dumps(few, protocol=4), 3)
    assert tokens.tolist() == row * 3 and offsets.tolist() == [0, 1000, 2000, 3000]


def test_lists_cannot_nest_below_rows():
    # L0, L1; L1 appended into L0 (a row of L0); then L2 appended into L1: refused at once, so no structure
    # deeper than rows of integers ever exists (and nothing recurses over one)
    body = b"]q\x00]q\x01h\x00h\x01a]q\x02h\x01h\x02a"
    with pytest.raises(NnctlError, match="a row holds something other than integers"):
        decode_object_rows(b"\x80\x02" + body + b".", 3)


@pytest.mark.parametrize("body, message", [
    (b"N" + b"\x85" * 1_000_000, "more objects than a 1000004-byte NumPy pickle makes"),  # nested deep
    (b"\x80\x04" * 1000, "a second PROTO at byte 2"),
], ids=["nested tuples", "repeated PROTO"])
def test_cheap_opcodes_cannot_spin(body, message):
    started = time.process_time()  # CPU time: a busy machine (parallel tests) does not stretch it much
    with pytest.raises(NnctlError, match=message):
        decode_object_rows(b"\x80\x04" + body + b".", 1)
    # 0.45 s on an idle core, 1.05 s in a CI run with the other core busy (cache and memory bandwidth shared);
    # a reader quadratic in the nesting would take hours on a million levels
    assert time.process_time() - started < 5.0


def test_pickled_members_past_the_cap_are_refused_unread(tmp_path, monkeypatch):
    from nnctl.data import safe_pickle

    monkeypatch.setattr(safe_pickle, "MAX_PICKLE", 1000)
    rows = np.empty(300, dtype=object)
    rows[:] = [[i, i + 1] for i in range(300)]
    np.savez(tmp_path / "big.npz", x=rows)
    with pytest.raises(NnctlError, match=r"member x\.npy holds a [\d.]+ KiB pickle; nnctl decodes pickled sequence "
                                         r"files up to 1000 bytes"):
        load_npz_objects(tmp_path / "big.npz")


@pytest.mark.parametrize("rows", [[[]] * 20_000, [[7]] * 20_000, [list(range(300))] * 300],
                         ids=["empty rows", "one-token rows", "long rows"])
def test_legitimate_pickles_decode_in_a_small_multiple_of_their_size(rows):
    array = np.empty(len(rows), dtype=object)
    array[:] = [list(row) for row in rows]  # distinct lists, as Keras's files hold them
    payload = pickle.dumps(array, protocol=4)
    tokens, offsets = decode_object_rows(payload, len(rows))
    assert offsets[-1] == sum(map(len, rows)) and len(offsets) == len(rows) + 1
    assert _peak_kib_of(lambda: decode_object_rows(payload, len(rows))) < 20 * len(payload) // 1024 + 256
