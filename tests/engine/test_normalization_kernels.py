"""The normalization kernels against their NumPy oracles (nnctl/engine/reference_normalization.py), and their
split twins against them byte for byte."""

import numpy as np
import pytest

from nnctl.engine import reference_normalization as reference
from nnctl.engine.cpu import normalization as kernels

# (input shape with the batch, normalized axis): 2-D, 3-D and 4-D inputs, the last axis and another one.
SHAPES = [((7, 5), -1), ((4, 6, 3), -1), ((4, 6, 3), 1), ((3, 4, 5, 2), -1), ((3, 4, 5, 2), 2)]


def _rows(x, axis):
    """The (rows, width) view the layers hand the kernels: the normalized axis moved last."""
    moved = np.ascontiguousarray(np.moveaxis(x, axis, -1))
    return moved.reshape(-1, moved.shape[-1])


def _inputs(rng, shape, axis, dtype, offset=0.0):
    x = _rows(rng.standard_normal(shape) * 2 + offset, axis).astype(dtype)
    width = x.shape[1]
    return x, (rng.standard_normal(width) + 1).astype(dtype), rng.standard_normal(width).astype(dtype)


def batch_norm_forward_case(rng, shape, axis, dtype):
    x, gamma, beta = _inputs(rng, shape, axis, dtype, offset=3.0)
    c = x.shape[1]
    return (x, gamma, beta, 0.9, 1e-3, rng.standard_normal(c).astype(dtype), rng.random(c).astype(dtype) + 0.5,
            np.zeros(c), np.zeros(c), np.zeros_like(x))


def batch_norm_backward_case(rng, shape, axis, dtype):
    x, gamma, _ = _inputs(rng, shape, axis, dtype)
    c = x.shape[1]
    mean = x.astype(np.float64).mean(axis=0)
    inv_std = 1 / np.sqrt(x.astype(np.float64).var(axis=0) + 1e-3)
    return (rng.standard_normal(x.shape).astype(dtype), x, gamma, mean, inv_std, np.zeros(c, dtype),
            np.zeros(c, dtype), True, np.zeros_like(x))


def batch_norm_inference_case(rng, shape, axis, dtype):
    x, gamma, beta = _inputs(rng, shape, axis, dtype)
    c = x.shape[1]
    return (x, gamma, beta, rng.standard_normal(c).astype(dtype), rng.random(c).astype(dtype) + 0.5, 1e-3,
            np.zeros_like(x))


def batch_norm_inference_backward_case(rng, shape, axis, dtype):
    x, gamma, _ = _inputs(rng, shape, axis, dtype)
    return (rng.standard_normal(x.shape).astype(dtype), gamma, rng.random(x.shape[1]).astype(dtype) + 0.5, 1e-3,
            np.zeros_like(x))


def layer_norm_forward_case(rng, shape, axis, dtype):
    x, gamma, beta = _inputs(rng, shape, axis, dtype, offset=3.0)
    return (x, gamma, beta, 1e-3, np.zeros(x.shape[0]), np.zeros(x.shape[0]), np.zeros_like(x))


def layer_norm_backward_case(rng, shape, axis, dtype):
    x, gamma, _ = _inputs(rng, shape, axis, dtype)
    mean = x.astype(np.float64).mean(axis=1)
    inv_std = 1 / np.sqrt(x.astype(np.float64).var(axis=1) + 1e-3)
    w = x.shape[1]
    return (rng.standard_normal(x.shape).astype(dtype), x, gamma, mean, inv_std, np.zeros(w, dtype),
            np.zeros(w, dtype), True, np.zeros_like(x))


CASES = {
    "batch_norm_forward": batch_norm_forward_case,
    "batch_norm_backward": batch_norm_backward_case,
    "batch_norm_inference": batch_norm_inference_case,
    "batch_norm_inference_backward": batch_norm_inference_backward_case,
    "layer_norm_forward": layer_norm_forward_case,
    "layer_norm_backward": layer_norm_backward_case,
}
SPLIT = ("batch_norm_forward", "batch_norm_backward", "layer_norm_forward", "layer_norm_backward")


def _run(module, name, args):
    """Calls module.name on a fresh copy of args; returns every array argument afterwards."""
    copies = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    getattr(module, name)(*copies)
    return [a for a in copies if isinstance(a, np.ndarray)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, axis", SHAPES, ids=[f"{len(s)}d-axis{a}" for s, a in SHAPES])
@pytest.mark.parametrize("name", sorted(CASES))
def test_kernel_matches_reference(name, shape, axis, dtype):
    args = CASES[name](np.random.default_rng(5), shape, axis, dtype)
    tolerance = 2e-5 if dtype == np.float32 else 1e-12
    for got, want in zip(_run(kernels, name, args), _run(reference, name, args)):
        np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("name", ["batch_norm_backward", "layer_norm_backward"])
def test_without_input_grad_dx_is_left_alone(name):
    args = list(CASES[name](np.random.default_rng(2), (6, 4), -1, np.float32))
    args[7] = False
    args[8][...] = 7.0
    dgamma, dbeta, dx = _run(kernels, name, args)[-3:]
    want = _run(reference, name, args)[-3:]
    np.testing.assert_allclose(dgamma, want[0], rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(dbeta, want[1], rtol=2e-5, atol=2e-5)
    assert (dx == 7.0).all()


@pytest.mark.parametrize("width", [64, 37])
@pytest.mark.parametrize("name", SPLIT)
def test_split_twins_give_the_same_bytes_on_any_thread_count(name, width):
    # 64 channels: 256 rows a chunk, so 2000 rows make 8 chunks (one partial), cut 1 to 5 ways; 37 leaves
    # remainders in the vectorized row loops.
    args = CASES[name](np.random.default_rng(9), (2000, width), -1, np.float32)
    alone = _run(kernels, name, args)
    for parts in (1, 2, 3, 5):
        for got, want in zip(_run(kernels, f"{name}_split", (*args, parts)), alone):
            assert got.tobytes() == want.tobytes(), (parts, got.dtype)


def test_batch_statistics_do_not_cancel_far_from_zero():
    # Values around 10⁴ with a spread of 0.01: Σx² − (Σx)²/n would lose every digit of the variance in float32
    # and most in float64; the kernel sums around each channel's first value instead.
    rng = np.random.default_rng(3)
    x = (1e4 + 0.01 * rng.standard_normal((4096, 3))).astype(np.float32)
    mean, inv_std = np.zeros(3), np.zeros(3)
    kernels.batch_norm_forward(x, np.ones(3, np.float32), np.zeros(3, np.float32), 0.9, 1e-9, np.zeros(3, np.float32),
                               np.ones(3, np.float32), mean, inv_std, np.zeros_like(x))
    np.testing.assert_allclose(1 / inv_std ** 2 - 1e-9, x.astype(np.float64).var(axis=0), rtol=1e-6)


def test_every_exported_kernel_has_an_oracle_and_a_case():
    for name in kernels.KERNELS:
        assert callable(getattr(reference, name))
        assert name in CASES or name.removesuffix("_split") in SPLIT
