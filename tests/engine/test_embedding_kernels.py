"""The embedding family's CPU kernels against their NumPy oracles (nnctl/engine/reference_embedding.py)."""

import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnctl.engine import reference_embedding as reference
from nnctl.engine.cpu import embedding as cpu

VOCAB, WIDTH = 50, 7


def _gather(rng, dtype):
    ids = rng.integers(0, VOCAB, 300).astype(np.int32)
    ids[10:20] = ids[0]  # repeated ids read the same row
    return ids, rng.standard_normal((VOCAB, WIDTH)).astype(dtype), np.zeros((300, WIDTH), dtype)


def _scatter(rng, dtype):
    ids = rng.integers(0, 12, 200).astype(np.int32)  # 200 ids over 12 rows: many duplicates
    grad = np.zeros((VOCAB, WIDTH), dtype)
    touched = np.zeros(VOCAB, np.int32)
    marks = np.zeros(VOCAB, np.uint8)
    # A previous step touched rows 30, 3 and 41 (3 is touched again now, 30 and 41 are not).
    for row in (30, 3, 41):
        grad[row] = rng.standard_normal(WIDTH)
        marks[row] = 1
    touched[:3] = (30, 3, 41)
    grad[ids[5]] = 99.0  # unrecorded content in a row used now: its first addend replaces it
    return ids, rng.standard_normal((200, WIDTH)).astype(dtype), grad, touched, 3, marks


def _scale(rng, dtype):
    x = rng.standard_normal((4, 9, 5)).astype(dtype)
    return x, rng.standard_normal((4, 5)).astype(dtype), np.zeros_like(x)


CASES = [
    *[pytest.param("embedding_gather", lambda rng, d=d: _gather(rng, d), id=f"gather-{d.__name__}")
      for d in (np.float32, np.float64)],
    *[pytest.param("embedding_scatter_add", lambda rng, d=d: _scatter(rng, d), id=f"scatter_add-{d.__name__}")
      for d in (np.float32, np.float64)],
    *[pytest.param("scale_channels", lambda rng, d=d: _scale(rng, d), id=f"scale_channels-{d.__name__}")
      for d in (np.float32, np.float64)],
]


@pytest.mark.parametrize("kernel, build", CASES)
def test_kernel_matches_reference(kernel, build):
    args = build(np.random.default_rng(0))
    ours, oracle = copy.deepcopy(args), copy.deepcopy(args)
    result = getattr(cpu, kernel)(*ours)
    expected = getattr(reference, kernel)(*oracle)
    assert result == expected
    for mine, theirs in zip(ours, oracle):
        if isinstance(mine, np.ndarray):
            # Same additions in the same order: the gradient rows agree to the last bit, not just closely.
            np.testing.assert_array_equal(mine, theirs)


def test_every_kernel_has_a_case_and_an_oracle():
    assert set(cpu.KERNELS) == {p.values[0] for p in CASES}
    assert all(callable(getattr(reference, name, None)) for name in cpu.KERNELS)


@pytest.mark.parametrize("position", [0, 1, 1500, 2999])
@pytest.mark.parametrize("bad_id", [-1, VOCAB, 10 ** 6])
def test_gather_reports_the_first_out_of_range_position(position, bad_id):
    rng = np.random.default_rng(1)
    ids = rng.integers(0, VOCAB, 3000).astype(np.int32)
    ids[position] = bad_id
    ids[-1] = -5  # a later bad id is not the one reported (at 2999 it is the one)
    table = rng.standard_normal((VOCAB, WIDTH)).astype(np.float32)
    out = np.zeros((3000, WIDTH), np.float32)
    expected = position
    assert cpu.embedding_gather(ids, table, out) == expected
    assert reference.embedding_gather(ids, table, out) == expected


def test_two_steps_leave_only_the_second_steps_rows():
    rng = np.random.default_rng(3)
    grad = np.zeros((VOCAB, WIDTH), np.float32)
    touched, marks = np.zeros(VOCAB, np.int32), np.zeros(VOCAB, np.uint8)
    first = np.array([4, 9, 4, 17, 9, 4], np.int32)
    second = np.array([9, 22, 22, 0], np.int32)
    dy1 = rng.standard_normal((6, WIDTH)).astype(np.float32)
    dy2 = rng.standard_normal((4, WIDTH)).astype(np.float32)
    count = cpu.embedding_scatter_add(first, dy1, grad, touched, 0, marks)
    assert count == 3 and list(touched[:3]) == [4, 9, 17]
    np.testing.assert_allclose(grad[4], dy1[0] + dy1[2] + dy1[5], rtol=1e-6)
    count = cpu.embedding_scatter_add(second, dy2, grad, touched, count, marks)
    assert count == 3 and list(touched[:3]) == [9, 22, 0]
    expected = np.zeros_like(grad)
    np.add.at(expected, second, dy2)
    np.testing.assert_array_equal(grad, expected)  # rows 4 and 17 (last step only) read zero again
    assert set(np.flatnonzero(marks)) == {0, 9, 22}


@settings(max_examples=40, deadline=None)
@given(vocab=st.integers(1, 40), width=st.integers(1, 20), steps=st.lists(st.integers(0, 60), min_size=1, max_size=4),
       seed=st.integers(0, 2 ** 16))
def test_scatter_add_over_several_steps_matches_the_oracle(vocab, width, steps, seed):
    """Any vocabulary, width and batch sizes (empty batches too): after every step the kernel's gradient and
    bookkeeping are the oracle's, and the gradient is exactly the step's own np.add.at."""
    rng = np.random.default_rng(seed)
    ours = [np.zeros((vocab, width), np.float32), np.zeros(vocab, np.int32), 0, np.zeros(vocab, np.uint8)]
    oracle = copy.deepcopy(ours)
    for n in steps:
        ids = rng.integers(0, vocab, n).astype(np.int32)
        dy = rng.standard_normal((n, width)).astype(np.float32)
        ours[2] = cpu.embedding_scatter_add(ids, dy, ours[0], ours[1], ours[2], ours[3])
        oracle[2] = reference.embedding_scatter_add(ids, dy, oracle[0], oracle[1], oracle[2], oracle[3])
        assert ours[2] == oracle[2] == len(np.unique(ids))
        np.testing.assert_array_equal(ours[0], oracle[0])
        np.testing.assert_array_equal(ours[1][:ours[2]], oracle[1][:oracle[2]])
        np.testing.assert_array_equal(ours[3], oracle[3])
        alone = np.zeros_like(ours[0])
        np.add.at(alone, ids, dy)
        np.testing.assert_array_equal(ours[0], alone)
