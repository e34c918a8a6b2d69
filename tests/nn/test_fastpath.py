"""The fast path's generated loop: only the model's kernels, written once, one compilation for fit and predict."""

import os

import numpy as np

from nnctl.engine.cpu.dense import ACTIVATION_CODES
from nnctl.engine.cpu.losses import LOSS_CODES
from nnctl.engine.cpu.optim import OPTIMIZER_CODES
from nnctl.nn import fastpath
from nnctl.nn.layers import Dense
from nnctl.nn.model import Sequential

A = ACTIVATION_CODES
KIND = fastpath.LoopKind(forward=(A["linear"], A["relu"]), backward=(A["linear"], A["relu"]), loss=LOSS_CODES["mse"],
                         optimizer=OPTIMIZER_CODES["rmsprop"], sparse=False, regularized=False,
                         clipped=False)


def test_the_generated_part_names_only_the_models_kernels():
    source = fastpath._kernel_source(KIND)
    imported = {line.split(" import ")[1] for line in source.splitlines() if line.startswith("from ")}
    assert imported == {"bias_linear_forward", "bias_relu_forward", "bias_linear_backward", "bias_relu_backward",
                        "mse as loss_kernel", "rmsprop_step as optimizer_kernel"}
    assert "input_forward = _dense_input_forward" in source and "add_penalties = _no_penalties" in source
    assert "clip_kernel = _no_clip" in source
    sparse = fastpath._kernel_source(KIND._replace(sparse=True, regularized=True, clipped=True, forward=(A["tanh"],)))
    assert "input_forward = _csr_input_forward" in sparse and "add_penalties = _penalties" in sparse
    assert "import clip_gradients as clip_kernel" in sparse
    assert "bias_tanh_forward(z, bias, alpha, y)" in sparse and "code ==" not in sparse.split("act_backward")[0]


def test_the_loop_file_is_written_once_and_reused(monkeypatch):
    module = fastpath._loop_module(KIND)
    path = module.__file__
    assert path.startswith(os.environ["NUMBA_CACHE_DIR"])
    before = os.stat(path).st_mtime_ns
    monkeypatch.setattr(fastpath, "_LOADED", {})  # as a new process would
    again = fastpath._loop_module(KIND)
    assert again.__file__ == path and os.stat(path).st_mtime_ns == before


def test_an_unwritable_cache_falls_back_to_a_private_directory(monkeypatch, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(blocker))
    monkeypatch.setattr(fastpath, "_LOADED", {})
    module = fastpath._loop_module(KIND)
    assert not module.__file__.startswith(str(blocker)) and os.path.exists(module.__file__)


def test_fit_and_predict_compile_the_loop_once():
    # A kind no other test uses, so the count is this test's own.
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((40, 5)).astype(np.float32), rng.standard_normal(40).astype(np.float32)
    model = Sequential([Dense(6, activation="gelu"), Dense(1, activation="softplus")], input_shape=(5,), seed=2)
    model.compile(optimizer="adagrad", loss="log_cosh")
    model.fit(x, y, epochs=2, batch_size=8, validation_data=(x, y), fast_path=True)
    predicted = model.predict(x, batch_size=8)
    loop = fastpath.FastPath(model, 8, False).loop
    assert len(loop.run_steps.overloads) == 1
    assert np.array_equal(model.predict(x[:17], batch_size=8), predicted[:17])  # a last, partial batch
