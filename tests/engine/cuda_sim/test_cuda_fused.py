"""A small Dense model's steps in one launch (nn/cudafused.py, nnctl/engine/cuda/fused.py): the same bytes as the
layer-by-layer CUDA path — losses, weights, optimizer slots, metrics' outputs and predictions — for each
optimizer family, fused and unfused losses, softmax, sparse labels, sample weights, a layer without a bias and a
short last batch; one launch a fit's epoch; and the models it must leave to the layer-by-layer path. Run by
tests/engine/test_cuda_sim.py (or on a GPU with NNCTL_CUDA_TESTS=gpu, where bytes may differ by the compiler's
choices between two kernels: there, to float32 rounding)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from nnctl.nn import cudafused
from nnctl.nn.layers import Dense, Dropout
from nnctl.nn.model import Sequential

RNG = np.random.default_rng(23)
X = RNG.standard_normal((21, 5)).astype(np.float32)  # batches of 8, 8 and 5
SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
CASES = {  # name: (layers, optimizer, loss, target of x)
    "relu-linear-mse-rmsprop": (lambda: [Dense(6, activation="relu"), Dense(6, activation="relu"), Dense(1)],
                                "rmsprop", "mse", lambda x: x[:, :1] - x[:, 1:2]),
    "softmax-sparse-cce-adam": (lambda: [Dense(4, activation="tanh"), Dense(3, activation="softmax")], "adam",
                                "sparse_categorical_crossentropy", lambda x: np.argmax(x[:, :3], 1)),
    "sigmoid-bce-sgd-momentum": (lambda: [Dense(4, activation="elu", use_bias=False),
                                          Dense(1, activation="sigmoid")],
                                 {"type": "sgd", "learning_rate": 0.05, "momentum": 0.9, "nesterov": True},
                                 "binary_crossentropy", lambda x: (x[:, :1] > 0).astype(np.float32)),
    "softmax-unfused-kld-adagrad": (lambda: [Dense(3, activation="softmax")], "adagrad", "kl_divergence",
                                    lambda x: np.abs(x[:, :3]) / np.abs(x[:, :3]).sum(1, keepdims=True)),
    "gelu-huber-adamw": (lambda: [Dense(4, activation="gelu"), Dense(2, activation="leaky_relu")], "adamw", "huber",
                         lambda x: x[:, :2]),
}


def _run(case, fused, monkeypatch, epochs=2, weights=None):
    layers, optimizer, loss, target = CASES[case]
    monkeypatch.setattr(cudafused, "ENABLED", fused)
    model = Sequential(layers(), input_shape=(5,), seed=7, device="cuda")
    model.compile(optimizer=optimizer, loss=loss)
    y = target(X)
    history = model.fit(X, y, epochs=epochs, batch_size=8, sample_weight=weights, validation_data=(X[:6], y[:6]))
    path = next(iter(model._cuda_paths.values()))
    assert (path.whole is not None) is fused
    return history, model.get_weights(), [s.copy() for s in model.optimizer.slots], model.predict(X[:11]), model


def _same(mine, theirs, label):
    if SIMULATED:
        assert np.asarray(mine).tobytes() == np.asarray(theirs).tobytes(), label
    else:
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-7, err_msg=label)


@pytest.mark.parametrize("case", list(CASES))
def test_one_launch_gives_the_layer_by_layer_bytes(case, monkeypatch):
    weights = RNG.uniform(0.5, 1.5, len(X)).astype(np.float32) if case.startswith("relu") else None
    whole, layered = _run(case, True, monkeypatch, weights=weights), _run(case, False, monkeypatch, weights=weights)
    for key in layered[0]:
        if key != "epoch_time":
            _same(whole[0][key], layered[0][key], key)
    for name in layered[1]:
        _same(whole[1][name], layered[1][name], name)
    for index, (mine, theirs) in enumerate(zip(whole[2], layered[2])):
        _same(mine, theirs, f"slot {index}")
    _same(whole[3], layered[3], "predictions")
    assert whole[4].optimizer.iterations == layered[4].optimizer.iterations == 6


def test_an_epoch_is_one_launch(monkeypatch):
    """Counted on the kernel's launcher: one a training epoch, one an inference pass (validation, predict)."""
    from nnctl.engine.cuda import fused

    calls = []
    launch = fused.dense_steps
    monkeypatch.setattr(fused, "dense_steps", lambda *args: calls.append(args[0]) or launch(*args))
    import nnctl.engine.cuda as kernels

    monkeypatch.setattr(kernels, "dense_steps", fused.dense_steps)
    _run("relu-linear-mse-rmsprop", True, monkeypatch, epochs=2)
    assert calls == [True, False, True, False, False]  # epoch, validation, epoch, validation, predict


@pytest.mark.parametrize("layers, compiled, batch", [
    (lambda: [Dense(4, activation="relu"), Dropout(0.5), Dense(1)], {}, 8),
    (lambda: [Dense(4, activation="relu", kernel_regularizer={"type": "l2", "l2": 0.01}), Dense(1)], {}, 8),
    (lambda: [Dense(4, activation="relu"), Dense(1)], {"optimizer": {"type": "sgd", "clipnorm": 1.0}}, 8),
    (lambda: [Dense(4, activation="relu"), Dense(1)], {}, 1024),  # the bias sums' one pass: 512 rows at most
    (lambda: [Dense(4), Dense(4), Dense(4), Dense(4), Dense(1)], {}, 8),  # five layers: over 4 KB of arguments
    (lambda: [Dense(128, activation="relu"), Dense(1)], {}, 256),  # 256 · 5 · 128 MACs: would use cuBLAS
], ids=["dropout", "regularizer", "clipnorm", "batch-1024", "five-layers", "cublas-sized"])
def test_what_one_launch_does_not_run_takes_the_layer_by_layer_path(layers, compiled, batch, monkeypatch):
    from nnctl.nn.cudapath import path

    model = Sequential(layers(), input_shape=(5,), seed=7, device="cuda")
    model.compile(**{"optimizer": "rmsprop", "loss": "mse", **compiled})
    assert path(model, batch, False).whole is None
    small = Sequential([Dense(4, activation="relu"), Dense(1)], input_shape=(5,), seed=7, device="cuda")
    small.compile(optimizer="rmsprop", loss="mse")
    assert path(small, 8, False).whole is not None
