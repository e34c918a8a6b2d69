"""Denormals flushed to zero while nnctl computes (nnctl/engine/denormals.py), and only then."""

import contextlib
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from nnctl.engine import denormals, settings
from nnctl.engine.backend import get_backend
from nnctl.engine.chunks import run_chunks

pytestmark = pytest.mark.skipif(not denormals.X86, reason="the FTZ/DAZ switch is x86-64's")

F32 = np.float32
TINY = F32(1e-39)  # a denormal


def _flags():
    """(FTZ seen, DAZ seen) by NumPy on this thread: 1e-20² = 1e-40 is denormal (FTZ makes it 0); a denormal
    times 2^40 is a normal 1.1e-27 unless the denormal input reads as 0 (DAZ)."""
    small = np.array([1e-20], F32)
    return bool((small * small)[0] == 0), bool((np.array([TINY]) * F32(2.0 ** 40))[0] == 0)


def test_flushed_turns_ftz_and_daz_on_and_gives_the_callers_bits_back():
    assert _flags() == (False, False)
    with denormals.flushed():
        assert _flags() == (True, True)
        assert denormals.flush_bits() == denormals.FLUSH
        with denormals.flushed():  # nested: the outer block's bits come back
            assert _flags() == (True, True)
        assert _flags() == (True, True)
    assert _flags() == (False, False) and denormals.flush_bits() == 0
    with pytest.raises(RuntimeError), denormals.flushed():
        raise RuntimeError("boom")
    assert _flags() == (False, False)


def test_swap_takes_any_integer_width():
    """The intrinsic narrows or widens its argument to the register's 32 bits (an int32 needs neither)."""
    assert denormals.swap_flush_bits(np.int32(denormals.FLUSH)) == 0
    assert denormals.swap_flush_bits(np.uint16(0)) == denormals.FLUSH
    assert denormals.swap_flush_bits(np.uint16(denormals.FLUSH)) == 0
    assert _flags() == (True, True)
    assert denormals.swap_flush_bits(np.int64(0)) == denormals.FLUSH
    assert _flags() == (False, False)


def test_swap_keeps_the_control_registers_other_bits():
    before = np.geterr()
    old = denormals.swap_flush_bits(denormals.FLUSH)
    assert old == 0
    with np.errstate(over="raise"):  # NumPy reads its errors from the status bits, which must still work
        with pytest.raises(FloatingPointError):
            np.array([3e38], F32) * F32(10)
    assert denormals.swap_flush_bits(0) == denormals.FLUSH
    assert np.geterr() == before and _flags() == (False, False)


def _tiny_model():
    from nnctl.nn.layers import Dense
    from nnctl.nn.model import Sequential

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 8)).astype(F32), rng.standard_normal((64, 1)).astype(F32)
    model = Sequential([Dense(4, activation="relu"), Dense(1)], input_shape=(8,), seed=0)
    model.compile(optimizer="sgd", loss="mse")
    return model, x, y


def test_fit_evaluate_predict_flush_while_they_run_and_restore_after():
    from nnctl.nn.callbacks import Callback

    seen = []

    class Probe(Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(_flags())

    model, x, y = _tiny_model()
    model.fit(x, y, epochs=2, batch_size=16, callbacks=[Probe()])
    assert seen == [(True, True)] * 2 and _flags() == (False, False)

    class Boom(Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        model.fit(x, y, epochs=1, batch_size=16, callbacks=[Boom()])
    assert _flags() == (False, False)
    model.predict(x), model.evaluate(x, y)
    assert _flags() == (False, False)


def test_the_chunk_pools_helpers_compute_under_the_callers_mode(monkeypatch):
    monkeypatch.setattr(settings, "thread_count", lambda: 2)
    chunks = [(k, 1) for k in range(24)]

    def run_all():
        seen = {}

        def run(index, first, count):
            time.sleep(0.002)  # long enough for the helper to take chunks too
            seen[index] = (threading.get_ident(), _flags())
        run_chunks(run, chunks)
        assert len({ident for ident, _ in seen.values()}) == 2, "the helper thread ran no chunk"
        return {flags for _, flags in seen.values()}

    with denormals.flushed():
        assert run_all() == {(True, True)}
    assert run_all() == {(False, False)}  # the helper follows the caller back
    with denormals.flushed():
        assert run_all() == {(True, True)}


def test_split_kernels_threads_compute_under_the_callers_mode(monkeypatch):
    """csr_matmul_split's prange parts (Numba's threads) give denormal products or zeros as the caller's
    mode says, in every part, whichever mode the threads had before."""
    from nnctl.engine.csr import CSRBatch, CSRMatrix

    monkeypatch.setattr(settings, "PARALLEL_MIN_MACS", 1)
    monkeypatch.setattr(settings, "thread_count", lambda: 2)
    x = CSRBatch(CSRMatrix.from_dense(np.full((64, 16), F32(1e-20))), np.arange(64))
    w = np.full((16, 4), F32(1e-20))
    for flush in (False, True, False, True):
        out = np.full((64, 4), np.nan, F32)
        with denormals.flushed() if flush else contextlib.nullcontext():
            get_backend("cpu").csr_forward(x, w, out)
        assert (out == 0).all() if flush else ((out > 0) & (out < F32(1e-37))).all()


def _conv_weights(monkeypatch, threads):
    """Weights after training a conv + pooling stack (the chunk pool's layers) on inputs that are partly
    denormal, on `threads` threads."""
    from nnctl.nn.layers import Conv2D, Dense, Flatten, MaxPooling2D
    from nnctl.nn.model import Sequential

    monkeypatch.setattr(settings, "thread_count", lambda: threads)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((128, 20, 20, 4)).astype(F32)
    x[::2] *= F32(1e-39)  # every other image denormal: each chunk meets some
    y = rng.standard_normal((128, 1)).astype(F32)
    model = Sequential([Conv2D(16, 3, activation="relu"), MaxPooling2D(2), Flatten(), Dense(1)],
                       input_shape=(20, 20, 4), seed=1)
    model.compile(optimizer="rmsprop", loss="mse")
    model.fit(x, y, epochs=2, batch_size=64)  # 64 × 324 × 36 × 16 multiply-adds a conv: the chunk pool runs it
    return model.store.values.copy()


def test_training_on_denormal_inputs_gives_the_same_bytes_on_one_and_two_threads(monkeypatch):
    assert _conv_weights(monkeypatch, 1).tobytes() == _conv_weights(monkeypatch, 2).tobytes()


def test_nnctl_flush_denormals_0_keeps_ieee_denormals():
    code = ("import numpy as np\n"
            "from nnctl.engine import denormals\n"
            "with denormals.flushed():\n"
            "    s = np.array([1e-20], np.float32)\n"
            "    print(denormals.ENABLED, (s * s)[0] > 0)\n")
    env = {**os.environ, "NNCTL_FLUSH_DENORMALS": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
    env["NNCTL_FLUSH_DENORMALS"] = "1"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False"]
