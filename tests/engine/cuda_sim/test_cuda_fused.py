"""A Dense model's steps in one launch (nn/cudafused.py, nnctl/engine/cuda/fused.py), one block or a cooperative
grid: the same bytes as the layer-by-layer CUDA path — losses, weights, optimizer slots, metrics' outputs and
predictions — for each optimizer family, fused and unfused losses, softmax, sparse labels, sample weights, a layer
without a bias, a short last batch, Dropout after Dense layers and a leading Flatten; one launch a fit's epoch; a
grid the GPU refuses; and the models it must leave to the layer-by-layer path. Run by tests/engine/test_cuda_sim.py
(or on a GPU with NNCTL_CUDA_TESTS=gpu, where cuBLAS and the compiler's choices make the two paths agree to float32
rounding)."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.engine import settings
from nnctl.nn import cudafused
from nnctl.nn.layers import Dense, Dropout, Flatten
from nnctl.nn.model import Sequential
from tests.engine.cuda_sim.agree import assert_same_runs, same

RNG = np.random.default_rng(23)
X = RNG.standard_normal((21, 5)).astype(np.float32)  # batches of 8, 8 and 5
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
    # Dropout after a Dense layer: the Dropout op's draws, forward and backward (and not in validation or predict)
    "dropout-relu-mse-rmsprop": (lambda: [Dense(6, activation="relu"), Dropout(0.3), Dense(6, activation="relu"),
                                          Dropout(0.5), Dense(1)], "rmsprop", "mse", lambda x: x[:, :1] - x[:, 1:2]),
    "dropout-after-softmax-sgd": (lambda: [Dense(4, activation="softmax"), Dropout(0.25),
                                           Dense(3, activation="softmax")], "sgd", "sparse_categorical_crossentropy",
                                  lambda x: np.argmax(x[:, :3], 1)),
    "four-layers-dropouts-adam": (lambda: [Dense(5, activation="relu"), Dropout(0.2), Dense(4, activation="tanh"),
                                           Dropout(0.0), Dense(4, activation="sigmoid"), Dropout(0.6), Dense(2)],
                                  "adam", "mse", lambda x: x[:, :2]),
}


@pytest.fixture(params=["block", "grid"])
def form(request, monkeypatch):
    """The one-block launch, or the cooperative grid's (every model sent there; one block under the simulator)."""
    if request.param == "grid":
        monkeypatch.setattr(settings, "SMALL_GEMM_MACS", 0)
    return request.param


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


@pytest.mark.parametrize("case", list(CASES))
def test_one_launch_gives_the_layer_by_layer_bytes(case, form, monkeypatch):
    weights = RNG.uniform(0.5, 1.5, len(X)).astype(np.float32) if case.startswith("relu") else None
    whole, layered = _run(case, True, monkeypatch, weights=weights), _run(case, False, monkeypatch, weights=weights)
    assert_same_runs(whole, layered)
    assert whole[4].optimizer.iterations == layered[4].optimizer.iterations == 6


def test_a_leading_flatten_is_one_launch_too(form, monkeypatch):
    """Flatten, then Dense layers (images fed as they are): the rows are flat already, the same bytes."""
    images, labels = X.reshape(21, 5, 1), np.argmax(X[:, :3], 1)
    runs = []
    for fused in (True, False):
        monkeypatch.setattr(cudafused, "ENABLED", fused)
        model = Sequential([Flatten(), Dense(4, activation="relu"), Dense(3, activation="softmax")],
                           input_shape=(5, 1), seed=7, device="cuda")
        model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy")
        history = model.fit(images, labels, epochs=2, batch_size=8)
        assert (next(iter(model._cuda_paths.values())).whole is not None) is fused
        runs.append((history["loss"], model.get_weights(), model.predict(images)))
    same(runs[0][0], runs[1][0], "loss")
    for name in runs[1][1]:
        same(runs[0][1][name], runs[1][1][name], name)
    same(runs[0][2], runs[1][2], "predictions")


def test_an_epoch_is_one_launch(monkeypatch):
    """Counted on the kernel's launcher: one a training epoch, one an inference pass (validation, predict)."""
    from nnctl.engine.cuda import fused

    import nnctl.engine.cuda as kernels

    calls = []
    monkeypatch.setattr(kernels, "dense_steps", lambda *args: calls.append(args[:2]) or fused.dense_steps(*args))
    _run("relu-linear-mse-rmsprop", True, monkeypatch, epochs=2)
    # epoch, validation, epoch, validation, predict; one block each (a small model)
    assert calls == [(0, True), (0, False), (0, True), (0, False), (0, False)]


def test_a_grid_too_large_for_the_gpu_is_halved_and_one_refused_goes_layer_by_layer(monkeypatch):
    """A cooperative launch of more blocks than fit at once is refused by the driver: the blocks are halved until
    it runs. A GPU that refuses grids at all: a warning, and the path goes layer by layer, to the same bytes."""
    import nnctl.engine.cuda as kernels
    from nnctl.engine.cuda import fused

    monkeypatch.setattr(settings, "SMALL_GEMM_MACS", 0)
    monkeypatch.setattr(cudafused, "_FITTING_BLOCKS", [None])
    monkeypatch.setattr(cudafused, "_REFUSED", [False])
    monkeypatch.setattr(cudafused, "grid_blocks", lambda ctx: min(4, cudafused._FITTING_BLOCKS[0] or 4))
    tried = []

    def launch(blocks, *args):
        tried.append(blocks)
        if blocks > 1:
            raise RuntimeError("CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE: too many blocks in cooperative launch")
        fused.dense_steps(blocks, *args)

    monkeypatch.setattr(kernels, "dense_steps", launch)
    halved = _run("softmax-sparse-cce-adam", True, monkeypatch)
    assert tried[:3] == [4, 2, 1] and set(tried[3:]) == {1}  # later paths (predict's batch size) start at 1
    layered = _run("softmax-sparse-cce-adam", False, monkeypatch)

    def refuse(blocks, *args):
        raise RuntimeError("cudaErrorNotSupported: cooperative launch")

    monkeypatch.setattr(kernels, "dense_steps", refuse)
    monkeypatch.setattr(cudafused, "ENABLED", True)
    model = Sequential(CASES["softmax-sparse-cce-adam"][0](), input_shape=(5,), seed=7, device="cuda")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    y = CASES["softmax-sparse-cce-adam"][3](X)
    with pytest.warns(RuntimeWarning, match="refused a cooperative grid .cudaErrorNotSupported"):
        history = model.fit(X, y, epochs=2, batch_size=8, validation_data=(X[:6], y[:6]))
    assert next(iter(model._cuda_paths.values())).whole is None and cudafused._REFUSED[0]
    for run in (halved, layered):
        for key in ("loss", "val_loss"):
            same(history[key], run[0][key], key)
        for name in run[1]:
            same(model.get_weights()[name], run[1][name], name)


@pytest.mark.parametrize("layers, compiled, batch", [
    (lambda: [Dropout(0.5), Dense(4, activation="relu"), Dense(1)], {}, 8),  # the input's dropout
    (lambda: [Dense(4, activation="relu"), Dropout(0.5), Dropout(0.5), Dense(1)], {}, 8),
    (lambda: [Dense(4, activation="relu"), Dense(1), Dropout(0.5)], {}, 8),  # the output's
    (lambda: [Dense(4, activation="relu", kernel_regularizer={"type": "l2", "l2": 0.01}), Dense(1)], {}, 8),
    (lambda: [Dense(4, activation="relu"), Dense(1)], {"optimizer": {"type": "sgd", "clipnorm": 1.0}}, 8),
    (lambda: [Dense(4, activation="relu"), Dense(1)], {}, 1024),  # the bias sums' one pass: 512 rows at most
    (lambda: [Dense(4), Dense(4), Dense(4), Dense(4), Dense(1)], {}, 8),  # five layers: over 4 KB of arguments
    (lambda: [Dense(128, activation="relu"), Dense(1)], {}, 256),  # 256 · 5 · 128 MACs: over GRID_MACS here
], ids=["input-dropout", "two-dropouts", "output-dropout", "regularizer", "clipnorm", "batch-1024", "five-layers",
        "beyond-the-grid"])
def test_what_one_launch_does_not_run_takes_the_layer_by_layer_path(layers, compiled, batch, monkeypatch):
    from nnctl.nn.cudapath import path

    monkeypatch.setattr(cudafused, "GRID_MACS", 100_000)
    model = Sequential(layers(), input_shape=(5,), seed=7, device="cuda")
    model.compile(**{"optimizer": "rmsprop", "loss": "mse", **compiled})
    assert path(model, batch, False).whole is None
    small = Sequential([Dense(4, activation="relu"), Dense(1)], input_shape=(5,), seed=7, device="cuda")
    small.compile(optimizer="rmsprop", loss="mse")
    assert path(small, 8, False).whole.blocks == 0  # one block
    monkeypatch.setattr(cudafused, "GRID_MACS", 1 << 26)
    mid = Sequential([Dense(128, activation="relu"), Dense(1)], input_shape=(5,), seed=7, device="cuda")
    mid.compile(optimizer="rmsprop", loss="mse")
    assert path(mid, 256, False).whole.blocks == 1  # 256 · 5 · 128 MACs: a grid (of one block, simulated)
    monkeypatch.setattr(cudafused, "GRID", False)  # NNCTL_CUDA_FUSED=block
    mid = Sequential([Dense(128, activation="relu"), Dense(1)], input_shape=(5,), seed=7, device="cuda")
    mid.compile(optimizer="rmsprop", loss="mse")
    assert path(mid, 256, False).whole is None
