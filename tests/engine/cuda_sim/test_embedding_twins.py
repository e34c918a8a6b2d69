"""The CUDA embedding-family kernels under Numba's CUDA simulator, against the NumPy oracles and the CPU
kernels' bookkeeping (run by tests/engine/test_cuda_sim.py with NUMBA_ENABLE_CUDASIM=1)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from nnctl.engine import cpu, cuda, reference_embedding as reference

RNG = np.random.default_rng(10)


def _run(kernel, args, oracle=reference):
    mine, theirs = copy.deepcopy(args), copy.deepcopy(args)
    got, expected = getattr(cuda, kernel)(*mine), getattr(oracle, kernel)(*theirs)
    assert got == expected, kernel
    for a, b in zip(mine, theirs):
        if isinstance(a, np.ndarray):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7, err_msg=kernel)


def test_gather_scatter_and_channel_scaling():
    table = RNG.standard_normal((10, 3)).astype(np.float32)
    _run("embedding_gather", [np.array([4, 0, 9, 4], np.int32), table, np.zeros((4, 3), np.float32)])
    bad = np.array([4, 12, 9, -1], np.int32)  # an error: only the first bad position counts (the layer raises)
    assert cuda.embedding_gather(bad, table, np.zeros((4, 3), np.float32)) == 1
    ids, dy = np.array([3, 1, 3, 7, 1], np.int32), RNG.standard_normal((5, 3)).astype(np.float32)
    grad, touched, mark = np.ones((10, 3), np.float32), np.array([2, 5] + [0] * 8, np.int32), np.zeros(10, np.uint8)
    mark[[2, 5]] = 1  # the last step touched rows 2 and 5: cleared first
    _run("embedding_scatter_add", [ids, dy, grad, touched, 2, mark], oracle=cpu)
    x, scale = RNG.standard_normal((2, 5, 3)).astype(np.float32), RNG.random((2, 3)).astype(np.float32)
    _run("scale_channels", [x, scale, np.zeros_like(x)])


@pytest.mark.parametrize("kernel", ["rmsprop_rows_step", "sgd_rows_step"])
def test_row_sparse_optimizer_steps_and_the_flush(kernel):
    from nnctl.engine import reference as dense_reference

    hp = np.array([0.01, 0.0, 0.9, 0.0, 1e-7, 0.0, 0.0, 0.0])
    params, grads = RNG.standard_normal((8, 3)).astype(np.float32), RNG.standard_normal((8, 3)).astype(np.float32)
    slot1 = np.abs(RNG.standard_normal((8, 3))).astype(np.float32)
    last = np.array([-1, 2, 0, 4, 3, -1, 1, 4], np.int64)
    args = [hp, 5, np.array([1, 6, 3], np.int32), last, params, grads, slot1]
    mine, theirs = copy.deepcopy(args), copy.deepcopy(args)
    getattr(cuda, kernel)(*mine)
    getattr(dense_reference, kernel)(*theirs)
    for a, b in zip(mine[3:], theirs[3:]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7, err_msg=kernel)
    flushed, expected = copy.deepcopy(mine), copy.deepcopy(theirs)
    cuda.rows_flush(hp, 7, flushed[3], flushed[6], 1)
    dense_reference.rows_flush(hp, 7, expected[3], expected[6], 1)
    np.testing.assert_allclose(flushed[6], expected[6], rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(flushed[3], expected[3])


def test_the_scatter_add_gives_the_cpu_bytes_step_after_step():
    """Two steps in a row (the second clears the first's rows), repeated ids, the count kept on the device."""
    vocab, width = 10, 3
    state = {name: (np.zeros((vocab, width), np.float32), np.zeros(vocab, np.int32), np.zeros(vocab, np.uint8))
             for name in ("cpu", "cuda")}
    counts, counter = {"cpu": 0}, np.zeros(1, np.int64)
    for step in range(2):
        ids = RNG.integers(0, vocab - 2 * step, 40).astype(np.int32)
        dy = RNG.standard_normal((40, width)).astype(np.float32)
        counts["cpu"] = cpu.embedding_scatter_add(ids, dy, *state["cpu"][:2], counts["cpu"], state["cpu"][2])
        assert cuda.embedding_scatter_add(ids, dy, *state["cuda"][:2], 0, state["cuda"][2], counter=counter) is None
        assert counter[0] == counts["cpu"]
        for got, want in zip(state["cuda"], state["cpu"]):
            np.testing.assert_array_equal(got[:counts["cpu"]] if got.ndim == 1 and got.dtype == np.int32 else got,
                                          want[:counts["cpu"]] if want.ndim == 1 and want.dtype == np.int32 else want)


@pytest.mark.parametrize("span, counts", [(1024, 1 << 23), (4, 1 << 23), (3, 1 << 23), (4, 50)],
                         ids=["one-chunk", "chunks-of-4", "chunks-of-3", "chunks-widened-by-the-counts-cap"])
def test_the_table_gradient_sums_each_rows_positions_in_order(span, counts, monkeypatch):
    """The CUDA path's table gradient (the GPU's own): the rows a step used, each its positions' rows of dy added in
    position order — the CPU scatter's bytes — across chunk boundaries; the other rows 0."""
    from nnctl.engine.cuda import sorting

    monkeypatch.setattr(sorting, "_SPAN", span)
    monkeypatch.setattr(sorting, "_COUNTS", counts)
    ids = RNG.integers(0, 9, 40).astype(np.int32)
    ids[:6], ids[-3:] = 3, 0  # a run of one id over chunk boundaries, and row 0 last
    dy = RNG.standard_normal((40, 3)).astype(np.float32)
    dy[7] = -0.0
    grad = np.full((12, 3), 7, np.float32)
    cuda.embedding_table_grad(ids, dy, grad)
    want, touched, mark = np.zeros((12, 3), np.float32), np.zeros(12, np.int32), np.zeros(12, np.uint8)
    assert cpu.embedding_scatter_add(ids, dy, want, touched, 0, mark) == len(set(ids.tolist()))
    assert grad.tobytes() == want.tobytes()
    assert not grad[9:].any()


@pytest.mark.parametrize("keys", [1, 5, 31, 32, 33, 100, 1000])
def test_key_starts_are_the_running_totals_for_any_number_of_keys(keys):
    """The sort's key starts (one block: runs of keys a thread, the runs' sums scanned in shared memory) against
    NumPy's running sum, with fewer keys than threads, a run each, and several keys a thread."""
    from nnctl.engine.cuda import sorting

    totals = RNG.integers(0, 50, keys).astype(np.int32)
    totals[RNG.integers(0, keys, keys // 3)] = 0  # keys no position has
    starts = np.full(keys + 1, -1, np.int32)
    sorting.key_starts(totals, starts)
    np.testing.assert_array_equal(starts, np.concatenate([[0], np.cumsum(totals)]).astype(np.int32))


@pytest.mark.parametrize("chunk", [1, 3, 4, 256])
def test_a_row_with_many_positions_is_added_in_pieces_then_the_pieces_in_order(chunk):
    """Rows with more than `chunk` positions in the step (an IMDB batch's padding id): pieces of `chunk`
    positions, each added in order, then the pieces in order — NumPy's float32 sums in that grouping, byte for
    byte; rows of one piece as the CPU scatter; unused rows (first, between, last) 0."""
    ids = RNG.integers(2, 7, 60).astype(np.int32)
    ids[RNG.random(60) < 0.5] = 3  # a row of about 35 positions
    ids[:9] = 8  # another long one, first
    dy = RNG.standard_normal((60, 3)).astype(np.float32)
    grad = np.full((10, 3), 7, np.float32)
    cuda.embedding_table_grad(ids, dy, grad, chunk=chunk)
    want = np.zeros((10, 3), np.float32)
    for row in range(10):
        at = np.flatnonzero(ids == row)
        pieces = []
        for first in range(0, len(at), chunk):
            total = dy[at[first]].copy()
            for p in at[first + 1:first + chunk]:
                total += dy[p]
            pieces.append(total)
        if pieces:
            total = pieces[0]
            for piece in pieces[1:]:
                total = total + piece
            want[row] = total
    assert grad.tobytes() == want.tobytes()
    assert not grad[[0, 1, 7, 9]].any()


@pytest.mark.parametrize("wide", [False, True], ids=["a-block-a-chunk", "a-thread-a-wide-chunk"])
def test_the_sort_gives_each_keys_positions_in_order(wide, monkeypatch):
    """sorting.stable_order against NumPy's stable argsort: chunks of a block's positions (ranks from the chunk's
    keys in shared memory, the count written by a key's last position), or — where the counts cap widens the
    chunks — a thread walking each; runs of one key across chunk boundaries, keys no position has."""
    from nnctl.engine.cuda import sorting

    n = 3 * sorting.RANK_SPAN + 5
    if wide:
        monkeypatch.setattr(sorting, "_COUNTS", 5)  # chunks of ⌈n·K / 5⌉ positions: wider than a block
        assert -(-n * 9 // sorting._COUNTS) > sorting.RANK_SPAN
    keys = RNG.integers(0, 7, n).astype(np.int32)
    keys[sorting.RANK_SPAN - 3:sorting.RANK_SPAN + 4] = 2  # a run over a chunk boundary
    keys[keys == 5] = 6  # key 5: no position
    starts, positions = (array.copy_to_host() for array in sorting.stable_order(keys, 9))  # (device scratch)
    np.testing.assert_array_equal(positions[:n], np.argsort(keys, kind="stable"))
    np.testing.assert_array_equal(starts[:10], np.concatenate([[0], np.cumsum(np.bincount(keys, None, 9))]))


@pytest.mark.parametrize("rows", [1, 15, 16, 17, 250])
def test_key_offsets_are_each_columns_running_totals(rows):
    """key_offsets (lanes down each column, each a run of rows, the runs' sums scanned) against NumPy: counts
    become the totals of the rows before, totals each column's sum; fewer rows than lanes, and several a lane."""
    from nnctl.engine.cuda import sorting

    counts = RNG.integers(0, 4, (rows, 33)).astype(np.int32)
    totals, original = np.full(33, -1, np.int32), counts.copy()
    sorting.key_offsets(counts, totals)
    np.testing.assert_array_equal(counts, np.cumsum(original, axis=0) - original)
    np.testing.assert_array_equal(totals, original.sum(0))
