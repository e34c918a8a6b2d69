"""nnctl/engine/cuda/columns.py under Numba's CUDA simulator: sums down tall columns in chunks and lanes. Against
NumPy; in one order whatever the columns' grouping (WIDTH); the kernels that compute their terms on the way
(a bias + activation backward, BatchNormalization, LayerNormalization) are in their families' twin tests, at a
tall shape too."""

from __future__ import annotations

import os

import numpy as np
import pytest

from nnctl.engine.cuda import columns, dense

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"

RNG = np.random.default_rng(11)


def _tall(rows, cols, dtype=np.float32):
    return (RNG.standard_normal((rows, cols)) * 3 + 1).astype(dtype)


@pytest.mark.parametrize("rows, cols", [(513, 1), (1300, 3), (4 * columns.CHUNK, 11), (5 * columns.CHUNK + 7, 9)])
def test_tall_column_sums_match_numpy(rows, cols):
    assert columns.tall(rows)
    x = _tall(rows, cols)
    out = np.zeros(cols, np.float32)
    dense.column_sums(x, out)
    np.testing.assert_allclose(out, x.astype(np.float64).sum(0), rtol=1e-6, atol=1e-4)
    mean, wide = np.zeros(cols), x.astype(np.float64)  # a divisor: a mean; float64 data, float64 throughout
    columns.column_sums(wide, mean, rows)
    np.testing.assert_allclose(mean, wide.mean(0), rtol=1e-12, atol=1e-12)


@pytest.mark.skipif(not SIMULATED, reason="the simulator reads WIDTH as it runs; a GPU kernel has it compiled in")
def test_the_order_does_not_depend_on_how_columns_are_grouped(monkeypatch):
    """WIDTH only groups columns side by side: the bytes are the same for any width."""
    x, center = _tall(2000, 7, np.float64), RNG.standard_normal(7)
    results = []
    for width in (columns.WIDTH, 2, 3):
        monkeypatch.setattr(columns, "WIDTH", width)
        sums, spread = np.zeros(7), columns.deviation_chunks(x, center).copy()
        columns.column_sums(x, sums)
        results.append((sums.tobytes(), spread.tobytes()))
    assert results[0] == results[1] == results[2]


def test_each_chunk_and_lane_is_counted_once():
    """Ones sum to their counts exactly, for a last chunk that is short and lanes that run out."""
    for rows in (columns.TALL + 1, 3 * columns.CHUNK + columns.LANES - 1, 7 * columns.CHUNK):
        ones = np.ones((rows, 5), np.float32)
        out = np.zeros(5)
        columns.column_sums(ones, out)
        assert out.tolist() == [rows] * 5


def test_a_variance_pass_matches_numpy():
    x, center = _tall(1500, 4, np.float64), RNG.standard_normal(4)
    parts = columns.deviation_chunks(x, center)
    first, second = np.zeros(4), np.zeros(4)
    columns.finish_pairs(parts, first, second, first, second)
    np.testing.assert_allclose(first, ((x - center) ** 2).sum(0), rtol=1e-12)
    assert not second.any()


def test_a_tall_sum_of_partials_and_a_linear_backward():
    """conv.sum_partials past TALL partials, and a linear backward in place (the column sums alone)."""
    partials, out = _tall(1100, 6).reshape(1100, 2, 3), np.zeros((2, 3), np.float32)
    from nnctl.engine.cuda import conv

    conv.sum_partials(partials, 1000, out)
    np.testing.assert_allclose(out, partials[:1000].astype(np.float64).sum(0), rtol=1e-6, atol=1e-4)
    dy, db = _tall(900, 5), np.zeros(5, np.float32)
    before = dy.copy()
    dense.bias_act_backward(dy, dy, dy, dense.LINEAR, 0.0, dy, db)
    assert dy.tobytes() == before.tobytes()
    np.testing.assert_allclose(db, dy.astype(np.float64).sum(0), rtol=1e-6, atol=1e-4)
