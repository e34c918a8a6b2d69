"""The CUDA recurrent kernels under Numba's CUDA simulator, against the NumPy oracles, on the CPU tests' inputs
(tests/engine/test_recurrent_kernels.py's Sequences): each cell with masks and recurrent dropout, the three
activation pairs, a part of the batch (first, count) and a last-state-only gradient — each in the three forms of
the time loop (one launch for the whole loop, its recurrent kernel and states staged in shared memory where they
fit or not; one launch per step). Small shapes: the simulator runs each GPU thread
as an OS thread. Run by tests/engine/test_cuda_sim.py."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.engine import cuda
from nnctl.engine.cuda import recurrent as loops
from nnctl.engine import reference_recurrent as reference
from nnctl.engine.cpu.recurrent import RECURRENT_ACTIVATIONS as CODES
from tests.engine.test_recurrent_kernels import (
    ACTIVATION_PAIRS, BACKWARD_OUTPUTS, FORWARD_OUTPUTS, GATES, PER_STEP_ONLY_AT_REAL_STEPS, Sequences,
)

SHAPE = (4, 4, 5)  # (n, t, u)


@pytest.fixture(params=["staged", "whole-loop", "per-step"])
def loop_form(request, monkeypatch):
    monkeypatch.setattr(loops, "WHOLE_SEQUENCE", request.param != "per-step")
    monkeypatch.setattr(loops, "STAGED", request.param == "staged")
    return request.param


def _close(got, want, message):
    scale = max(1.0, float(np.abs(want).max(initial=0)))
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5 * scale, err_msg=message)


@pytest.mark.parametrize("masked, dropout", [(False, False), (True, True)], ids=["plain", "masked-rdropout"])
@pytest.mark.parametrize("cell", list(GATES))
def test_each_cell_matches_the_oracle_forward_and_backward(cell, masked, dropout, loop_form):
    for pair in ACTIVATION_PAIRS:
        act, ract = CODES[pair[0]], CODES[pair[1]]
        seqs = Sequences(cell, SHAPE, np.float32, masked, dropout)
        # A part of the batch: rows outside [1, 3) must stay as they were (the fill value).
        got, want = seqs.forward(cuda, act, ract, 1, 2, fill=7.0), seqs.forward(reference, act, ract, 1, 2, fill=7.0)
        real = seqs.mask.astype(bool)
        for name in FORWARD_OUTPUTS[cell]:
            keep = real if name in PER_STEP_ONLY_AT_REAL_STEPS else slice(None)
            _close(got[name][keep], want[name][keep], f"{pair} {name}")
        full = seqs.forward(reference, act, ract)
        got_grads = seqs.backward(cuda, act, ract, full, 1, 2, fill=7.0)
        want_grads = seqs.backward(reference, act, ract, full, 1, 2, fill=7.0)
        for name in BACKWARD_OUTPUTS[cell]:
            _close(got_grads[name], want_grads[name], f"{pair} {name}")


@pytest.mark.parametrize("cell", list(GATES))
def test_a_gradient_of_the_last_state_only(cell, loop_form):
    act, ract = CODES["tanh"], CODES["sigmoid"]
    seqs = Sequences(cell, SHAPE, np.float32, True, False, seed=3)
    seqs.dhs = np.ascontiguousarray(seqs.dhs[:, -1:])
    full = seqs.forward(reference, act, ract)
    got, want = seqs.backward(cuda, act, ract, full), seqs.backward(reference, act, ract, full)
    for name in BACKWARD_OUTPUTS[cell]:
        _close(got[name], want[name], name)


def test_recurrent_inputs_with_and_without_dropout():
    seqs = Sequences("lstm", SHAPE, np.float32, False, True)
    n, t, u = SHAPE
    hs = np.random.default_rng(1).standard_normal((n, t, u)).astype(np.float32)
    for rmask, width in ((seqs.rmask, 4 * u), (seqs.rmask[:0], u)):
        got, want = np.zeros((n, t, width), np.float32), np.zeros((n, t, width), np.float32)
        cuda.recurrent_inputs(hs, seqs.h0, rmask, 0, n, got)
        reference.recurrent_inputs(hs, seqs.h0, rmask, 0, n, want)
        _close(got, want, f"width {width}")


def test_the_gru_gradient_of_every_recurrent_product(loop_form):
    """With recurrent dropout the layer takes drec for all three gates (one dU GEMM per gate)."""
    act, ract = CODES["tanh"], CODES["sigmoid"]
    seqs = Sequences("gru", SHAPE, np.float32, True, True, seed=5)
    fwd = seqs.forward(reference, act, ract)
    n, t, u = SHAPE
    UT = np.ascontiguousarray(seqs.U.T)
    outputs = []
    for module in (cuda, reference):
        gates, drec, dh0 = fwd["gates"].copy(), np.full((n, t, 3 * u), 7.0, np.float32), np.zeros((n, u), np.float32)
        module.gru_backward(seqs.dhs, fwd["hs"], fwd["hu"], seqs.h0, UT, seqs.mask, seqs.rmask, act, ract, 0, n,
                            gates, drec, dh0)
        outputs.append((gates, drec, dh0))
    for got, want, name in zip(*outputs, ("dpre", "drec", "dh0")):
        _close(got, want, name)


@pytest.mark.parametrize("cell", list(GATES))
def test_blocks_of_several_samples_give_the_per_step_bytes(cell, monkeypatch):
    """Whole-loop blocks of three samples (the second block half idle: its idle threads still reach every
    barrier), staged in shared memory or not, against the per-step launches: the same cells, so the same
    bytes."""
    act, ract = CODES["tanh"], CODES["sigmoid"]
    seqs = Sequences(cell, SHAPE, np.float32, True, True, seed=7)
    full = seqs.forward(reference, act, ract)
    results = []
    for whole, staged in ((True, True), (True, False), (False, False)):
        monkeypatch.setattr(loops, "WHOLE_SEQUENCE", whole)
        monkeypatch.setattr(loops, "STAGED", staged)
        monkeypatch.setattr(loops, "SEQUENCE_BLOCK", 3 * SHAPE[2])
        assert loops._geometry(SHAPE[0], SHAPE[2])[0] is whole
        results.append((seqs.forward(cuda, act, ract), seqs.backward(cuda, act, ract, full)))
    (fwd_step, bwd_step) = results[-1]
    for fwd, bwd in results[:-1]:
        for name in FORWARD_OUTPUTS[cell]:
            np.testing.assert_array_equal(fwd[name], fwd_step[name], err_msg=name)
        for name in BACKWARD_OUTPUTS[cell]:
            np.testing.assert_array_equal(bwd[name], bwd_step[name], err_msg=name)


def test_a_staged_loop_is_taken_where_it_fits_and_only_there(monkeypatch):
    """The LSTM's whole loops stage U and the states in shared memory up to 48 KB a block (54 units), launched
    with that much dynamic shared memory; wider ones read them from global memory."""
    monkeypatch.setattr(loops, "SEQUENCE_BLOCK", 64)
    assert loops._staged_bytes(4 * 32 * 32, loops._geometry(128, 32)[2], 32) == 4 * (4096 + 2 * 2 * 32)
    assert loops._staged_bytes(4 * 54 * 54, loops._geometry(128, 54)[2], 4 * 54) > 0
    assert loops._staged_bytes(4 * 55 * 55, loops._geometry(128, 55)[2], 4 * 55) == 0
    monkeypatch.setattr(loops, "STAGED", False)
    assert loops._staged_bytes(4 * 32 * 32, loops._geometry(128, 32)[2], 32) == 0
