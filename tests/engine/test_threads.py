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


def _blas_threads() -> int:
    from threadpoolctl import threadpool_info

    return max(info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas")


def _fit(callbacks=(), epochs=2):
    from nnctl.nn.layers import Dense
    from nnctl.nn.model import Sequential

    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(200, 64)).astype(F32), rng.integers(0, 4, 200)
    model = Sequential([Dense(256, activation="relu"), Dense(4, activation="softmax")], input_shape=(64,), seed=5)
    model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    # 32 × 64 × 256 multiply-adds a step: above SMALL_GEMM_MACS, so the products go to BLAS.
    history = model.fit(x, y, epochs=epochs, batch_size=32, callbacks=list(callbacks), fast_path=False)
    return model, history, model.predict(x), model.evaluate(x, y)


def test_fit_evaluate_predict_run_blas_on_one_thread_and_restore_the_callers_limits():
    from threadpoolctl import threadpool_limits

    from nnctl.nn.callbacks import Callback

    seen = []

    class Probe(Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(_blas_threads())

    with threadpool_limits(limits=2, user_api="blas"):
        caller = _blas_threads()
        _fit([Probe()])
        assert seen == [1, 1]
        assert _blas_threads() == caller

        class Boom(Callback):
            def on_epoch_end(self, epoch, logs=None):
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            _fit([Boom()])
        assert _blas_threads() == caller  # restored when fit raises too


def test_results_do_not_depend_on_the_callers_blas_threads():
    """The policy runs BLAS on one thread whatever the caller set, so the caller's limit cannot change a byte.
    (Without it they could: OpenBLAS's 2-thread sgemm rounds differently from its 1-thread one on some
    CPUs, e.g. its Haswell kernels on an AMD EPYC 7002.)"""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        model, history, predicted, evaluated = _fit()
    with threadpool_limits(limits=2, user_api="blas"):
        other, history2, predicted2, evaluated2 = _fit()
    assert history == {**history2, "epoch_time": history["epoch_time"]}
    assert predicted.tobytes() == predicted2.tobytes() and evaluated == evaluated2
    assert model.store.values.tobytes() == other.store.values.tobytes()


@pytest.mark.parametrize("value, expected", [(None, 1), ("0", 0), ("3", 3), ("many", 1)])
def test_blas_threads_read_the_environment(value, expected):
    env = {k: v for k, v in os.environ.items() if k != "NNCTL_BLAS_THREADS"}
    if value is not None:
        env["NNCTL_BLAS_THREADS"] = value
    code = "import nnctl.engine.settings as s; print(s.BLAS_THREADS)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == [str(expected)]
