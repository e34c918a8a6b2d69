"""`device: cuda` end to end under the CUDA simulator: Dense stacks trained on the CUDA path agree with the same
seed on the CPU (history, weights, predictions) over dense and CSR inputs, losses fused with their output
activation or not, each optimizer family, a regularizer and clipping; batch callbacks see the same run; a model
the CUDA path does not run yet is refused by name; and through the command line, a GPU run's manifest says
cuda and the run evaluates on the CPU. Run by tests/engine/test_cuda_sim.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

from click.testing import CliRunner

from nnctl.cli import main
from nnctl.errors import ArgumentError
from nnctl.nn.callbacks import Callback
from nnctl.nn.layers import (Activation, AveragePooling1D, AveragePooling2D, BatchNormalization, Bidirectional,
                               Conv1D, Conv2D, Dense, Dropout, Embedding, Flatten, GlobalAveragePooling1D,
                               GlobalAveragePooling2D,
                               GlobalMaxPooling1D, GRU, LayerNormalization, LSTM, Masking, MaxPooling1D, MaxPooling2D,
                               Reshape, SimpleRNN, SpatialDropout1D, SpatialDropout2D)
from nnctl.nn.model import Sequential
from tests.engine.cuda_sim.agree import fit_on_both

# Small: the simulator runs each GPU thread as an OS thread (a batch of 8, two or three steps an epoch).
RNG = np.random.default_rng(11)
X = RNG.standard_normal((24, 6)).astype(np.float32)
X_SPARSE = (RNG.random((24, 40)) < 0.1).astype(np.float32)  # 10 % non-zero: the model reads it as CSR
IMAGES = RNG.standard_normal((14, 6, 7, 2)).astype(np.float32)
SEQUENCES = RNG.standard_normal((14, 6, 3)).astype(np.float32)
IDS = RNG.integers(0, 12, (16, 6)).astype(np.int32)
# Sequences whose first 0 to 3 steps are all zeros: Masking masks them.
SEQUENCES_PADDED = np.where((np.arange(6) < RNG.integers(0, 4, (14, 1)))[:, :, None], 0, SEQUENCES).astype(np.float32)
# Padded on the left as pad_sequences pads (id 0: a masked step), 0 to 4 steps of padding, and a few 0s inside.
IDS_PADDED = np.where(np.arange(6) < RNG.integers(0, 5, (16, 1)), 0, IDS)
CASES = {  # name: (x, target of x, layers, optimizer, loss)
    "dense-mse-rmsprop-l2": (X, lambda x: x[:, :2] @ np.ones((2, 1), np.float32),
                             lambda: [Dense(5, activation="tanh", kernel_regularizer={"type": "l2", "l2": 0.01}),
                                      Dense(1)], "rmsprop", "mse"),
    "csr-bce-adam": (X_SPARSE, lambda x: (x[:, :20].sum(1, keepdims=True) > 2).astype(np.float32),
                     lambda: [Dense(4, activation="relu"), Dense(1, activation="sigmoid")], "adam",
                     "binary_crossentropy"),
    "softmax-sparse-cce-sgd-clipnorm": (X, lambda x: np.argmax(x[:, :3], 1),
                                        lambda: [Dense(7, activation="relu"), Dense(3, activation="softmax")],
                                        {"type": "sgd", "learning_rate": 0.1, "momentum": 0.9, "clipnorm": 0.5},
                                        "sparse_categorical_crossentropy"),
    "unfused-huber-adagrad": (X, lambda x: x[:, :1] * 2,
                              lambda: [Dense(3, activation="elu"), Dense(1, activation="tanh")], "adagrad", "huber"),
    "convnet-maxpool-softmax": (IMAGES, lambda x: np.argmax(x[:, 0, :3, 0], 1),
                                lambda: [Conv2D(4, 3, activation="relu"), MaxPooling2D(2), Flatten(),
                                         Dense(3, activation="softmax")], "rmsprop", "sparse_categorical_crossentropy"),
    "conv-strided-same-averages": (IMAGES, lambda x: x[:, :2, :2, 0].reshape(-1, 4).mean(1, keepdims=True),
                                   lambda: [Conv2D(3, (2, 3), strides=2, padding="same", activation="tanh"),
                                            AveragePooling2D(2, padding="same"), Conv2D(2, 1, use_bias=False),
                                            GlobalAveragePooling2D(), Dense(1)], "adam", "mse"),
    "overlapping-max-pools": (IMAGES, lambda x: x[:, :3, :3, 1].max((1, 2))[:, None],  # a thread an input cell
                              lambda: [Conv2D(3, 2, activation="relu"), MaxPooling2D(3, strides=1, padding="same"),
                                       MaxPooling2D((2, 3), strides=(1, 2)), Flatten(), Dense(1)], "adam", "mse"),
    "conv1d-pools-bce": (SEQUENCES, lambda x: (x[:, :, 0].sum(1, keepdims=True) > 0).astype(np.float32),
                         lambda: [Conv1D(4, 3, padding="causal", activation="relu"), AveragePooling1D(2),
                                  Conv1D(3, 2, dilation_rate=2), GlobalMaxPooling1D(),
                                  Dense(1, activation="sigmoid")], "adam", "binary_crossentropy"),
    "embedding-flatten-bce-rmsprop": (IDS, lambda x: (x[:, :3] < 5).sum(1, keepdims=True) >= 2,
                                      lambda: [Embedding(12, 3), Flatten(), Dense(1, activation="sigmoid")],
                                      "rmsprop", "binary_crossentropy"),
    "embedding-conv1d-sgd": (IDS, lambda x: (x == 3).sum(1, keepdims=True).astype(np.float32),
                             lambda: [Embedding(12, 4), Conv1D(3, 2, activation="relu"), MaxPooling1D(2),
                                      GlobalMaxPooling1D(), Dense(1)], "sgd", "mse"),
    "embedding-lstm-bce-adam": (IDS, lambda x: (x[:, -2:] < 6).all(1, keepdims=True).astype(np.float32),
                                lambda: [Embedding(12, 3), LSTM(4), Dense(1, activation="sigmoid")], "adam",
                                "binary_crossentropy"),
    "lstm-sequences-then-simple-rnn": (SEQUENCES, lambda x: x[:, -1, :1] - x[:, 0, 1:2],
                                       lambda: [LSTM(3, return_sequences=True, activation="relu"),
                                                SimpleRNN(4, return_sequences=True), Flatten(), Dense(1)],
                                       "rmsprop", "mse"),
    "gru-sequences-bias-and-not": (SEQUENCES, lambda x: x[:, -1, :1] * x[:, -2, 1:2],
                                   lambda: [GRU(3, return_sequences=True), GRU(2, use_bias=False), Dense(1)],
                                   "adam", "mse"),
    "bidirectional-lstm-and-gru": (IDS, lambda x: (x[:, :1] < x[:, -1:]).astype(np.float32),
                                   lambda: [Embedding(12, 3), Bidirectional(GRU(2, return_sequences=True)),
                                            Bidirectional(LSTM(2)), Dense(1, activation="sigmoid")],
                                   "rmsprop", "binary_crossentropy"),
    "conv-batchnorm-frozen-dense-layernorm": (IMAGES, lambda x: np.argmax(x[:, 1, :2, 1], 1),
                                              lambda: [Conv2D(3, 3, use_bias=False), BatchNormalization(momentum=0.5),
                                                       MaxPooling2D(2), Flatten(), Dense(5, activation="relu"),
                                                       LayerNormalization(center=False), Dense(4, trainable=False),
                                                       Dense(2, activation="softmax")],
                                              "adam", "sparse_categorical_crossentropy"),
    "masked-bidirectional-and-backwards-lstm": (IDS_PADDED, lambda x: (x[:, :1] < x[:, -1:]).astype(np.float32),
                                                lambda: [Embedding(12, 3, mask_zero=True),
                                                         Bidirectional(GRU(2, return_sequences=True)),
                                                         LSTM(3, go_backwards=True), Dense(1, activation="sigmoid")],
                                                "rmsprop", "binary_crossentropy"),
    "masked-through-activation-simple-rnns": (IDS_PADDED, lambda x: (x > 6).sum(1, keepdims=True).astype(np.float32),
                                              lambda: [Embedding(12, 4, mask_zero=True), Activation("tanh"),
                                                       SimpleRNN(3, return_sequences=True), SimpleRNN(2), Dense(1)],
                                              "adam", "mse"),
    "bidirectional-merge-modes": (SEQUENCES, lambda x: x[:, -1, :1] - x[:, 0, 1:2],
                                  lambda: [Bidirectional(GRU(2, return_sequences=True), merge_mode="mul"),
                                           Bidirectional(LSTM(2, return_sequences=True), merge_mode="ave"),
                                           Bidirectional(SimpleRNN(2), merge_mode="sum"), Dense(1)], "adam", "mse"),
    "masked-bidirectional-sum-and-mul": (IDS_PADDED, lambda x: (x[:, -1:] > 5).astype(np.float32),
                                         lambda: [Embedding(12, 3, mask_zero=True),
                                                  Bidirectional(GRU(2, return_sequences=True), merge_mode="sum"),
                                                  Bidirectional(LSTM(2), merge_mode="mul"),
                                                  Dense(1, activation="sigmoid")], "rmsprop", "binary_crossentropy"),
    "masking-lstm-masked-mean": (SEQUENCES_PADDED, lambda x: x[:, -1, :1] + x[:, -2, 1:2],
                                 lambda: [Masking(), LSTM(3, return_sequences=True), GlobalAveragePooling1D(),
                                          Dense(1)], "adam", "mse"),
    "embedding-masked-mean-bce": (IDS_PADDED, lambda x: ((x > 0) & (x < 5)).sum(1, keepdims=True) >= 2,
                                  lambda: [Embedding(12, 4, mask_zero=True), GlobalAveragePooling1D(),
                                           Dense(1, activation="sigmoid")], "rmsprop", "binary_crossentropy"),
    "conv1d-mean-unmasked": (SEQUENCES, lambda x: x[:, :, 2].mean(1, keepdims=True),
                             lambda: [Conv1D(3, 2, activation="relu"), GlobalAveragePooling1D(), Dense(1)], "sgd",
                             "mse"),
    "dense-on-steps-masked": (IDS_PADDED, lambda x: (x[:, -1:] > 4).astype(np.float32),
                              lambda: [Embedding(12, 3, mask_zero=True), Dense(4, activation="relu"),
                                       Dense(3, activation="softmax"), LSTM(2), Dense(1, activation="sigmoid")],
                              "adam", "binary_crossentropy"),
    "reshape-backwards-loops-activation-head": (IMAGES, lambda x: np.argmax(x[:, 0, :3, 1], 1),
                                                lambda: [Reshape((14, 6)), GRU(3, go_backwards=True,
                                                                               return_sequences=True),
                                                         Activation("relu"), LSTM(2, go_backwards=True), Dense(3),
                                                         Activation("softmax")],
                                                "adam", "sparse_categorical_crossentropy"),
}


def _train(case, device, callbacks=()):
    x, target, layers, optimizer, loss = CASES[case]
    model = Sequential(layers(), input_shape=x.shape[1:], seed=3, device=device)
    model.compile(optimizer=optimizer, loss=loss)
    y = target(x)
    history = model.fit(x, y, epochs=1, batch_size=8, validation_data=(x[:6], y[:6]), callbacks=list(callbacks))
    return history, model.get_weights(), model.predict(x[:7])


@pytest.mark.parametrize("case", list(CASES))
def test_a_cuda_run_agrees_with_the_cpu_run(case, strict_device_arrays):
    cpu, gpu = _train(case, "cpu"), _train(case, "cuda")
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(gpu[0][key], cpu[0][key], rtol=2e-5, err_msg=key)
    for name in cpu[1]:
        np.testing.assert_allclose(gpu[1][name], cpu[1][name], rtol=1e-4, atol=2e-6, err_msg=name)
    np.testing.assert_allclose(gpu[2], cpu[2], rtol=1e-4, atol=2e-6)


@pytest.mark.parametrize("case", ["dense-mse-rmsprop-l2", "masked-through-activation-simple-rnns",
                                  "softmax-sparse-cce-sgd-clipnorm"])
def test_a_dataset_too_big_for_the_gpu_is_streamed_to_the_same_bytes(case, monkeypatch, strict_device_arrays):
    """With no room on the device (STREAM_BYTES = 0) the datasets stay on the host, each batch gathered into pinned
    buffers and copied: the run is the one that copied its dataset once, byte for byte."""
    from nnctl.nn import cudadata

    whole = _train(case, "cuda")
    monkeypatch.setattr(cudadata, "STREAM_BYTES", 0)
    x, target, layers, optimizer, loss = CASES[case]
    model = Sequential(layers(), input_shape=x.shape[1:], seed=3, device="cuda")
    model.compile(optimizer=optimizer, loss=loss)
    y = target(x)
    history = model.fit(x, y, epochs=1, batch_size=8, validation_data=(x[:6], y[:6]))
    streamed = history, model.get_weights(), model.predict(x[:7])
    assert all("staging" in copies for path in model._cuda_paths.values() for _, copies in path.data_copies)
    for key in ("loss", "val_loss"):
        np.testing.assert_array_equal(streamed[0][key], whole[0][key], err_msg=key)
    for name in whole[1]:
        np.testing.assert_array_equal(streamed[1][name], whole[1][name], err_msg=name)
    np.testing.assert_array_equal(streamed[2], whole[2])


def _residual():
    from nnctl.nn.functional import Input
    from nnctl.nn.layers import Add

    inputs = Input((6, 7, 2))
    a = Conv2D(3, 3, padding="same", activation="relu")(inputs)
    b = Conv2D(3, 3, padding="same")(a)
    x = Flatten()(Activation("relu")(Add()([a, b])))
    return inputs, Dense(3, activation="softmax")(x)


def _merges():
    """A node read by three others (their gradients summed), three Dense layers on the input, every merge."""
    from nnctl.nn.functional import Input
    from nnctl.nn.layers import Average, Concatenate, Maximum, Minimum, Multiply, Subtract

    inputs = Input((6,))
    a, b, c = Dense(4, activation="tanh")(inputs), Dense(4)(inputs), Dense(4, activation="relu")(inputs)
    mean = Average()([Subtract()([a, b]), Multiply()([a, b, c]), c])
    extremes = Maximum()([Minimum()([a, c]), b, Dense(4, activation="relu")(c)])  # c: relu zeros tie often
    return inputs, Dense(1)(Concatenate()([mean, a, extremes]))


def _sequences_joined():
    from nnctl.nn.functional import Input
    from nnctl.nn.layers import Concatenate

    inputs = Input((6, 3))
    steps = Concatenate(axis=1)([Conv1D(2, 1)(inputs), LSTM(2, return_sequences=True)(inputs)])
    return inputs, Dense(1)(Flatten()(steps))


GRAPHS = {  # name: (x, target of x, the graph's (inputs, outputs), optimizer, loss)
    "residual-add": (IMAGES, lambda x: np.argmax(x[:, 0, :3, 0], 1), _residual, "rmsprop",
                     "sparse_categorical_crossentropy"),
    "every-merge": (X, lambda x: x[:, :1] * x[:, 1:2], _merges, "adam", "mse"),
    "sequences-concatenated-in-time": (SEQUENCES, lambda x: x[:, -1, :1], _sequences_joined, "adam", "mse"),
}


@pytest.mark.parametrize("case", list(GRAPHS))
def test_a_graph_on_the_cuda_path_agrees_with_the_cpu(case, strict_device_arrays):
    from nnctl.nn.functional import Model

    x, target, graph, optimizer, loss = GRAPHS[case]
    y = target(x)
    fit_on_both(lambda device: Model(*graph(), seed=3, device=device), x, y, dict(optimizer=optimizer, loss=loss),
                validation=(x[:6], y[:6]), predict=x[:7])


class _EveryBatch(Callback):
    def __init__(self):
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1


def test_batch_callbacks_chunk_the_epoch_and_see_the_same_run():
    counter = _EveryBatch()
    whole, chunked = _train("csr-bce-adam", "cuda"), _train("csr-bce-adam", "cuda", [counter])
    assert counter.batches >= 2
    np.testing.assert_array_equal(whole[0]["loss"], chunked[0]["loss"])
    for name in whole[1]:
        np.testing.assert_array_equal(whole[1][name], chunked[1][name])


def test_what_the_cuda_path_cannot_run_is_named():
    model = Sequential([Dense(1)], input_shape=(6,), seed=0, device="cuda", dtype="float64")
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ArgumentError, match="device cuda: the CUDA backend trains in float32"):
        model.fit(X[:8], X[:8, :1], epochs=1, batch_size=8)


CONFIG = """\
name: gpu
seed: 4
data:
  dataset: {type: synthetic, kind: regression, samples: 48, features: 5}
model:
  layers:
    - {type: dense, units: 6, activation: relu}
    - {type: dense, units: 1}
loss: mse
optimizer: rmsprop
epochs: 2
batch_size: 16
device: DEVICE
"""


def test_the_command_line_trains_on_cuda_and_the_run_evaluates_on_the_cpu(tmp_path):
    runs = {}
    for device in ("cuda", "cpu"):
        config = tmp_path / f"{device}.yaml"
        config.write_text(CONFIG.replace("DEVICE", device))
        result = CliRunner().invoke(main, ["train", str(config), "--runs-dir", str(tmp_path / device), "-q"])
        assert result.exit_code == 0, result.output
        runs[device] = next((tmp_path / device / "gpu").glob("2*"))
    manifest = json.loads((runs["cuda"] / "manifest.json").read_text())
    assert manifest["device"] == "cuda"
    histories = [json.loads((runs[d] / "history.json").read_text()) for d in ("cuda", "cpu")]
    np.testing.assert_allclose(histories[0]["loss"], histories[1]["loss"], rtol=2e-5)
    result = CliRunner().invoke(main, ["evaluate", str(runs["cuda"])])
    assert result.exit_code == 0 and "loss" in result.output, result.output
    for device, says in (("cuda", True), ("auto", True), ("cpu", False)):  # the simulator stands in for a GPU
        config = tmp_path / f"check-{device}.yaml"
        config.write_text(CONFIG.replace("DEVICE", device))
        result = CliRunner().invoke(main, ["check", str(config)])
        assert result.exit_code == 0 and ("trains on cuda)" in result.output) == says, result.output


GRAPH_CONFIG = CONFIG.replace("""    - {type: dense, units: 6, activation: relu}
    - {type: dense, units: 1}
""", """    - {name: a, type: dense, units: 6, activation: relu}
    - {name: b, type: dense, units: 6}
    - {type: add, inputs: [a, b]}
    - {type: dense, units: 1}
""")


def test_a_graph_config_trains_on_cuda_from_the_command_line_and_what_it_cannot_run_is_refused_located(tmp_path):
    config = tmp_path / "graph.yaml"
    config.write_text(GRAPH_CONFIG.replace("DEVICE", "cuda"))
    result = CliRunner().invoke(main, ["check", str(config)])
    assert result.exit_code == 0 and "trains on cuda)" in result.output, result.output
    result = CliRunner().invoke(main, ["train", str(config), "--runs-dir", str(tmp_path / "runs"), "-q"])
    assert result.exit_code == 0, result.output
    run = next((tmp_path / "runs" / "gpu").glob("2*"))
    assert json.loads((run / "manifest.json").read_text())["device"] == "cuda"
    from nnctl.nn import cudapath

    with pytest.MonkeyPatch.context() as patch:  # (every shipped layer runs there: a reason stands in for one)
        patch.setattr(cudapath, "unsupported", lambda model: "a reason the model cannot run")
        result = CliRunner().invoke(main, ["check", str(config)])
    assert result.exit_code == 2, result.output
    assert "device: cannot run on cuda: a reason the model cannot run (allowed: cpu, auto)" in result.output
    assert f"{config}:" in result.output


def test_the_counter_based_dropout_kernel_matches_its_oracle():
    from nnctl.engine import cuda, reference

    x = RNG.standard_normal(300).astype(np.float32)
    y, mask = np.zeros_like(x), np.zeros_like(x)
    cuda.dropout_counter_forward(x, 12345, 7, 0.25, y, mask)
    want_mask = (reference.counter_uniform(12345, 7, 300) >= np.float32(0.25)) / np.float32(0.75)
    np.testing.assert_array_equal(mask, want_mask.astype(np.float32))
    np.testing.assert_array_equal(y, x * want_mask.astype(np.float32))


class _CounterUniforms:
    """Stands in for a CPU Dropout layer's generator: the GPU's counter-based uniforms for the current step, the
    draws of a step under `keys` in turn (a recurrent layer draws its recurrent mask, then its input mask)."""

    def __init__(self, model, *keys):
        self.model, self.keys, self.calls = model, keys, 0

    def random(self, size, dtype=np.float32):
        from nnctl.engine import reference

        key = self.keys[self.calls % len(self.keys)]
        self.calls += 1
        shape = (size,) if isinstance(size, int) else tuple(size)
        return reference.counter_uniform(key, self.model.optimizer.iterations, int(np.prod(shape))).reshape(shape)


DROPPED = {  # name: (x, y, layers), the dropout layer second; SpatialDropout draws one number per (sample, channel)
    "dropout": (X, X[:, :1] - X[:, 1:2], lambda: [Dense(6, activation="relu"), Dropout(0.5), Dense(1)]),
    "spatial-1d": (SEQUENCES, SEQUENCES[:, 0, :1], lambda: [Conv1D(4, 2, activation="relu"), SpatialDropout1D(0.5),
                                                           GlobalMaxPooling1D(), Dense(1)]),
    "spatial-2d": (IMAGES, IMAGES[:, 0, 0, :1], lambda: [Conv2D(3, 2), SpatialDropout2D(0.4), Flatten(), Dense(1)]),
    # The recurrent layers draw their recurrent mask, then their input mask (recurrent_dropout and dropout):
    "lstm-both": (SEQUENCES, SEQUENCES[:, -1, :1], lambda: [Conv1D(3, 1), LSTM(4, dropout=0.3, recurrent_dropout=0.4),
                                                           Dense(1)]),
    "gru-recurrent": (SEQUENCES, SEQUENCES[:, -1, :1], lambda: [Conv1D(3, 1), GRU(3, recurrent_dropout=0.5,
                                                                                  return_sequences=True), Flatten(),
                                                               Dense(1)]),
    "simple-rnn-both-backwards": (SEQUENCES, SEQUENCES[:, 0, :1],
                                  lambda: [Conv1D(3, 1), SimpleRNN(3, dropout=0.5, recurrent_dropout=0.3,
                                                                   go_backwards=True), Dense(1)]),
    "bidirectional-lstm-both": (SEQUENCES, SEQUENCES[:, -1, :1],
                                lambda: [Conv1D(3, 1), Bidirectional(LSTM(2, dropout=0.3, recurrent_dropout=0.3)),
                                         Dense(1)]),
    "gru-inputs": (SEQUENCES, SEQUENCES[:, -1, :1], lambda: [Conv1D(3, 1), GRU(3, dropout=0.4), Dense(1)]),
}


def _feed_gpu_uniforms(model, index):
    """Gives the CPU layer at `index` (each copy of a Bidirectional) the counter keys the GPU's op draws with, in
    the CPU layer's order of draws."""
    from nnctl.nn.cudaops_dropout import dropout_key
    from nnctl.nn.cudaops_recurrent import _subkey

    layer, key = model.layers[index], dropout_key(model, index)
    copies = [layer.forward_layer, layer.backward_layer] if hasattr(layer, "forward_layer") else [layer]
    if not hasattr(copies[0], "recurrent_dropout"):
        layer.rng = _CounterUniforms(model, key)
        return
    # Bidirectional's copies draw from the wrapper's generator, the forward copy first.
    layer.rng = _CounterUniforms(model, *(_subkey(key, part) for copy, inner in enumerate(copies)
                                          for part, rate in ((2 * copy, inner.recurrent_dropout),
                                                             (2 * copy + 1, inner.dropout)) if rate))


def _agrees_with_the_gpus_masks(x, y, layers, index):
    """Trains `layers` on the CUDA path and on the CPU, the CPU's dropping layer at `index` fed the GPU's uniforms:
    the same losses and weights."""
    runs = {}
    for device in ("cpu", "cuda"):
        model = Sequential(layers(), input_shape=x.shape[1:], seed=5, device=device)
        model.compile(optimizer="adam", loss="mse")
        if device == "cpu":
            _feed_gpu_uniforms(model, index)
        runs[device] = model.fit(x, y, epochs=2, batch_size=8)["loss"], model.get_weights()
    np.testing.assert_allclose(runs["cuda"][0], runs["cpu"][0], rtol=2e-5)
    for name in runs["cpu"][1]:
        np.testing.assert_allclose(runs["cuda"][1][name], runs["cpu"][1][name], rtol=1e-4, atol=2e-6, err_msg=name)


@pytest.mark.parametrize("case", list(DROPPED))
def test_dropout_on_the_cuda_path_trains_as_the_cpu_does_with_the_same_masks(case, strict_device_arrays):
    _agrees_with_the_gpus_masks(*DROPPED[case], index=1)


INPUT_DROPPED = {"dropout": (X, lambda: [Dropout(0.3), Dense(4, activation="relu"), Dense(1)]),
                 "spatial-1d": (SEQUENCES, lambda: [SpatialDropout1D(0.5), Conv1D(3, 2), GlobalMaxPooling1D(),
                                                    Dense(1)])}


@pytest.mark.parametrize("case", list(INPUT_DROPPED))
def test_a_dropout_reading_the_model_input_trains_as_the_cpu_does(case, strict_device_arrays):
    x, layers = INPUT_DROPPED[case]
    _agrees_with_the_gpus_masks(x, x.reshape(len(x), -1)[:, :1] * 2, layers, index=0)


def test_a_cuda_run_resumed_gives_the_bytes_of_one_never_stopped_and_resumes_on_the_cpu(tmp_path):
    config = tmp_path / "gpu.yaml"
    dropped = "    - {type: dense, units: 6, activation: relu}\n    - {type: dropout, rate: 0.25}\n"
    config.write_text(CONFIG.replace("DEVICE", "cuda").replace("epochs: 2", "epochs: 3")
                      .replace("    - {type: dense, units: 6, activation: relu}\n", dropped))

    def train(*args):
        result = CliRunner().invoke(main, ["train", *map(str, args), "-q"])
        assert result.exit_code == 0, result.output
        return result

    train(config, "--runs-dir", tmp_path / "whole")
    whole = next((tmp_path / "whole" / "gpu").glob("2*"))
    train(config, "--runs-dir", tmp_path / "part", "--set", "epochs=2")
    part = next((tmp_path / "part" / "gpu").glob("2*"))
    train("--resume", part, "--set", "epochs=3")  # on the GPU again: the dropout draws continue at step 6
    assert (part / "weights.safetensors").read_bytes() == (whole / "weights.safetensors").read_bytes()
    train(config, "--runs-dir", tmp_path / "cpu", "--set", "epochs=2")
    on_cpu = next((tmp_path / "cpu" / "gpu").glob("2*"))
    train("--resume", on_cpu, "--set", "epochs=3", "--device", "cpu")  # a GPU run continues on the CPU
    assert json.loads((on_cpu / "manifest.json").read_text())["status"] == "completed"
    assert len(json.loads((on_cpu / "history.json").read_text())["loss"]) == 3


def test_k_fold_folds_train_on_the_device_the_run_asks_for(tmp_path, monkeypatch):
    from nnctl.nn.cudapath import CudaPath

    calls = []
    train = CudaPath.train
    monkeypatch.setattr(CudaPath, "train", lambda self, *args: calls.append(1) or train(self, *args))
    config = tmp_path / "gpu.yaml"
    config.write_text(CONFIG.replace("DEVICE", "cuda").replace("epochs: 2", "epochs: 1")
                      .replace("  dataset:", "  validation: {kfold: 2}\n  dataset:"))
    result = CliRunner().invoke(main, ["train", str(config), "--runs-dir", str(tmp_path / "runs"), "-q"])
    assert result.exit_code == 0, result.output
    assert len(calls) >= 2  # an epoch of each fold (and the warm-up's) on the CUDA path
