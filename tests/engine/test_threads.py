"""Splitting big sparse kernel calls over threads: same bytes as one thread, and the thread-count rules."""

import os
import subprocess
import sys

import numpy as np
import pytest

from nnctl.engine import settings, threads
from nnctl.engine.backend import get_backend
from nnctl.engine.csr import CSRBatch, CSRMatrix

F32 = np.float32


def _batch(rng, rows=40, width=50, density=0.4):
    dense = (rng.random((rows + 10, width)) < density) * rng.random((rows + 10, width))
    return CSRBatch(CSRMatrix.from_dense(dense.astype(F32)), rng.permutation(rows + 10)[:rows])


@pytest.mark.parametrize("units", [16, 83, 96], ids=["narrow-scatter", "wide-columns-with-tail", "wide-columns"])
@pytest.mark.parametrize("split", [False, True], ids=["one-thread", "split"])
def test_backend_sparse_products_match_the_plain_kernels_bytewise(monkeypatch, units, split):
    if split:  # every call big enough to split, into 3 parts
        monkeypatch.setattr(settings, "PARALLEL_MIN_MACS", 1)
        monkeypatch.setattr(settings, "thread_count", lambda: 3)
    backend, rng = get_backend("cpu"), np.random.default_rng(0)
    x = _batch(rng)
    m = x.matrix
    w = rng.standard_normal((50, units)).astype(F32)
    dy = rng.standard_normal((40, units)).astype(F32)
    out, expected = np.full((40, units), np.nan, F32), np.zeros((40, units), F32)
    backend.csr_forward(x, w, out)
    backend.csr_matmul(m.indptr, m.indices, m.values, x.rows, w, expected)
    assert out.tobytes() == expected.tobytes()
    dw, expected = np.full((50, units), np.nan, F32), np.zeros((50, units), F32)
    backend.csr_weight_grad(x, dy, dw)
    backend.csr_t_matmul(m.indptr, m.indices, m.values, x.rows, dy, expected)
    assert dw.tobytes() == expected.tobytes()
    np.testing.assert_allclose(dw, m.to_dense()[x.rows].T @ dy, rtol=1e-5, atol=1e-5)


def test_parts_follow_the_work_and_the_thread_count(monkeypatch):
    monkeypatch.setattr(settings, "PARALLEL_MIN_MACS", 1000)
    monkeypatch.setattr(settings, "thread_count", lambda: 2)
    assert threads.parts(999) == 1
    assert threads.parts(1999) == 1  # two parts would each get less than the minimum
    assert threads.parts(2000) == 2 and threads.parts(10 ** 9) == 2
    monkeypatch.setattr(settings, "thread_count", lambda: 1)
    assert threads.parts(10 ** 9) == 1


@pytest.mark.parametrize("env, expected", [({"NNCTL_THREADS": "3", "NUMBA_NUM_THREADS": "1"}, 3),
                                           ({"NUMBA_NUM_THREADS": "1"}, 1), ({"NNCTL_THREADS": "0"}, 1)])
def test_thread_count_reads_the_environment(monkeypatch, env, expected):
    for var in ("NNCTL_THREADS", "NUMBA_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    assert settings.thread_count() == expected


def test_thread_count_defaults_to_the_usable_cores(monkeypatch):
    for var in ("NNCTL_THREADS", "NUMBA_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    assert settings.thread_count() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("preset, expected", [(None, "1"), ("2", "2")])
def test_the_command_line_runs_blas_on_one_thread_unless_told(preset, expected):
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if preset:
        env["OPENBLAS_NUM_THREADS"] = preset
    code = ("import nnctl.cli, nnctl.engine, numpy, os; "
            "print(os.environ['OPENBLAS_NUM_THREADS'], os.environ['OMP_WAIT_POLICY'])")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == [expected, "passive"]
