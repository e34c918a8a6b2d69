"""Custom `build` + `call` layers on the GPU (nnctl/nn/cudaops_tape.py), under the CUDA simulator: every nnctl.ops
op and its tape backward on GpuArrays against the host tape (the op list of tests/nn/test_ops.py; the arrays
themselves against NumPy: test_gpu_arrays.py); models with tape layers trained on both backends agree, the layers'
ops having run on the device; users' losses likewise; a layer or loss whose call GPU arrays cannot run falls back
to its CPU code with a warning. Run by tests/engine/test_cuda_sim.py."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

from nnctl import ops
from nnctl.nn.functional import Input, Model
from nnctl.nn.layers import LSTM, Add, Dense, Embedding, Flatten, Layer, Subtract
from nnctl.nn.losses import Loss
from nnctl.nn.model import Sequential
from tests.engine.cuda_sim.agree import fit_on_both
from tests.engine.cuda_sim.test_gpu_arrays import _gpu, _host
from tests.nn.test_ops import CASES

RNG = np.random.default_rng(37)


def _run(function, arrays, weights, on_gpu):
    """(value, gradients) of Σ weights·f(arrays) by the tape, on GpuArrays or host arrays (float64)."""
    put = _gpu if on_gpu else np.asarray
    tensors = [ops.Tensor(put(a)) for a in arrays]
    with ops.GradientTape() as tape:
        out = function(*tensors)
    grads = tape.gradient(out, tensors, output_gradient=put(weights))
    return (_host(out.value), [_host(g) for g in grads]) if on_gpu else (out.value, grads)


@pytest.mark.parametrize("name", list(CASES))
def test_each_op_and_its_backward_on_gpu_arrays_matches_the_host_tape(name):
    function, arrays = CASES[name]
    weights = RNG.standard_normal(np.shape(function(*[ops.Tensor(a) for a in arrays]).value))
    value, grads = _run(function, arrays, weights, on_gpu=False)
    gpu_value, gpu_grads = _run(function, arrays, weights, on_gpu=True)
    assert gpu_value.dtype == value.dtype and gpu_value.shape == value.shape
    np.testing.assert_allclose(gpu_value, value, rtol=1e-12, atol=1e-14, err_msg=name)
    for gpu_grad, grad in zip(gpu_grads, grads):
        assert gpu_grad.dtype == grad.dtype and gpu_grad.shape == grad.shape
        np.testing.assert_allclose(gpu_grad, grad, rtol=1e-12, atol=1e-14, err_msg=name)


class Gated(Layer):
    """tanh(x·W) ⊙ sigmoid(x·V) + b."""

    def build(self, input_shape):
        self.W = self.add_weight("W", (input_shape[-1], 4), "glorot_uniform")
        self.V = self.add_weight("V", (input_shape[-1], 4), "glorot_uniform")
        self.b = self.add_weight("b", (4,), "ones")

    def call(self, inputs):
        return ops.tanh(inputs @ self.W) * ops.sigmoid(ops.matmul(inputs, self.V)) + self.b


class Attention(Layer):
    """Self-attention over the steps (batched matmuls, softmax, a transpose, slicing, concatenate, a mean, a
    layer-norm-like rescale by std, clip): many ops, one layer."""

    def build(self, input_shape):
        self.Q = self.add_weight("Q", (input_shape[-1], 3), "glorot_uniform")
        self.K = self.add_weight("K", (input_shape[-1], 3), "glorot_uniform")

    def call(self, inputs):
        q, k = ops.matmul(inputs, self.Q), ops.matmul(inputs, self.K)
        scores = ops.softmax(ops.matmul(q, ops.transpose(k, (0, 2, 1))) / np.sqrt(3.0), axis=-1)
        mixed = ops.matmul(scores, inputs)
        both = ops.concatenate([mixed[:, :, :2], ops.mean(mixed, axis=1, keepdims=True)[:, :, 2:] + mixed[:, :, 2:]],
                               axis=-1)
        return ops.clip(both / (ops.std(both, axis=-1, keepdims=True) + 1e-3), -3.0, 3.0)


class Gain(Layer):
    """x · g per feature, passing its input's Keras mask on."""

    supports_masking = True

    def build(self, input_shape):
        self.g = self.add_weight("g", (input_shape[-1],), "ones")

    def call(self, inputs):
        return inputs * self.g


class Ranked(Layer):
    """x · w plus each feature's count of positive features up to it, a value computed by NumPy's cumsum, which
    GPU arrays leave to the CPU."""

    def build(self, input_shape):
        self.w = self.add_weight("w", (input_shape[-1],), "ones")

    def call(self, inputs):
        return inputs * self.w + np.cumsum(ops.convert_to_numpy(inputs) > 0, axis=-1)


X = RNG.standard_normal((16, 6)).astype(np.float32)
SEQ = RNG.standard_normal((16, 5, 4)).astype(np.float32)
IDS = np.where(np.arange(6) < RNG.integers(0, 4, (16, 1)), 0, RNG.integers(1, 12, (16, 6))).astype(np.int32)
MODELS = {  # name: (x, y, layers)
    "gated-between-dense": (X, X[:, :1] * X[:, 1:2], lambda: [Dense(5, activation="relu"), Gated(), Dense(1)]),
    "gated-first": (X, X[:, :1] - X[:, 3:4], lambda: [Gated(), Dense(1)]),
    "attention-over-steps": (SEQ, SEQ[:, :1, 0] * SEQ[:, 2:3, 1], lambda: [Dense(4, activation="tanh"), Attention(),
                                                                           Flatten(), Dense(1)]),
    "gain-passing-a-mask": (IDS, (IDS[:, -1:] > 5).astype(np.float32),
                            lambda: [Embedding(12, 3, mask_zero=True), Gain(), LSTM(2),
                                     Dense(1, activation="sigmoid")]),
}


def _tape_ops(model):
    from nnctl.nn.cudaops_tape import TapeOp

    (path,) = model._cuda_paths.values()
    return [op for op in path.ops if isinstance(op, TapeOp)]


@pytest.mark.parametrize("case", list(MODELS))
def test_tape_layers_train_on_the_device_and_agree_with_the_cpu(case, strict_device_arrays):
    x, y, layers = MODELS[case]
    loss = "binary_crossentropy" if case.startswith("gain") else "mse"
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="device cuda")
        runs = fit_on_both(lambda device: Sequential(layers(), input_shape=x.shape[1:], seed=3, device=device), x, y,
                           dict(optimizer="adam", loss=loss), epochs=2, validation=(x, y))
    tape_ops = _tape_ops(runs[1][3])
    assert tape_ops and all(op.host is None for op in tape_ops)


def test_a_tape_layer_in_a_graph_reading_two_nodes_worth_of_gradient():
    def build(device):
        inputs = Input((6,))
        gated = Gated()(Dense(6, activation="tanh")(inputs))
        out = Dense(1)(gated)
        return Model(inputs, [out, Dense(2)(gated)], seed=5, device=device)

    fit_on_both(build, X, [X[:, :1], X[:, 1:3]], dict(optimizer="rmsprop", loss=["mse", "mae"]), epochs=2)


def test_a_shared_tape_layer_and_one_inside_a_nested_model():
    def shared(device):
        left, right = Input((6,), name="left"), Input((6,), name="right")
        gated = Gated()
        return Model([left, right], Dense(1)(Subtract()([gated(left), gated(right)])), seed=6, device=device)

    def nested(device):
        inner = Sequential([Dense(5, activation="tanh"), Gated()], input_shape=(6,), seed=1, name="inner")
        return Sequential([Dense(6), inner, Dense(1)], input_shape=(6,), seed=7, device=device)

    x = {"left": X, "right": X[::-1].copy()}
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="device cuda")
        fit_on_both(shared, x, X[:, :1] - X[::-1, :1], dict(optimizer="adam", loss="mse"), epochs=2)
        fit_on_both(nested, X, X[:, 1:2] * X[:, 4:5], dict(optimizer="adam", loss="mse"), epochs=2)


def test_the_custom_layers_of_the_cpu_tests_train_alike_a_hand_written_backward_kept():
    from tests.nn.test_custom_layers import Gated as Concatenated
    from tests.nn.test_custom_layers import SimpleDense

    class Noisy(Layer):
        def call(self, inputs, training=None):
            return inputs * (0.5 if training else 1.0)

    class Scale(Layer):  # its backward "for speed" replaces the tape's: run by the CPU layer
        def build(self, input_shape):
            self.gain = self.add_weight("gain", input_shape[-1:], "ones")

        def call(self, inputs):
            return inputs * self.gain

        def backward(self, dy):
            self.gain.grad[...] = 0.0
            return dy * self.gain.value * 10.0

    def build(device):
        inputs = Input((6,))
        hidden = SimpleDense(4, activation=ops.relu)(inputs)
        mixed = Concatenated()(Add()([hidden, Noisy()(hidden)]))
        return Model(inputs, SimpleDense(1, activation=ops.sigmoid)(Scale()(mixed)), seed=8, device=device)

    runs = fit_on_both(build, X, (X[:, :1] > 0).astype(np.float32), dict(optimizer="rmsprop",
                                                                         loss="binary_crossentropy"), epochs=2)
    (path,) = runs[1][3]._cuda_paths.values()
    assert [type(op).__name__ for op in path.ops] == ["TapeOp", "TapeOp", "MergeOp", "TapeOp", "HostOp", "TapeOp"]


def test_a_call_gpu_arrays_cannot_run_falls_back_to_the_cpu_with_a_warning(strict_device_arrays):
    build = lambda device: Sequential([Dense(3), Ranked(), Dense(1)], input_shape=(6,), seed=2,  # noqa: E731
                                      device=device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runs = fit_on_both(build, X, X[:, :1], dict(optimizer="adam", loss="mse"), epochs=2)
        runs[1][3].predict(X, batch_size=5)  # a runner at another batch size: straight to the CPU code, no warning
    said = [str(w.message) for w in caught if "device cuda" in str(w.message)]
    assert len(said) == 1 and re.match(r"device cuda: layer 1 \(ranked\) runs by its CPU code each step: .*"
                                       r"numpy.cumsum", said[0]), said
    assert all(op.host is not None for op in _tape_ops(runs[1][3]))


def test_a_backward_gpu_arrays_cannot_run_redoes_the_step_on_the_cpu(monkeypatch):
    from nnctl.nn import cudaops_tape

    calls = []

    def refuse(self, dy, m):
        calls.append(m)
        raise TypeError("refused for the test")

    monkeypatch.setattr(cudaops_tape.TapeOp, "_backward", refuse)
    build = lambda device: Sequential([Dense(5), Gated(), Dense(1)], input_shape=(6,), seed=4,  # noqa: E731
                                      device=device)
    with pytest.warns(RuntimeWarning, match="refused for the test"):
        fit_on_both(build, X, X[:, 2:3], dict(optimizer="sgd", loss="mse"), epochs=2)
    assert calls == [8]  # once: the layer stays on the CPU afterwards


class MeanFourth(Loss):
    """A user's loss: the mean of (pred − target)⁴ per sample."""

    def call(self, y_true, y_pred):
        return ops.mean(ops.square(ops.square(y_pred - y_true)), axis=-1)


class FirstColumn(Loss):
    """A user's loss reading a column by an index array (advanced indexing, on the device too)."""

    def call(self, y_true, y_pred):
        return ops.square(y_pred - y_true)[:, np.array([0])]


class RankWeighted(Loss):
    """A user's loss weighting its squares by a value from NumPy's cumsum, which GPU arrays leave to the CPU."""

    def call(self, y_true, y_pred):
        return ops.square(y_pred - y_true) * np.cumsum(ops.convert_to_numpy(y_true) > 0, axis=-1)


@pytest.mark.parametrize("loss", [MeanFourth, FirstColumn, RankWeighted])
def test_a_users_loss_runs_its_ops_on_the_device_or_else_on_the_cpu(loss, strict_device_arrays):
    build = lambda device: Sequential([Dense(4, activation="tanh"), Dense(2)], input_shape=(6,), seed=3,  # noqa: E731
                                      device=device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit_on_both(build, X, X[:, :2] * 0.5, dict(optimizer="adam", loss=loss()), epochs=2, validation=(X, X[:, :2]))
    said = [str(w.message) for w in caught if "device cuda" in str(w.message)]
    assert len(said) == (loss is RankWeighted)
    assert all(line.startswith(f"device cuda: loss '{loss.name}' runs on the CPU each step: its call does what GPU "
                               "arrays do not (no implementation found for 'numpy.cumsum'") for line in said)


def test_plugin_layers_and_loss_from_yaml_train_on_the_device_as_on_the_cpu(tmp_path, monkeypatch):
    """The example plugin's SimpleDense layers and SquaredHinge loss through `nnctl check` and `nnctl train`:
    nothing said to run on the CPU, no fallback warning, and the history of the CPU's run."""
    import json

    from tests.conftest import invoke, run_path, write_npz
    from tests.test_plugins import _config

    monkeypatch.chdir(tmp_path)
    config = _config(tmp_path, loss="my_layers.SquaredHinge", extra="device: cuda\n")
    write_npz(tmp_path / "tiny.npz", rows=48, test_rows=8)  # the simulator runs each GPU thread as an OS thread
    check = invoke("check", config)
    assert check.exit_code == 0 and "trains on cuda)" in check.output and "on the CPU" not in check.output
    histories = []
    for device in ("cpu", "cuda"):
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message="device cuda")
            result = invoke("train", config, "--set", f"device={device}", "--set", "epochs=2")
        assert result.exit_code == 0, result.output
        histories.append(json.loads((run_path(result.output) / "history.json").read_text()))
    for key in ("loss", "val_loss", "accuracy", "mean_prediction"):
        np.testing.assert_allclose(histories[1][key], histories[0][key], rtol=2e-5, err_msg=key)
