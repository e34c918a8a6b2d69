"""BatchNormalization and LayerNormalization: hand-computed statistics, N-d inputs and axes against NumPy,
central-difference gradients through a real Sequential, frozen layers, Keras parameter counts, weights and
config round trips, argument errors, and PyTorch parity (skipped without torch)."""

import numpy as np
import pytest

from nnctl.config.schema import layer_spec
from nnctl.errors import ArgumentError, ShapeError
from nnctl.nn.layers import Dense, Flatten
from nnctl.nn.layers.normalization import BatchNormalization, LayerNormalization
from nnctl.nn.model import Sequential
from tests.nn.test_gradients import check_model

RNG = np.random.default_rng(13)


def _alone(layer, input_shape, dtype="float32"):
    """A built layer with a backend, asked for its input gradient (a model's first layer is not)."""
    Sequential([layer], input_shape=input_shape, seed=0, dtype=dtype).build()
    layer.needs_input_grad = True
    return layer


# ---- BatchNormalization: the numbers, by hand ---------------------------------------------------------

def test_batch_norm_training_and_inference_on_hand_computed_values():
    layer = _alone(BatchNormalization(momentum=0.9, epsilon=0.001), (2,))
    x = np.array([[1.0, 2.0], [3.0, 6.0]], np.float32)  # batch mean (2, 4), biased variance (1, 4)
    y = layer.forward(x, training=True)
    np.testing.assert_allclose(y, [[-1 / np.sqrt(1.001), -2 / np.sqrt(4.001)],
                                   [1 / np.sqrt(1.001), 2 / np.sqrt(4.001)]], rtol=1e-6)
    # moving = moving·0.9 + batch·0.1 from the initial zeros and ones
    np.testing.assert_allclose(layer.moving_mean.value, [0.2, 0.4], rtol=1e-6)
    np.testing.assert_allclose(layer.moving_variance.value, [1.0, 1.3], rtol=1e-6)
    layer.forward(x, training=True)  # a second step moves them again
    np.testing.assert_allclose(layer.moving_mean.value, [0.38, 0.76], rtol=1e-6)
    np.testing.assert_allclose(layer.moving_variance.value, [1.0, 1.57], rtol=1e-6)
    y = layer.forward(x, training=False)  # inference: the moving statistics, which it leaves alone
    np.testing.assert_allclose(y, (x - [0.38, 0.76]) / np.sqrt(np.array([1.0, 1.57]) + 0.001), rtol=1e-6)
    np.testing.assert_allclose(layer.moving_mean.value, [0.38, 0.76], rtol=1e-6)


def test_batch_norm_gamma_beta_and_backward_by_hand():
    layer = _alone(BatchNormalization(epsilon=0.0001), (1,))
    layer.gamma.value[...] = 2.0
    layer.beta.value[...] = 0.5
    x = np.array([[0.0], [2.0]], np.float32)  # mean 1, variance 1: x̂ = (−1, 1)/sqrt(1.0001)
    s = 1 / np.sqrt(1.0001)
    np.testing.assert_allclose(layer.forward(x, training=True), [[0.5 - 2 * s], [0.5 + 2 * s]], rtol=1e-6)
    dx = layer.backward(np.array([[1.0], [3.0]], np.float32))
    np.testing.assert_allclose(layer.beta.grad, [4.0])  # Σ dy
    np.testing.assert_allclose(layer.gamma.grad, [2 * s], rtol=1e-6)  # Σ dy·x̂ = (−1 + 3)·s
    # dx = gamma·s·(dy − mean(dy) − x̂·mean(dy·x̂)) = 2s·((1, 3) − 2 − (−s, s)·s)
    np.testing.assert_allclose(dx, 2 * s * (np.array([[1.0], [3.0]]) - 2 - np.array([[-s], [s]]) * s), rtol=1e-5)


# ---- N-d inputs and other axes against NumPy -----------------------------------------------------------

ND_CASES = [((6, 5), -1), ((4, 6, 3), -1), ((4, 6, 3), 1), ((3, 4, 5, 2), -1), ((3, 4, 5, 2), 2), ((3, 4, 5, 2), 1)]


def _broadcast(values, ndim, axes):
    shape = [1] * ndim
    for a, size in zip(axes, values.shape if values.ndim == len(axes) else (values.size,)):
        shape[a] = size
    return values.reshape(shape)


@pytest.mark.parametrize("shape, axis", ND_CASES, ids=[f"{len(s)}d-axis{a}" for s, a in ND_CASES])
def test_batch_norm_on_nd_inputs_matches_numpy(shape, axis):
    layer = _alone(BatchNormalization(axis=axis, momentum=0.8, epsilon=0.01), shape[1:], "float64")
    channels = shape[axis]
    layer.gamma.value[...] = RNG.standard_normal(channels)
    layer.beta.value[...] = RNG.standard_normal(channels)
    x = RNG.standard_normal(shape) * 3 + 1
    axis = axis % len(shape)
    others = tuple(a for a in range(len(shape)) if a != axis)
    mean, variance = x.mean(axis=others, keepdims=True), x.var(axis=others, keepdims=True)
    gamma, beta = (_broadcast(p.value, len(shape), [axis]) for p in (layer.gamma, layer.beta))
    y = layer.forward(x, training=True)
    assert y.shape == x.shape and y.flags.c_contiguous
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(variance + 0.01) * gamma + beta, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.moving_mean.value, 0.2 * mean.reshape(-1), rtol=1e-10)
    np.testing.assert_allclose(layer.moving_variance.value, 0.8 + 0.2 * variance.reshape(-1), rtol=1e-10)
    moving = _broadcast(layer.moving_mean.value, len(shape), [axis])
    moving_var = _broadcast(layer.moving_variance.value, len(shape), [axis])
    np.testing.assert_allclose(layer.forward(x, training=False), (x - moving) / np.sqrt(moving_var + 0.01) * gamma
                               + beta, rtol=1e-10, atol=1e-12)


LN_CASES = [((6, 5), -1), ((4, 6, 3), -1), ((4, 6, 3), 1), ((4, 6, 3), [1, 2]), ((3, 4, 5, 2), -1),
            ((3, 4, 5, 2), [-2, -1]), ((3, 4, 5, 2), [1, 3]), ((3, 4, 5, 2), 2)]


@pytest.mark.parametrize("shape, axis", LN_CASES, ids=[f"{len(s)}d-axis{a}" for s, a in LN_CASES])
def test_layer_norm_on_nd_inputs_matches_numpy(shape, axis):
    layer = _alone(LayerNormalization(axis=axis, epsilon=0.01), shape[1:], "float64")
    axes = sorted(a % len(shape) for a in (axis if isinstance(axis, list) else [axis]))
    assert layer.gamma.shape == tuple(shape[a] for a in axes)  # Keras 3: shaped like the normalized axes
    layer.gamma.value[...] = RNG.standard_normal(layer.gamma.shape)
    layer.beta.value[...] = RNG.standard_normal(layer.gamma.shape)
    x = RNG.standard_normal(shape) * 3 + 1
    mean, variance = x.mean(axis=tuple(axes), keepdims=True), x.var(axis=tuple(axes), keepdims=True)
    gamma, beta = (_broadcast(p.value, len(shape), axes) for p in (layer.gamma, layer.beta))
    for training in (True, False):  # no difference between the two
        np.testing.assert_allclose(layer.forward(x, training), (x - mean) / np.sqrt(variance + 0.01) * gamma + beta,
                                   rtol=1e-10, atol=1e-12)


# ---- gradients (float64 central differences through a real Sequential) -------------------------------

GRADIENT_CASES = [
    # Training-mode BatchNormalization: every sample's gradient goes through the batch statistics.
    ([Dense(4, activation="tanh"), BatchNormalization(), Dense(2)], (3,)),
    ([Dense(4), BatchNormalization(center=False, scale=False, momentum=0.5), Dense(2)], (3,)),
    ([BatchNormalization(gamma_regularizer="l2", beta_regularizer="l1"), Flatten(), Dense(2)], (3, 4)),
    ([Dense(3), BatchNormalization(axis=2), Flatten(), Dense(2)], (2, 3, 5)),
    ([Dense(3), BatchNormalization(axis=1), Flatten(), Dense(2)], (2, 3, 5)),
    # Frozen: inference mode, its input gradient only.
    ([Dense(4), BatchNormalization(trainable=False, moving_mean_initializer="random_normal",
                                   gamma_initializer="random_normal"), Dense(2)], (3,)),
    ([Dense(4, activation="tanh"), LayerNormalization(), Dense(2)], (3,)),
    ([Dense(4), LayerNormalization(axis=[1, 2], center=False), Flatten(), Dense(2)], (3, 2)),
    ([Dense(4), LayerNormalization(axis=1, scale=False, gamma_regularizer="l2"), Flatten(), Dense(2)], (3, 2)),
    ([LayerNormalization(axis=[1, 3], beta_regularizer="l2"), Flatten(), Dense(2)], (2, 3, 2)),
]


@pytest.mark.parametrize("layers, input_shape", GRADIENT_CASES, ids=range(len(GRADIENT_CASES)))
def test_gradients(layers, input_shape):
    x = RNG.standard_normal((5,) + input_shape)
    check_model(layers, input_shape, "mse", x, RNG.standard_normal((5, 2)))


# ---- frozen BatchNormalization (Keras 3: inference mode even while the model trains) ----------------

def test_a_frozen_batch_norm_runs_in_inference_mode_and_keeps_its_statistics():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((64, 5)) * 2 + 3).astype(np.float32)
    y = (x[:, 0] > 3).astype(np.float32)
    model = Sequential([Dense(4), BatchNormalization(trainable=False, moving_mean_initializer="random_normal"),
                        Dense(1, activation="sigmoid")], input_shape=(5,), seed=1)
    model.compile("rmsprop", "binary_crossentropy")
    summary = model.summary()
    assert summary["rows"][1]["params"] == 16 and summary["non_trainable_params"] == 16
    before = model.get_weights()
    model.fit(x, y, epochs=2, batch_size=16)
    after = model.get_weights()
    for name in ("gamma", "beta", "moving_mean", "moving_variance"):
        np.testing.assert_array_equal(after[f"batch_normalization/{name}"], before[f"batch_normalization/{name}"])
    assert not np.array_equal(after["dense/kernel"], before["dense/kernel"])  # trained through it
    bn, h = model.layers[1], rng.standard_normal((8, 4)).astype(np.float32)
    in_training = bn.forward(h, training=True).copy()  # the layer reuses its output buffer
    np.testing.assert_array_equal(in_training, bn.forward(h, training=False))
    moving = (h - after["batch_normalization/moving_mean"]) / np.sqrt(after["batch_normalization/moving_variance"]
                                                                      + 0.001)
    np.testing.assert_allclose(in_training, moving * after["batch_normalization/gamma"]
                               + after["batch_normalization/beta"], rtol=1e-5, atol=1e-6)


def test_a_trainable_batch_norm_learns_and_moves_its_statistics_during_fit():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((64, 5)) * 2 + 3).astype(np.float32)
    model = Sequential([BatchNormalization(), Dense(1)], input_shape=(5,), seed=1)
    model.compile("sgd", "mse")
    model.fit(x, x[:, :1], epochs=3, batch_size=16, shuffle=False)
    weights = model.get_weights()
    # 12 steps of momentum 0.99 from 0: the moving mean has gone 1 − 0.99¹² ≈ 11 % of the way to ~3.
    np.testing.assert_allclose(weights["batch_normalization/moving_mean"], 0.1136 * x.mean(axis=0), rtol=0.15)
    assert not np.array_equal(weights["batch_normalization/gamma"], np.ones(5, np.float32))


# ---- Keras parameter counts, weights and config ------------------------------------------------------

def test_keras_parameter_counts_and_weight_names():
    summary = Sequential([BatchNormalization()], input_shape=(28, 28, 64), seed=0).summary()
    assert (summary["total_params"], summary["non_trainable_params"]) == (256, 128)
    assert summary["trainable_params"] == 128
    model = Sequential([BatchNormalization(center=False), LayerNormalization(axis=[1, 2], scale=False)],
                       input_shape=(3, 4), seed=0)
    model.build()
    assert list(model.get_weights()) == ["batch_normalization/gamma", "batch_normalization/moving_mean",
                                         "batch_normalization/moving_variance", "layer_normalization/beta"]
    assert model.get_weights()["layer_normalization/beta"].shape == (3, 4)
    assert model.summary()["non_trainable_params"] == 8


def test_weights_round_trip_through_get_and_set_weights():
    x = RNG.standard_normal((16, 3, 4)).astype(np.float32)

    def model():
        m = Sequential([BatchNormalization(), LayerNormalization(), Flatten(), Dense(2)], input_shape=(3, 4), seed=5)
        m.compile("adam", "mse")
        return m

    trained = model()
    trained.fit(x, RNG.standard_normal((16, 2)).astype(np.float32), epochs=2, batch_size=4)
    copy = model()
    copy.set_weights(trained.get_weights())
    for name, value in trained.get_weights().items():
        np.testing.assert_array_equal(copy.get_weights()[name], value)
    np.testing.assert_array_equal(copy.predict(x), trained.predict(x))


@pytest.mark.parametrize("layer", [
    BatchNormalization(), BatchNormalization(axis=1, momentum=0.9, epsilon=1e-5, center=False,
                                             gamma_regularizer="l2", moving_variance_initializer="zeros",
                                             name="bn", trainable=False),
    LayerNormalization(), LayerNormalization(axis=[1, -1], epsilon=1e-6, scale=False, beta_initializer="ones"),
], ids=["bn", "bn-args", "ln", "ln-args"])
def test_config_round_trip_and_schema(layer):
    config = layer.get_config()
    assert type(layer)(**config).get_config() == config
    spec = layer_spec(layer.type_name, type(layer))
    parsed = spec.model_validate({"type": layer.type_name, **{k: v for k, v in config.items() if v is not None}})
    assert parsed.axis == config["axis"] and parsed.epsilon == config["epsilon"]
    defaults = spec.model_validate({"type": layer.type_name})
    assert (defaults.axis, defaults.epsilon, defaults.center, defaults.scale) == (-1, 0.001, True, True)


@pytest.mark.parametrize("make, message", [
    (lambda: BatchNormalization(momentum=1.0), "`momentum`"),
    (lambda: BatchNormalization(epsilon=0), "`epsilon`"),
    (lambda: BatchNormalization(axis=[1, 2]), "`axis`"),
    (lambda: BatchNormalization(center="yes"), "`center`"),
    (lambda: BatchNormalization(gamma_initializer="onez"), "onez"),
    (lambda: LayerNormalization(axis=[]), "`axis`"),
    (lambda: LayerNormalization(scale=1), "`scale`"),
    (lambda: LayerNormalization(beta_regularizer="l3"), "l3"),
])
def test_argument_errors_name_the_argument(make, message):
    with pytest.raises(Exception, match=message) as info:
        make()
    assert isinstance(info.value, (ArgumentError, ValueError))


@pytest.mark.parametrize("layer, input_shape, message", [
    (BatchNormalization(axis=0), (4,), "axis 0 is the batch"),
    (BatchNormalization(axis=3), (4, 2), "out of range"),
    (LayerNormalization(axis=[2, 1]), (4, 2), "increasing order"),
    (LayerNormalization(axis=[1, -2]), (4, 2), "distinct"),
])
def test_axis_errors_at_build_name_the_layer(layer, input_shape, message):
    with pytest.raises(ShapeError, match=message) as info:
        Sequential([Dense(3), layer], input_shape=input_shape, seed=0).build()
    assert "layer 1" in str(info.value)


def test_a_fit_resumed_from_a_checkpoint_gives_the_uninterrupted_bytes(tmp_path):
    from nnctl.nn import checkpoint
    from nnctl.nn.callbacks import History

    rng = np.random.default_rng(8)
    x = (rng.standard_normal((80, 4)) * 3 + 1).astype(np.float32)
    y = x[:, :1] * x[:, 1:2]

    def model():
        m = Sequential([Dense(6, activation="relu"), BatchNormalization(), LayerNormalization(), Dense(1)],
                       input_shape=(4,), seed=2)
        m.compile("rmsprop", "mse")
        return m

    whole = model()
    whole.fit(x, y, epochs=4, batch_size=16)
    first, history = model(), History()
    first.fit(x, y, epochs=2, batch_size=16, callbacks=[history])
    saved = checkpoint.load(checkpoint.capture(first, history).save(tmp_path / "checkpoint.safetensors"))
    resumed = model()
    checkpoint.restore(resumed, saved, History())
    resumed.fit(x, y, epochs=4, initial_epoch=2, batch_size=16)
    assert not np.array_equal(resumed.get_weights()["batch_normalization/moving_mean"], np.zeros(6, np.float32))
    for name, value in whole.get_weights().items():
        assert resumed.get_weights()[name].tobytes() == value.tobytes(), name


def test_weight_bytes_do_not_depend_on_the_thread_count(monkeypatch):
    from nnctl.engine import settings, threads

    monkeypatch.setattr(settings, "PARALLEL_MIN_MACS", 1)  # every call split when two threads are allowed
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((48, 8, 8, 64)) + 2).astype(np.float32)  # 1024 rows a batch: 4 chunks of 256
    y = rng.integers(0, 3, 48)
    results = []
    for count in ("1", "2", "1", "2"):
        monkeypatch.setenv("NNCTL_THREADS", count)
        assert threads.parts(16 * 8 * 8 * 64) == int(count)  # "2" takes the split kernels
        model = Sequential([BatchNormalization(), LayerNormalization(axis=[2, 3]), Flatten(),
                            Dense(3, activation="softmax")], input_shape=(8, 8, 64), seed=5)
        model.compile("rmsprop", "sparse_categorical_crossentropy")
        model.fit(x, y, epochs=2, batch_size=16)
        results.append(b"".join(w.tobytes() for w in model.get_weights().values()))
    assert len(set(results)) == 1


# ---- PyTorch parity ----------------------------------------------------------------------------------

def _torch_bn_parity(shape, torch_cls):
    torch = pytest.importorskip("torch")
    layer = _alone(BatchNormalization(momentum=0.9, epsilon=1e-3), shape[1:])
    channels = shape[-1]
    layer.gamma.value[...] = RNG.standard_normal(channels)
    layer.beta.value[...] = RNG.standard_normal(channels)
    x = (RNG.standard_normal(shape) * 2 + 1).astype(np.float32)
    dy = RNG.standard_normal(shape).astype(np.float32)
    bn = torch_cls(channels, eps=1e-3, momentum=0.1)  # PyTorch's momentum is Keras's 1 − momentum
    with torch.no_grad():
        bn.weight.copy_(torch.tensor(layer.gamma.value))
        bn.bias.copy_(torch.tensor(layer.beta.value))
    first = (0, len(shape) - 1, *range(1, len(shape) - 1))  # channels-last → channels-first
    back = (0, *range(2, len(shape)), 1)
    tx = torch.tensor(x).permute(first).contiguous().requires_grad_(True)
    ty = bn.train()(tx)
    (ty * torch.tensor(dy).permute(first)).sum().backward()
    y = layer.forward(x, training=True)
    dx = layer.backward(dy)
    np.testing.assert_allclose(y, ty.permute(back).detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(dx, tx.grad.permute(back).numpy(), atol=1e-5)
    np.testing.assert_allclose(layer.gamma.grad, bn.weight.grad.numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(layer.beta.grad, bn.bias.grad.numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(layer.moving_mean.value, bn.running_mean.numpy(), atol=1e-6)
    # PyTorch's running variance takes the unbiased batch variance, Keras's the biased one.
    count = x.size // channels
    unbiased = (bn.running_var.numpy() - 0.9) / 0.1
    np.testing.assert_allclose(layer.moving_variance.value, 0.9 + 0.1 * unbiased * (count - 1) / count, atol=1e-6)
    tx_eval = torch.tensor(x).permute(first).contiguous()
    with torch.no_grad():
        bn.running_var.copy_(torch.tensor(layer.moving_variance.value))
        ty_eval = bn.eval()(tx_eval)
    np.testing.assert_allclose(layer.forward(x, training=False), ty_eval.permute(back).numpy(), atol=1e-5)


@pytest.mark.parametrize("shape, torch_name", [((32, 7), "BatchNorm1d"), ((8, 10, 6), "BatchNorm1d"),
                                               ((4, 9, 7, 5), "BatchNorm2d")])
def test_batch_norm_matches_pytorch(shape, torch_name):
    torch = pytest.importorskip("torch")
    _torch_bn_parity(shape, getattr(torch.nn, torch_name))


@pytest.mark.parametrize("shape, axis", [((16, 12), -1), ((4, 10, 8), -1), ((3, 5, 6, 4), [2, 3])])
def test_layer_norm_matches_pytorch(shape, axis):
    torch = pytest.importorskip("torch")
    layer = _alone(LayerNormalization(axis=axis, epsilon=1e-3), shape[1:])
    layer.gamma.value[...] = RNG.standard_normal(layer.gamma.shape)
    layer.beta.value[...] = RNG.standard_normal(layer.gamma.shape)
    x = (RNG.standard_normal(shape) * 2 + 1).astype(np.float32)
    dy = RNG.standard_normal(shape).astype(np.float32)
    ln = torch.nn.LayerNorm(layer.gamma.shape, eps=1e-3)
    with torch.no_grad():
        ln.weight.copy_(torch.tensor(layer.gamma.value))
        ln.bias.copy_(torch.tensor(layer.beta.value))
    tx = torch.tensor(x).requires_grad_(True)
    ty = ln(tx)
    (ty * torch.tensor(dy)).sum().backward()
    np.testing.assert_allclose(layer.forward(x, training=True), ty.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(layer.backward(dy), tx.grad.numpy(), atol=1e-5)
    np.testing.assert_allclose(layer.gamma.grad, ln.weight.grad.numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(layer.beta.grad, ln.bias.grad.numpy(), rtol=1e-5, atol=1e-4)
