"""Conv1D and Conv2D: arguments and errors as in Keras, shapes and parameter counts, central-difference
gradients through a real Sequential, PyTorch parity (forward, input and kernel gradients), thread bytes."""

import numpy as np
import pytest

from nnctl.config.schema import layer_spec
from nnctl.errors import ArgumentError, ShapeError
from nnctl.nn.layers import Dense, Flatten
from nnctl.nn.layers.conv import Conv1D, Conv2D
from nnctl.nn.model import Sequential
from tests.nn.test_gradients import check_model

RNG = np.random.default_rng(11)


def test_keras_parameter_counts():
    # The book's MNIST convnet without its pooling layers (they have no weights): each conv on the shape the
    # pooling gives it. Keras: 320 + 18,496 + 36,928 + 36,928 + 650 = 93,322.
    counts = [Sequential([layer], input_shape=shape, seed=0).summary()["total_params"] for layer, shape in [
        (Conv2D(32, 3, activation="relu"), (28, 28, 1)), (Conv2D(64, 3, activation="relu"), (13, 13, 32)),
        (Conv2D(64, 3, activation="relu"), (5, 5, 64)), (Dense(64, activation="relu"), (576,)),
        (Dense(10, activation="softmax"), (64,))]]
    assert counts == [320, 18496, 36928, 36928, 650] and sum(counts) == 93322
    model = Sequential([Conv1D(32, 7, activation="relu")], input_shape=(500, 128), seed=0)
    assert model.summary()["total_params"] == 28704
    assert model.layers[0].output_shape == (494, 32)


def test_the_books_models_count_as_in_keras():
    from nnctl.nn.layers.embedding import Embedding
    from nnctl.nn.layers.pooling import GlobalMaxPooling1D, MaxPooling1D, MaxPooling2D

    mnist = Sequential([Conv2D(32, 3, activation="relu"), MaxPooling2D(2), Conv2D(64, 3, activation="relu"),
                        MaxPooling2D(2), Conv2D(64, 3, activation="relu"), Flatten(), Dense(64, activation="relu"),
                        Dense(10, activation="softmax")], input_shape=(28, 28, 1), seed=0)
    assert mnist.summary()["total_params"] == 93322
    imdb = Sequential([Embedding(10000, 128), Conv1D(32, 7, activation="relu"), MaxPooling1D(5),
                       Conv1D(32, 7, activation="relu"), GlobalMaxPooling1D(), Dense(1)], input_shape=(500,), seed=0)
    assert imdb.summary()["total_params"] == 1315937


@pytest.mark.parametrize("layer, in_shape, out_shape", [
    (Conv2D(4, 3), (28, 28, 1), (26, 26, 4)),
    (Conv2D(4, (3, 2), strides=2, padding="same"), (7, 6, 2), (4, 3, 4)),
    (Conv2D(4, 4, padding="same"), (6, 6, 2), (6, 6, 4)),
    (Conv2D(4, 3, dilation_rate=2), (9, 8, 2), (5, 4, 4)),
    (Conv1D(3, 5, padding="causal", dilation_rate=2), (20, 2), (20, 3)),
    (Conv1D(3, 5, strides=3), (20, 2), (6, 3)),
])
def test_output_shapes_and_weight_layouts(layer, in_shape, out_shape):
    # Flatten last: Sequential.predict reads an activated head's logits as (n, units) (a model.py limit).
    model = Sequential([layer, Flatten()], input_shape=in_shape, seed=0)
    model.compile("sgd", "mse")
    assert layer.output_shape == out_shape
    weights = model.get_weights()
    name = layer.type_name
    assert weights[f"{name}/kernel"].shape == tuple(layer.kernel_size) + (in_shape[-1], layer.filters)
    assert weights[f"{name}/bias"].shape == (layer.filters,)
    y = model.predict(RNG.standard_normal((3,) + in_shape).astype(np.float32))
    assert y.shape == (3, int(np.prod(out_shape)))


def test_glorot_uniform_uses_keras_fans_for_conv_kernels():
    # Keras: fan_in = kh·kw·in, fan_out = kh·kw·filters; limit sqrt(6 / (fan_in + fan_out)).
    model = Sequential([Conv2D(32, 3)], input_shape=(28, 28, 1), seed=0)
    model.build()
    kernel = model.get_weights()["conv2d/kernel"]
    limit = np.sqrt(6 / (9 * 1 + 9 * 32))
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.95 * limit


@pytest.mark.parametrize("make, message", [
    (lambda: Conv2D(0, 3), "`filters`"),
    (lambda: Conv2D(4, [3, 3, 3]), "`kernel_size`"),
    (lambda: Conv2D(4, 3, padding="causal"), "`padding`"),
    (lambda: Conv1D(4, 3, padding="full"), "`padding`"),
    (lambda: Conv2D(4, 3, strides=2, dilation_rate=2), "`strides > 1`"),
    (lambda: Conv2D(4, 3, data_format="channels_first"), "`data_format`"),
    (lambda: Conv1D(4, 3, use_bias="yes"), "`use_bias`"),
])
def test_bad_arguments_are_argument_errors(make, message):
    with pytest.raises(ArgumentError, match=message):
        make()


def test_too_small_inputs_are_shape_errors_naming_the_layer():
    with pytest.raises(ShapeError, match=r"conv2d `conv2d`.*\(4, 4, 1\).*kernel_size \[5, 5\]"):
        Sequential([Conv2D(2, 5)], input_shape=(4, 4, 1), seed=0).build()
    with pytest.raises(ShapeError, match="length, channels"):
        Sequential([Conv1D(2, 3)], input_shape=(4, 4, 1), seed=0).build()


@pytest.mark.parametrize("cls", [Conv1D, Conv2D])
def test_config_round_trip_and_derived_schema(cls):
    layer = cls(8, 3, strides=2, padding="same", activation="relu", kernel_regularizer="l2", name="c")
    config = layer.get_config()
    assert cls(**config).get_config() == config
    spec = layer_spec(cls.type_name, cls)
    parsed = spec.model_validate({"type": cls.type_name, "filters": 8, "kernel_size": 3})
    assert parsed.padding == "valid" and parsed.strides == 1 and parsed.kernel_initializer == "glorot_uniform"


GRADIENT_CASES = [
    ([Conv2D(3, 3, activation="tanh")], (5, 5, 1)),  # direct path
    ([Conv2D(3, (2, 3), strides=(2, 1), padding="same", activation="relu",
             kernel_regularizer={"type": "l1_l2", "l1": 0.01, "l2": 0.02}, bias_regularizer="l2"),
      Conv2D(2, 2, dilation_rate=2, padding="same", activation="sigmoid")], (6, 5, 3)),
    ([Conv2D(2, 4, padding="same", use_bias=False), Conv2D(3, 3, strides=2, activation="elu")], (6, 6, 2)),
    ([Conv1D(3, 3, padding="causal", dilation_rate=2, activation="relu"), Conv1D(2, 2, strides=2)], (9, 4)),
    ([Conv1D(4, 4, padding="same", activation="gelu"), Conv1D(2, 3)], (7, 2)),
]


@pytest.mark.parametrize("layers, in_shape", GRADIENT_CASES)
def test_conv_gradients(layers, in_shape):
    layers = layers + [Flatten(), Dense(2)]
    check_model(layers, in_shape, "mse", RNG.standard_normal((3,) + in_shape), RNG.standard_normal((3, 2)))


@pytest.mark.parametrize("method", ["direct", "columns", "taps"])
def test_each_method_gives_the_same_gradients(method, monkeypatch):
    from nnctl.engine.convolution import ConvPlan

    monkeypatch.setattr(ConvPlan, "_method", lambda self, *args: method)
    layers = [Conv2D(3, 3, padding="same", activation="relu"), Conv2D(2, (2, 3), dilation_rate=(1, 2)),
              Flatten(), Dense(2)]
    check_model(layers, (5, 6, 2), "mse", RNG.standard_normal((3, 5, 6, 2)), RNG.standard_normal((3, 2)))


def test_conv_output_fuses_with_the_loss():
    # One output position, so the head's (n·positions, filters) logits are the model's (n, units); see the
    # report about Sequential reading N-d heads' logits.
    layers = [Conv1D(3, 2, activation="relu"), Conv1D(2, 4, activation="sigmoid")]
    check_model(layers, (5, 2), "binary_crossentropy", RNG.standard_normal((4, 5, 2)),
                (RNG.random((4, 1, 2)) < 0.5).astype(float))


def test_a_frozen_conv_layer_keeps_its_weights_and_passes_gradients_down():
    x = RNG.standard_normal((32, 8, 8, 2)).astype(np.float32)
    y = RNG.integers(0, 2, 32)
    model = Sequential([Conv2D(3, 3, activation="relu"), Conv2D(4, 3, activation="relu", trainable=False),
                        Flatten(), Dense(2, activation="softmax")], input_shape=(8, 8, 2), seed=2)
    model.compile("rmsprop", "sparse_categorical_crossentropy")
    assert model.summary()["non_trainable_params"] == 3 * 3 * 3 * 4 + 4
    before = model.get_weights()
    model.fit(x, y, epochs=1, batch_size=8)
    after = model.get_weights()
    np.testing.assert_array_equal(after["conv2d_1/kernel"], before["conv2d_1/kernel"])
    assert not np.array_equal(after["conv2d/kernel"], before["conv2d/kernel"])


def test_weight_bytes_do_not_depend_on_the_thread_count(monkeypatch):
    from nnctl.engine import convolution

    monkeypatch.setattr(convolution, "POOL_MIN_MACS", 0)
    monkeypatch.setattr(convolution, "MIN_CHUNK_MACS", 1)  # several chunks per batch
    x = RNG.random((40, 10, 10, 1)).astype(np.float32)
    y = RNG.integers(0, 3, 40)
    results = []
    for threads in ("1", "2", "1", "2"):
        monkeypatch.setenv("NNCTL_THREADS", threads)
        model = Sequential([Conv2D(4, 3, activation="relu"), Conv2D(6, 3, activation="relu"), Flatten(),
                            Dense(3, activation="softmax")], input_shape=(10, 10, 1), seed=5)
        model.compile("rmsprop", "sparse_categorical_crossentropy")
        model.fit(x, y, epochs=2, batch_size=16)
        assert len(model.layers[1].plan.chunks(16)) > 1
        results.append(b"".join(w.tobytes() for w in model.get_weights().values()))
    assert len(set(results)) == 1

