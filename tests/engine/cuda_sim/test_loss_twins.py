"""The CUDA loss kernel under Numba's CUDA simulator: each loss's value against the NumPy oracle and its
gradient against the CPU kernel's (run by tests/engine/test_cuda_sim.py with NUMBA_ENABLE_CUDASIM=1)."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.engine import cpu, cuda, reference
from nnctl.engine.cpu.losses import LOSS_CODES

RNG = np.random.default_rng(6)


def _inputs(name):
    n, units = 6, 4
    probs = RNG.uniform(0.05, 0.95, (n, units)).astype(np.float32)
    pred = (probs / probs.sum(axis=1, keepdims=True) if "cce_probs" in name or name == "kld"
            else probs if name == "bce_probs" else RNG.normal(size=(n, units)).astype(np.float32))
    if name.startswith(("bce", "cce", "kld")):
        target = (RNG.random((n, units)) < 0.5).astype(np.float32)
    else:
        target = RNG.normal(size=(n, units)).astype(np.float32)
    labels = RNG.integers(0, units, n).astype(np.int64)
    weight = RNG.uniform(0.5, 1.5, n).astype(np.float32)
    return pred.astype(np.float32), target, labels, weight


@pytest.mark.parametrize("name", list(LOSS_CODES))
def test_each_loss_matches_the_oracle_and_the_cpu_gradient(name):
    code = LOSS_CODES[name]
    pred, target, labels, weight = _inputs(name)
    mine, theirs = np.zeros_like(pred), np.zeros_like(pred)
    value = cuda.loss_forward_backward(code, 1.0, pred, target, labels, weight, mine)
    cpu_value = cpu.loss_forward_backward(code, 1.0, pred, target, labels, weight, theirs)
    expected = float(np.sum(weight * reference.sample_losses(code, 1.0, pred, target, labels)) / len(pred))
    assert value == pytest.approx(expected, rel=1e-5, abs=1e-7)
    # The simulator runs the kernel as Python, whose float32 scalar rules differ from compiled Numba's in the
    # last bits: close to the CPU kernel, not bit-equal.
    assert value == pytest.approx(cpu_value, rel=1e-6, abs=1e-9)
    np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-8, err_msg=name)


@pytest.mark.parametrize("n", [6, 70])  # one block's launch (at most ONE_BLOCK samples), and the two launches
def test_a_loss_written_to_the_device_is_the_one_returned_to_the_host(n, monkeypatch):
    """With `out` the loss stays on the device (a step's): the same bytes, value and gradient, as returned."""
    from nnctl.engine.cuda import losses

    monkeypatch.setattr(losses, "ONE_BLOCK", 64)
    code = LOSS_CODES["sparse_cce_logits"]
    pred = RNG.normal(size=(n, 3)).astype(np.float32)
    target, labels = np.zeros_like(pred), RNG.integers(0, 3, n).astype(np.int64)
    weight = RNG.uniform(0.5, 1.5, n).astype(np.float32)
    kept, returned = np.zeros_like(pred), np.zeros_like(pred)
    out = np.full(3, -1.0)
    assert cuda.loss_forward_backward(code, 1.0, pred, target, labels, weight, kept, out, 1) is None
    value = cuda.loss_forward_backward(code, 1.0, pred, target, labels, weight, returned)
    assert out[1] == value and out[0] == out[2] == -1.0
    assert kept.tobytes() == returned.tobytes()
