"""A GPU runs a launch's blocks in any order, at once or one after another; the simulator runs them one after
another, first to last, so a kernel whose blocks read what other blocks of the same launch write (a running total
across blocks, a flag set by block 0) would pass here and give other bytes, or garbage, on a GPU. These runs take
the blocks last to first and in a shuffled order and must give the very bytes of the first-to-last runs (a
BatchNormalization forward planted to read the row a block above wrote fails here)."""

from __future__ import annotations

import os
import types

import numpy as np
import pytest

from tests.engine.cuda_sim.agree import assert_same_runs
from tests.engine.cuda_sim.test_cuda_graphs import _fit

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
pytestmark = pytest.mark.skipif(not SIMULATED, reason="orders the simulator's blocks (a GPU orders its own)")


class _Numpy(types.ModuleType):
    """NumPy for the simulator's kernel module, with `ndindex` (its walk over a launch's blocks) reordered."""

    def __init__(self, order: str):
        super().__init__("numpy")
        self.order = order

    def __getattr__(self, name):
        return getattr(np, name)

    def ndindex(self, *shape):
        points = list(np.ndindex(*shape))
        if self.order == "last to first":
            return iter(points[::-1])
        return iter([points[i] for i in np.random.default_rng(len(points)).permutation(len(points))])


@pytest.mark.parametrize("case", ["convnet-maxpool-softmax", "conv-batchnorm-frozen-dense-layernorm",
                                  "embedding-lstm-bce-adam", "csr-bce-adam"])
def test_the_bytes_do_not_depend_on_the_order_blocks_run_in(case, monkeypatch):
    from numba.cuda.simulator import kernel as simulated

    runs = {}
    for order in ("first to last", "last to first", "shuffled"):
        with pytest.MonkeyPatch.context() as patch:
            if order != "first to last":
                patch.setattr(simulated, "np", _Numpy(order))
            runs[order] = _fit(case, False, patch, epochs=1)
    assert_same_runs(runs["last to first"], runs["first to last"])
    assert_same_runs(runs["shuffled"], runs["first to last"])
