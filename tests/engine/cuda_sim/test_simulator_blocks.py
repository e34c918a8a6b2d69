"""The simulator's thread blocks on pooled threads (fast_blocks.py) keep what a kernel relies on: each thread's
threadIdx/blockIdx, barriers that hold every thread of a block (also a block whose first thread is late, and after
a block that failed), syncthreads_count, an exception raised with the thread that raised it, and blocks of every
size one after another."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from numba import cuda

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
only_simulated = pytest.mark.skipif(not SIMULATED, reason="checks the simulator's block manager")


@cuda.jit
def _reverse_each_block(x, out):
    """out = x with each block's part reversed, through shared memory: a thread reads what another wrote."""
    part = cuda.shared.array(128, np.float32)
    flat = cuda.threadIdx.x + cuda.blockDim.x * cuda.threadIdx.y
    size = cuda.blockDim.x * cuda.blockDim.y
    at = cuda.blockIdx.x * size + flat
    part[flat] = x[at]
    cuda.syncthreads()
    out[at] = part[size - 1 - flat]


@cuda.jit
def _block_sums(x, sums):
    """Each block's sum by halving in shared memory, a barrier each round (7 rounds for 128 threads)."""
    part = cuda.shared.array(128, np.float64)
    i = cuda.threadIdx.x
    part[i] = x[cuda.blockIdx.x * cuda.blockDim.x + i]
    cuda.syncthreads()
    half = cuda.blockDim.x // 2
    while half > 0:
        if i < half:
            part[i] += part[i + half]
        cuda.syncthreads()
        half //= 2
    if i == 0:
        sums[cuda.blockIdx.x] = part[0]


@cuda.jit
def _count_positive(x, counts):
    positive = x[cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x] > 0
    n = cuda.syncthreads_count(1 if positive else 0)  # an int: a GPU's syncthreads_count takes no bool
    if cuda.threadIdx.x == 0:
        counts[cuda.blockIdx.x] = n


@cuda.jit
def _late_first_thread(out):
    """Thread 0 writes after a pause; every thread reads it after the barrier."""
    value = cuda.shared.array(1, np.int32)
    if cuda.threadIdx.x == 0:
        value[0] = -1
        time.sleep(0.02)  # the simulator runs a kernel as Python
        value[0] = cuda.blockIdx.x + 1
    cuda.syncthreads()
    out[cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x] = value[0]


@cuda.jit
def _fails_in_one_thread(x):
    """Thread 5 of block 1 indexes out of range while the others wait at the barrier."""
    i = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    if i == cuda.blockDim.x + 5:
        x[x.shape[0] + 100] = 1.0
    cuda.syncthreads()
    x[i] = 2.0


RNG = np.random.default_rng(0)


@pytest.mark.parametrize("block", [(64, 1), (16, 4), (128, 1), (1, 1)])
def test_barriers_and_thread_indices_per_block(block):
    size = block[0] * block[1]
    x = RNG.standard_normal(3 * size).astype(np.float32)
    out = cuda.device_array_like(x)
    _reverse_each_block[3, block](cuda.to_device(x), out)
    np.testing.assert_array_equal(out.copy_to_host(), x.reshape(3, size)[:, ::-1].ravel())


def test_rounds_of_barriers_and_syncthreads_count():
    x = RNG.standard_normal(4 * 128)
    sums = cuda.device_array(4, np.float64)
    _block_sums[4, 128](cuda.to_device(x), sums)
    np.testing.assert_allclose(sums.copy_to_host(), x.reshape(4, 128).sum(1), rtol=1e-12)
    counts = cuda.device_array(4, np.int32)
    _count_positive[4, 128](cuda.to_device(x), counts)
    np.testing.assert_array_equal(counts.copy_to_host(), (x.reshape(4, 128) > 0).sum(1))


@only_simulated
def test_a_barrier_waits_for_a_late_thread_also_after_a_failed_block():
    out = cuda.device_array(3 * 32, np.int32)
    _late_first_thread[3, 32](out)
    np.testing.assert_array_equal(out.copy_to_host(), np.repeat([1, 2, 3], 32))
    x = cuda.to_device(np.zeros(3 * 32, np.float32))
    with pytest.raises(IndexError, match=r"tid=\[5, 0, 0\] ctaid=\[1, 0, 0\]"):
        _fails_in_one_thread[3, 32](x)
    np.testing.assert_array_equal(x.copy_to_host()[:32], 2.0)  # block 0 ran; block 1 stopped at its barrier
    assert not (x.copy_to_host()[32:] == 2.0).any()
    _late_first_thread[3, 32](out)  # the aborted block's threads, reused, wait at barriers again
    np.testing.assert_array_equal(out.copy_to_host(), np.repeat([1, 2, 3], 32))


@only_simulated
@pytest.mark.skipif(os.environ.get("NNCTL_SIMULATOR_BLOCKS") == "numba", reason="the simulator's own manager asked for")
def test_the_pooled_block_manager_is_in_place_unless_asked_not_to_be(monkeypatch):
    from numba.cuda.simulator import kernel as sim

    from tests.engine.cuda_sim import fast_blocks

    assert sim.BlockManager.run.__module__ == fast_blocks.__name__
    assert fast_blocks._POOL and all(thread.is_alive() for thread in fast_blocks._POOL)
    original = sim.BlockManager.run
    monkeypatch.setenv("NNCTL_SIMULATOR_BLOCKS", "numba")
    assert fast_blocks.install() is False and sim.BlockManager.run is original
