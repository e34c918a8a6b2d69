"""Sequences: flat tokens + offsets, row access, take, multi_hot and pad against plain-NumPy references."""


import numpy as np
import pytest

from nnctl.data.sequences import Sequences
from nnctl.engine.csr import CSRMatrix
from nnctl.errors import ArgumentError

ROWS = [[1, 14, 22, 14], [], [5], [3, 3, 3, 9, 12, 0], [7, 8]]


def random_rows(seed, n=40, high=30, max_len=12):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, high, rng.integers(0, max_len + 1)).tolist() for _ in range(n)]


def multi_hot_reference(rows, width):
    dense = np.zeros((len(rows), width), np.float32)
    for r, row in enumerate(rows):
        for token in row:
            if 0 <= token < width:
                dense[r, token] = 1.0
    return dense


def pad_reference(rows, maxlen, padding, truncating, value):
    """keras.utils.pad_sequences, written out row by row."""
    out = np.full((len(rows), maxlen), value, np.int32)
    for r, row in enumerate(rows):
        kept = row[-maxlen:] if truncating == "pre" else row[:maxlen]
        kept = kept if maxlen else []
        if not kept:
            continue
        if padding == "pre":
            out[r, maxlen - len(kept):] = kept
        else:
            out[r, :len(kept)] = kept
    return out


# --- layout and access ----------------------------------------------------------------------------------------

def test_from_lists_layout_and_round_trip():
    seqs = Sequences.from_lists(ROWS)
    assert seqs.tokens.dtype == np.int32 and seqs.offsets.dtype == np.int64
    assert seqs.offsets.tolist() == [0, 4, 4, 5, 11, 13]
    assert seqs.lengths().tolist() == [4, 0, 1, 6, 2]
    assert seqs.to_lists() == ROWS
    assert len(seqs) == 5


def test_from_lists_accepts_arrays_and_empty_input():
    seqs = Sequences.from_lists([np.array(row, dtype=np.int64) for row in ROWS])
    assert seqs.to_lists() == ROWS
    empty = Sequences.from_lists([])
    assert len(empty) == 0 and empty.to_lists() == [] and empty.offsets.tolist() == [0]


def test_from_lists_refuses_tokens_beyond_int32():
    with pytest.raises(ArgumentError, match="int32"):
        Sequences.from_lists([[2**31]])


def test_getitem_gives_views_and_take_gives_sequences():
    seqs = Sequences.from_lists(ROWS)
    row = seqs[3]
    assert row.dtype == np.int32 and row.tolist() == ROWS[3]
    assert np.shares_memory(row, seqs.tokens)
    assert seqs[-1].tolist() == ROWS[-1]
    with pytest.raises(IndexError):
        seqs[5]
    assert seqs[1:4].to_lists() == ROWS[1:4]
    assert seqs.take([4, 0, 0, 1]).to_lists() == [ROWS[4], ROWS[0], ROWS[0], ROWS[1]]
    assert seqs.take(np.array([True, False, True, False, True])).to_lists() == [ROWS[0], ROWS[2], ROWS[4]]
    assert seqs.take([]).to_lists() == []
    assert [r.tolist() for r in seqs] == ROWS


def test_prepend_and_keep_tokens():
    seqs = Sequences.from_lists(ROWS)
    assert seqs.prepend(1).to_lists() == [[1] + row for row in ROWS]
    keep = seqs.tokens % 2 == 1
    assert seqs.keep_tokens(keep).to_lists() == [[t for t in row if t % 2 == 1] for row in ROWS]


def test_bad_offsets_are_refused():
    with pytest.raises(ValueError):
        Sequences(np.arange(3), np.array([0, 2]))
    with pytest.raises(ValueError):
        Sequences(np.arange(3), np.array([0, 2, 1, 3]))


# --- multi_hot ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed, width", [(0, 30), (1, 10), (2, 1), (3, 100)])
def test_multi_hot_matches_dense_reference(seed, width):
    rows = random_rows(seed)
    matrix = Sequences.from_lists(rows).multi_hot(width)
    assert isinstance(matrix, CSRMatrix) and matrix.shape == (len(rows), width)
    assert matrix.indptr.dtype == np.int64 and matrix.indices.dtype == np.int32
    assert matrix.values.dtype == np.float32
    np.testing.assert_array_equal(matrix.to_dense(), multi_hot_reference(rows, width))
    for r in range(len(rows)):
        cols = matrix.indices[matrix.indptr[r]:matrix.indptr[r + 1]]
        assert cols.tolist() == sorted(set(t for t in rows[r] if t < width))


def test_multi_hot_agrees_with_csr_from_sequences():
    rows = random_rows(5)
    ours = Sequences.from_lists(rows).multi_hot(20)
    theirs = CSRMatrix.from_sequences(rows, 20)
    np.testing.assert_array_equal(ours.indptr, theirs.indptr)
    np.testing.assert_array_equal(ours.indices, theirs.indices)


# --- pad ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("padding", ["pre", "post"])
@pytest.mark.parametrize("truncating", ["pre", "post"])
@pytest.mark.parametrize("maxlen", [0, 1, 4, 20])
def test_pad_matches_keras_reference(padding, truncating, maxlen):
    rows = random_rows(7)
    out = Sequences.from_lists(rows).pad(maxlen, padding=padding, truncating=truncating, value=99)
    assert out.dtype == np.int32 and out.shape == (len(rows), maxlen)
    np.testing.assert_array_equal(out, pad_reference(rows, maxlen, padding, truncating, 99))


def test_pad_without_maxlen_uses_the_longest_row():
    out = Sequences.from_lists(ROWS).pad()
    np.testing.assert_array_equal(out, pad_reference(ROWS, 6, "pre", "pre", 0))


@pytest.mark.parametrize("options, name", [({"padding": "left"}, "padding"), ({"truncating": "x"}, "truncating"),
                                           ({"maxlen": -1}, "maxlen")])
def test_pad_names_a_bad_argument(options, name):
    with pytest.raises(ArgumentError, match=f"`{name}`"):
        Sequences.from_lists(ROWS).pad(**{"maxlen": 3, **options})
