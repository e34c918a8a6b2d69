"""Every CPU kernel against its NumPy oracle in nnctl.engine.reference, through one parametrized list."""

import copy
import importlib
from pathlib import Path

import numpy as np
import pytest

from nnctl.engine import cpu, reference
from nnctl.engine.cpu.dense import ACTIVATION_CODES
from nnctl.engine.cpu.losses import LOSS_CODES
from nnctl.engine.cpu.optim import (
    CLIP_GLOBAL_NORM,
    CLIP_NONE,
    CLIP_NORM,
    CLIP_VALUE,
    OPTIMIZER_CODES,
)

F32 = np.float32


def _rand(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(F32)


def _csr(rng, rows=7, width=30, density=0.2):
    dense = (rng.random((rows, width)) < density) * rng.random((rows, width))
    indptr = np.concatenate([[0], np.cumsum((dense != 0).sum(axis=1))]).astype(np.int64)
    r, c = np.nonzero(dense)
    return indptr, c.astype(np.int32), dense[r, c].astype(F32)


def case_bias_act_forward(rng, act):
    z, y = _rand(rng, 6, 5, scale=2), np.zeros((6, 5), F32)
    return (z, _rand(rng, 5), ACTIVATION_CODES[act], 0.3, y)


def case_bias_act_backward(rng, act):
    z = _rand(rng, 6, 5, scale=2)
    y = reference.activate(z, act, 0.3).astype(F32)
    return (_rand(rng, 6, 5), z, y, ACTIVATION_CODES[act], 0.3, np.zeros((6, 5), F32), np.zeros(5, F32))


def case_loss(rng, loss):
    n, units = 5, 4
    pred = _rand(rng, n, units)
    if loss.endswith("probs") or loss == "kld":
        pred = reference.activate(pred, "softmax", 0).astype(F32)
    target = reference.activate(_rand(rng, n, units), "softmax", 0).astype(F32)
    if loss.startswith("bce"):
        target = (rng.random((n, units)) < 0.5).astype(F32)
        if loss == "bce_probs":
            pred = reference.activate(_rand(rng, n, units), "sigmoid", 0).astype(F32)
    labels = rng.integers(0, units, n).astype(np.int64)
    return (LOSS_CODES[loss], 0.7, pred, target, labels, rng.random(n).astype(F32) + 0.5,
            np.zeros((n, units), F32))


def case_rows_step(rng):
    """Rows 1 and 3 of a table, each last current 4 and 0 steps ago (row 0 is current, row 2 untouched)."""
    hp = np.array([0.05, 0.0, 0.9, 0.0, 1e-7, 0.0, 0.0, 0.0])
    return (hp, 6, np.array([3, 1], np.int32), np.array([5, 1, 2, 5], np.int64), _rand(rng, 4, 3),
            _rand(rng, 4, 3), rng.random((4, 3)).astype(F32))


def case_optimizer(rng, optimizer, clip_mode):
    hp = {"sgd": [0.1, 0.01, 0.9, 1.0], "rmsprop": [0.01, 0.0, 0.9, 0.5, 1e-7, 1.0],
          "rmsprop_plain": [0.01, 0.002, 0.9, 0.0, 1e-7, 0.0],
          "adam": [0.01, 0.004, 0.9, 0.999, 1e-7, 1.0], "adagrad": [0.1, 0.0, 1e-7]}[optimizer]
    size = 12
    slots = [np.abs(_rand(rng, size)) * 0.1 for _ in range(3)]
    slots[1] *= 0.01  # centered RMSprop needs v − mean(g)² > 0
    return (OPTIMIZER_CODES[optimizer], np.array(hp + [0.0] * (8 - len(hp))), 3,
            np.array([0, 5, 12], np.int64), _rand(rng, size), _rand(rng, size, scale=3), *slots,
            clip_mode, 0.5)


def _csr_case(rng, kernel, units):
    indptr, indices, values = _csr(rng, rows=9, width=40, density=0.5)
    indptr = np.concatenate([indptr, [indptr[-1]]])  # and an empty row, number 9
    rows = np.array([3, 9, 1, 6, 1, 8, 0])
    if kernel == "csr_matmul":
        return indptr, indices, values, rows, _rand(rng, 40, units), np.zeros((7, units), F32)
    return indptr, indices, values, rows, _rand(rng, 7, units), np.ones((40, units), F32)


def case_csc_t_matmul(rng):
    """A batch with up to 12 rows per column, in CSC form; only columns 2..27 are written."""
    indptr, indices, values = _csr(rng, rows=12, density=0.6)
    colptr, brow, bval = np.zeros(31, np.int64), np.zeros(len(indices), np.int32), np.zeros(len(indices), F32)
    reference.csr_transpose_rows(indptr, indices, values, np.arange(12), colptr, brow, bval)
    return colptr, brow, bval, _rand(rng, 12, 70), np.ones((30, 70), F32), 2, 28


CASES = (
    [pytest.param("bias_act_forward", case_bias_act_forward, (a,), id=f"forward-{a}") for a in ACTIVATION_CODES]
    + [pytest.param("bias_act_backward", case_bias_act_backward, (a,), id=f"backward-{a}")
       for a in ACTIVATION_CODES]
    + [pytest.param("loss_forward_backward", case_loss, (loss,), id=f"loss-{loss}") for loss in LOSS_CODES]
    + [pytest.param("optimizer_step", case_optimizer, (o, c), id=f"optim-{o}-clip{c}")
       for o in OPTIMIZER_CODES for c in (CLIP_NONE, CLIP_NORM, CLIP_GLOBAL_NORM, CLIP_VALUE)]
    + [
        pytest.param("matmul", lambda rng: (_rand(rng, 4, 6), _rand(rng, 6, 3), np.zeros((4, 3), F32)), (),
                     id="matmul"),
        pytest.param("matmul_tn", lambda rng: (_rand(rng, 6, 4), _rand(rng, 6, 3), np.zeros((4, 3), F32)), (),
                     id="matmul_tn"),
        pytest.param("matmul_nt", lambda rng: (_rand(rng, 4, 6), _rand(rng, 3, 6), np.zeros((4, 3), F32)), (),
                     id="matmul_nt"),
        # Wide operands (n ≥ 8, rows not a multiple of 4) take the blocked loops, narrow ones the others.
        pytest.param("matmul", lambda rng: (_rand(rng, 7, 6), _rand(rng, 6, 19), np.zeros((7, 19), F32)), (),
                     id="matmul-wide"),
        pytest.param("matmul_tn", lambda rng: (_rand(rng, 7, 4), _rand(rng, 7, 19), np.zeros((4, 19), F32)), (),
                     id="matmul_tn-wide"),
        pytest.param("matmul_nt", lambda rng: (_rand(rng, 7, 19), _rand(rng, 5, 19), np.zeros((7, 5), F32)), (),
                     id="matmul_nt-wide"),
        # 8 ≤ n < 16: one masked block and nothing else.
        pytest.param("matmul", lambda rng: (_rand(rng, 5, 9), _rand(rng, 9, 10), np.zeros((5, 10), F32)), (),
                     id="matmul-masked"),
        pytest.param("matmul_tn", lambda rng: (_rand(rng, 9, 5), _rand(rng, 9, 10), np.zeros((5, 10), F32)), (),
                     id="matmul_tn-masked"),
        pytest.param("take_rows", lambda rng: (_rand(rng, 9, 3), np.array([4, 0, 4, 8]), np.zeros((4, 3), F32)),
                     (), id="take_rows"),
        pytest.param("dropout_forward", lambda rng: (_rand(rng, 20), rng.random(20).astype(F32), 0.4,
                                                     np.zeros(20, F32), np.zeros(20, F32)), (), id="dropout"),
        pytest.param("multiply", lambda rng: (_rand(rng, 9), _rand(rng, 9), np.zeros(9, F32)), (), id="multiply"),
        pytest.param("csr_matmul", lambda rng: (*_csr(rng), np.array([3, 1, 6, 1]), _rand(rng, 30, 5),
                                                np.zeros((4, 5), F32)), (), id="csr_matmul"),
        pytest.param("csr_t_matmul", lambda rng: (*_csr(rng), np.array([3, 1, 6, 1]), _rand(rng, 4, 5),
                                                  np.ones((30, 5), F32)), (), id="csr_t_matmul"),
        # Dense rows (≥ 8 non-zeros) take the 8-at-a-time loops, plus their remainders; row 1 twice.
        pytest.param("csr_matmul", lambda rng: (*_csr(rng, density=0.7), np.array([3, 1, 6, 1]), _rand(rng, 30, 70),
                                                np.zeros((4, 70), F32)), (), id="csr_matmul-dense-rows"),
        pytest.param("csr_t_matmul", lambda rng: (*_csr(rng, density=0.7), np.array([3, 1, 6, 1]), _rand(rng, 4, 70),
                                                  np.ones((30, 70), F32)), (), id="csr_t_matmul-dense-rows"),
        # Every vector block of the CSR products (simd.py): 16, 3×16, 64 + 16 + tail, 128 + 64 + 16 + tail;
        # rows of 0 to ~30 non-zeros cover the blocks' 4-at-a-time sums and their remainders.
        *[pytest.param(kernel, lambda rng, kernel=kernel, units=units: _csr_case(rng, kernel, units), (),
                       id=f"{kernel}-{units}") for kernel in ("csr_matmul", "csr_t_matmul") for units in (16, 48, 83, 211)],
        pytest.param("csr_transpose_rows", lambda rng: (*_csr(rng, density=0.5), np.array([3, 1, 6, 1, 0]),
                                                        np.zeros(31, np.int64), np.zeros(150, np.int32),
                                                        np.zeros(150, F32)), (), id="csr_transpose_rows"),
        pytest.param("csc_t_matmul", case_csc_t_matmul, (), id="csc_t_matmul"),
        pytest.param("csr_matmul_split", lambda rng: (*_csr(rng, density=0.7), np.array([3, 1, 6, 1, 0]),
                                                      _rand(rng, 30, 70), np.zeros((5, 70), F32), 2), (),
                     id="csr_matmul_split"),
        pytest.param("csc_t_matmul_split", lambda rng: (*case_csc_t_matmul(rng)[:5], np.array([2, 9, 10, 28])), (),
                     id="csc_t_matmul_split"),
        *[pytest.param("clip_gradients", lambda rng, mode=mode: (np.array([0, 5, 12], np.int64),
                                                                 _rand(rng, 12, scale=3), mode, 2.0), (),
                       id=f"clip_gradients-{mode}") for mode in (CLIP_NONE, CLIP_NORM, CLIP_GLOBAL_NORM, CLIP_VALUE)],
        pytest.param("regularize", lambda rng: (_rand(rng, 10), _rand(rng, 10), 0.01, 0.02), (), id="regularize"),
        pytest.param("sum_squares", lambda rng: (_rand(rng, 50),), (), id="sum_squares"),
        *[pytest.param(kernel, case_rows_step, (), id=kernel) for kernel in ("rmsprop_rows_step", "sgd_rows_step")],
        pytest.param("rows_flush", lambda rng: (np.array([0.1, 0, 0.9, 0, 1e-7, 0, 0, 0]), 9,
                                                np.array([8, -1, 3, 5], np.int64), rng.random((4, 3)).astype(F32), 1),
                     (), id="rows_flush"),
    ]
)


@pytest.mark.parametrize("kernel, build, extra", CASES)
def test_kernel_matches_reference(kernel, build, extra):
    args = build(np.random.default_rng(0), *extra)
    ours, oracle = copy.deepcopy(args), copy.deepcopy(args)
    result = getattr(cpu, kernel)(*ours)
    expected = getattr(reference, kernel)(*oracle)
    # float32 kernels against float64 oracles; the loss oracle's gradient is a finite difference.
    tol = 2e-3 if kernel == "loss_forward_backward" else 2e-5
    for mine, theirs in zip(ours, oracle):
        if isinstance(mine, np.ndarray):
            assert np.isfinite(mine).all()
            np.testing.assert_allclose(mine, theirs, rtol=tol, atol=tol)
    if expected is not None:
        assert result == pytest.approx(expected, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("table, codes, suffix", [
    (cpu.BIAS_ACT_FORWARD, ACTIVATION_CODES, "_forward"), (cpu.BIAS_ACT_BACKWARD, ACTIVATION_CODES, "_backward"),
    (cpu.LOSS_KERNELS, LOSS_CODES, ""), (cpu.OPTIMIZER_KERNELS, OPTIMIZER_CODES, "_step"),
], ids=["forward", "backward", "loss", "optimizer"])
def test_each_code_calls_its_own_kernel(table, codes, suffix):
    """The coded entry points index these tables by code, so the order must match the codes."""
    assert len(table) == len(codes)
    for name, code in codes.items():
        assert table[code].py_func.__name__.removeprefix("bias_") == name + suffix


# kernels tested in test_<family>_kernels.py
LAYER_FAMILIES = ("conv", "pooling", "normalization", "embedding", "recurrent", "conv3x3")


def test_every_exported_kernel_has_a_case_and_an_oracle():
    families = {name for family in LAYER_FAMILIES for name in getattr(cpu, family).KERNELS}
    covered = {p.values[0] for p in CASES}
    assert set(cpu.KERNELS) - families == covered
    assert all(hasattr(reference, name) for name in covered)


@pytest.mark.parametrize("family", LAYER_FAMILIES)
def test_every_layer_family_kernel_has_an_oracle_and_a_test(family):
    """Each family's kernels sit beside a NumPy oracle of the same name, and its own kernel test calls both."""
    oracles = importlib.import_module(f"nnctl.engine.reference_{family}")
    tests = (Path(__file__).parent / f"test_{family}_kernels.py").read_text(encoding="utf-8")
    for name in getattr(cpu, family).KERNELS:
        assert hasattr(oracles, name) or name.endswith("_split"), f"{family}: no oracle for {name}"
        assert name.removesuffix("_split") in tests, f"{family}: {name} is not exercised by test_{family}_kernels.py"
