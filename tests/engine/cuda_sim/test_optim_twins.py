"""The CUDA optimizer kernels under Numba's CUDA simulator, against the NumPy oracles and the CPU kernels
(every optimizer × every clipping mode; run by tests/engine/test_cuda_sim.py with NUMBA_ENABLE_CUDASIM=1)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from nnctl.engine import cpu, cuda, reference
from nnctl.engine.cpu.optim import CLIP_GLOBAL_NORM, CLIP_NONE, CLIP_NORM, CLIP_VALUE, OPTIMIZER_CODES

RNG = np.random.default_rng(8)
HP = {"sgd": [0.1, 0.01, 0.9, 1.0], "rmsprop": [0.01, 0.0, 0.9, 0.5, 1e-7, 1.0],
      "rmsprop_plain": [0.01, 0.002, 0.9, 0.0, 1e-7, 0.0], "adam": [0.01, 0.004, 0.9, 0.999, 1e-7, 1.0],
      "adagrad": [0.1, 0.0, 1e-7]}


def _rand(*shape, scale=1.0):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def _case(optimizer, clip_mode):
    slots = [np.abs(_rand(12)) * 0.1 for _ in range(3)]
    slots[1] *= 0.01  # centered RMSprop needs v − mean(g)² > 0
    hp = HP[optimizer]
    return [OPTIMIZER_CODES[optimizer], np.array(hp + [0.0] * (8 - len(hp))), 3, np.array([0, 5, 12], np.int64),
            _rand(12), _rand(12, scale=3), *slots, clip_mode, 0.5]


@pytest.mark.parametrize("optimizer", list(OPTIMIZER_CODES))
@pytest.mark.parametrize("clip_mode", [CLIP_NONE, CLIP_NORM, CLIP_GLOBAL_NORM, CLIP_VALUE])
def test_each_optimizer_and_clip_matches_the_oracle_and_the_cpu(optimizer, clip_mode):
    args = _case(optimizer, clip_mode)
    mine, theirs, cpus = copy.deepcopy(args), copy.deepcopy(args), copy.deepcopy(args)
    cuda.optimizer_step(*mine)
    reference.optimizer_step(*theirs)
    cpu.optimizer_step(*cpus)
    for index in (4, 5, 6, 7, 8):  # params, grads, slots
        np.testing.assert_allclose(mine[index], theirs[index], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(mine[index], cpus[index], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("clip_mode", [CLIP_NONE, CLIP_NORM, CLIP_GLOBAL_NORM, CLIP_VALUE])
def test_clipping_alone(clip_mode):
    args = [np.array([0, 5, 12], np.int64), _rand(12, scale=3), clip_mode, 2.0]
    mine, theirs = copy.deepcopy(args), copy.deepcopy(args)
    cuda.clip_gradients(*mine)
    reference.clip_gradients(*theirs)
    np.testing.assert_allclose(mine[1], theirs[1], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("clip_mode", [CLIP_NORM, CLIP_GLOBAL_NORM])
def test_clipping_norms_over_tensors_of_several_chunks(clip_mode):
    """Tensors of 2 and 1 chunks of 4,096 and an empty one: their norms from the chunks' partials in order, kept
    on the device (one plan a parameter layout)."""
    args = [np.array([0, 5000, 5000, 9000, 9010], np.int64), _rand(9010, scale=0.1), clip_mode, 1.5]
    for _ in range(2):  # the second call reuses the plan
        mine, theirs = copy.deepcopy(args), copy.deepcopy(args)
        cuda.clip_gradients(*mine)
        reference.clip_gradients(*theirs)
        np.testing.assert_allclose(mine[1], theirs[1], rtol=1e-5, atol=1e-7)
        assert not np.allclose(mine[1], args[1])  # (the norms are over 1.5: clipped)


def test_sums_and_regularization_over_several_chunks():
    x = _rand(10_000)  # more than one chunk of 4,096: the partials are added in order
    assert cuda.sum_squares(x) == pytest.approx(reference.sum_squares(x), rel=1e-12)
    w, g = _rand(9_000), _rand(9_000)
    mine, theirs = g.copy(), g.copy()
    penalty = cuda.regularize(w, mine, 0.01, 0.02)
    # (the simulator's Python float32 products round where compiled Numba's float64 ones do not: 1e-5)
    assert penalty == pytest.approx(reference.regularize(w, theirs, 0.01, 0.02), rel=1e-5)
    np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-7)
