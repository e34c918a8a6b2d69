"""Pooling layers: Keras's output shapes and arguments, central-difference gradients through a Sequential, and
PyTorch parity forward and backward (skipped without torch)."""

import numpy as np
import pytest

from nnctl.config.schema import layer_spec
from nnctl.engine import reference_pooling as reference
from nnctl.engine.backend import get_backend
from nnctl.errors import ArgumentError, ShapeError
from nnctl.nn.layers import Dense, Flatten
from nnctl.nn.model import Sequential
from nnctl.nn.layers.pooling import (AveragePooling1D, AveragePooling2D, GlobalAveragePooling1D,
                                     GlobalAveragePooling2D, GlobalMaxPooling1D, GlobalMaxPooling2D, MaxPooling1D,
                                     MaxPooling2D, pooled_size)
from tests.nn.test_gradients import check_model

WINDOWED = [MaxPooling1D, AveragePooling1D, MaxPooling2D, AveragePooling2D]
GLOBAL = [GlobalMaxPooling1D, GlobalAveragePooling1D, GlobalMaxPooling2D, GlobalAveragePooling2D]


def _keras_length(size, pool, stride, padding):
    """Keras's compute_pooling_output_shape, per axis."""
    return (size - pool) // stride + 1 if padding == "valid" else (size - 1) // stride + 1


def _run(layer, x, dy=None):
    """Builds a layer alone and runs it forward (and backward with `dy`), as a model would."""
    layer.backend, layer.dtype = get_backend("cpu"), x.dtype.type
    layer.name = layer.name or layer.type_name
    layer.build(x.shape[1:])
    y = layer.forward(x, training=True).copy()
    return y if dy is None else (y, layer.backward(dy).copy())


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("cls", WINDOWED)
def test_output_shapes_follow_keras(cls, padding):
    rank = cls.rank
    checked = 0
    for size in range(1, 10):
        for pool in range(1, 5):
            for stride in range(1, 4):
                sizes = (size, size + 2)[:rank]
                layer = cls(pool_size=pool, strides=stride, padding=padding)
                expected = tuple(_keras_length(s, pool, stride, padding) for s in sizes)
                if min(expected) <= 0:
                    with pytest.raises(ShapeError, match=rf"{cls.type_name} `.*\({size}, .*too small"):
                        layer.compute_output_shape(sizes + (3,))
                    continue
                assert layer.compute_output_shape(sizes + (3,)) == expected + (3,)
                checked += 1
    assert checked > 80


def test_same_padding_puts_the_odd_cell_after():
    assert pooled_size(7, 4, 2, "same") == (4, 1)   # pad_total = 3·2 + 4 − 7 = 3: one before, two after
    assert pooled_size(5, 2, 2, "same") == (3, 0)   # pad_total 1: after
    assert pooled_size(6, 2, 2, "same") == (3, 0)
    assert pooled_size(5, 1, 3, "same") == (2, 0)   # strides > pool need no padding
    assert pooled_size(3, 4, 1, "valid") == (0, 0)


@pytest.mark.parametrize("cls", GLOBAL)
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_output_shapes(cls, keepdims):
    shape = (5, 4, 3)[-(cls.rank + 1):]
    expected = (1,) * cls.rank + (3,) if keepdims else (3,)
    assert cls(keepdims=keepdims).compute_output_shape(shape) == expected


@pytest.mark.parametrize("cls", WINDOWED + GLOBAL)
def test_wrong_input_rank_is_a_shape_error(cls):
    wrong = (4, 4, 4, 2) if cls.rank == 2 else (4, 4, 2)
    with pytest.raises(ShapeError, match="takes inputs of shape"):
        cls().compute_output_shape(wrong)


def test_defaults_and_config_round_trip():
    assert MaxPooling2D().get_config() == {"pool_size": [2, 2], "strides": [2, 2], "padding": "valid",
                                           "data_format": "channels_last", "name": None}
    layer = AveragePooling2D(pool_size=[3, 2], strides=1, padding="same", name="pool", trainable=False)
    config = layer.get_config()
    assert config["pool_size"] == [3, 2] and config["strides"] == [1, 1] and config["trainable"] is False
    assert AveragePooling2D(**config).get_config() == config
    assert MaxPooling1D(pool_size=5).get_config()["strides"] == [5]  # strides default to pool_size
    config = GlobalMaxPooling1D(keepdims=True).get_config()
    assert config == {"data_format": "channels_last", "keepdims": True, "name": None}
    assert GlobalMaxPooling1D(**config).get_config() == config


def test_too_small_input_in_a_model_names_the_layer():
    with pytest.raises(ShapeError, match=r"max_pooling2d `max_pooling2d`.*\(1, 5, 3\).*pool_size \[2, 2\]"):
        Sequential([MaxPooling2D()], input_shape=(1, 5, 3), seed=0).build()


@pytest.mark.parametrize("cls", WINDOWED + GLOBAL)
def test_derived_schema_has_keras_defaults(cls):
    parsed = layer_spec(cls.type_name, cls).model_validate({"type": cls.type_name})
    assert parsed.data_format == "channels_last"
    if cls in GLOBAL:
        assert parsed.keepdims is False
        return
    assert parsed.pool_size == ([2, 2] if cls.rank == 2 else 2) and parsed.strides is None
    assert parsed.padding == "valid"
    spec = layer_spec(cls.type_name, cls)
    parsed = spec.model_validate({"type": cls.type_name, "pool_size": 3, "strides": [1] * cls.rank})
    layer = cls(**parsed.model_dump(exclude={"type", "inputs"}))
    assert layer.pool_size == (3,) * cls.rank and layer.strides == (1,) * cls.rank


@pytest.mark.parametrize("arguments, named", [
    ({"pool_size": 0}, "pool_size"), ({"pool_size": [2, 2, 2]}, "pool_size"), ({"pool_size": 2.5}, "pool_size"),
    ({"strides": [1]}, "strides"), ({"strides": True}, "strides"), ({"padding": "full"}, "padding"),
    ({"data_format": "channels_first"}, "data_format"),
])
def test_bad_arguments_are_named(arguments, named):
    with pytest.raises(ArgumentError, match=f"`{named}`"):
        MaxPooling2D(**arguments)


def test_bad_global_arguments_are_named():
    with pytest.raises(ArgumentError, match="`keepdims`"):
        GlobalAveragePooling2D(keepdims="yes")
    with pytest.raises(ArgumentError, match="`data_format`"):
        GlobalMaxPooling1D(data_format="channels_first")


RNG = np.random.default_rng(5)
GRADIENT_CASES = [
    (MaxPooling2D(), (4, 6, 2)),
    (MaxPooling2D(pool_size=3, strides=2, padding="same"), (5, 6, 2)),
    (MaxPooling2D(pool_size=[2, 3], strides=1), (4, 5, 2)),  # overlapping windows add their gradients
    (AveragePooling2D(), (5, 4, 2)),
    (AveragePooling2D(pool_size=3, strides=2, padding="same"), (5, 6, 2)),
    (AveragePooling2D(pool_size=[3, 2], strides=[1, 2], padding="same"), (4, 5, 2)),
    (MaxPooling1D(), (7, 2)),
    (MaxPooling1D(pool_size=3, strides=2, padding="same"), (8, 2)),
    (AveragePooling1D(pool_size=3, strides=1), (6, 2)),
    (AveragePooling1D(pool_size=4, strides=3, padding="same"), (7, 2)),
    (GlobalMaxPooling1D(), (6, 2)),
    (GlobalAveragePooling1D(keepdims=True), (6, 2)),
    (GlobalMaxPooling2D(keepdims=True), (3, 4, 2)),
    (GlobalAveragePooling2D(), (3, 4, 2)),
]


@pytest.mark.parametrize("layer, shape", GRADIENT_CASES, ids=[f"{l.type_name}-{s}" for l, s in GRADIENT_CASES])
def test_gradients(layer, shape):
    # A Dense before the pooling layer checks the pooling input gradient too; random float64 inputs have no
    # ties, where max pooling is not differentiable.
    x = RNG.standard_normal((3,) + shape)
    check_model([Dense(3), layer, Flatten(), Dense(2)], shape, "mse", x, RNG.standard_normal((3, 2)))


def test_training_through_pooling_is_byte_reproducible():
    rng = np.random.default_rng(8)
    x, y = rng.standard_normal((40, 9, 4)).astype(np.float32), rng.integers(0, 3, 40)

    def train():
        model = Sequential([Dense(6, activation="relu"), MaxPooling1D(3, strides=2, padding="same"),
                            AveragePooling1D(2), GlobalMaxPooling1D(), Dense(3, activation="softmax")],
                           input_shape=(9, 4), seed=2)
        model.compile("rmsprop", "sparse_categorical_crossentropy")
        history = model.fit(x, y, epochs=3, batch_size=8)
        return history["loss"], model.get_weights()

    (loss1, w1), (loss2, w2) = train(), train()
    assert loss1 == loss2 and loss1[-1] < loss1[0]
    assert all(w1[name].tobytes() == w2[name].tobytes() for name in w1)


@pytest.mark.parametrize("cls", WINDOWED + GLOBAL)
def test_bytes_do_not_depend_on_the_thread_count(cls, monkeypatch):
    """Chunks of images pooled on 1 or 2 threads (nnctl/engine/chunks.py) give the same bytes, ties and all."""
    from nnctl.nn.layers import pooling

    monkeypatch.setattr(pooling, "POOL_MIN_VALUES", 0)
    rng = np.random.default_rng(11)
    x = rng.integers(-3, 4, (13,) + ((19, 12, 5) if cls.rank == 2 else (19, 7))).astype(np.float32)  # many ties
    dy = rng.standard_normal((13,) + cls().compute_output_shape(x.shape[1:])).astype(np.float32)
    results = []
    for threads in ("1", "2"):
        monkeypatch.setenv("NNCTL_THREADS", threads)
        y, dx = _run(cls(), x, dy)
        results.append(y.tobytes() + dx.tobytes())
    assert results[0] == results[1]


def test_first_layer_skips_the_input_gradient():
    layer = MaxPooling2D()
    x = RNG.standard_normal((2, 4, 4, 3)).astype(np.float32)
    _run(layer, x)
    layer.needs_input_grad = False
    assert layer.backward(np.ones((2, 2, 2, 3), np.float32)) is None


def test_average_same_padding_against_oracle():
    # PyTorch pads symmetrically, TF (and Keras, and nnctl) put the odd cell after, so 'same' average
    # pooling is checked against the NumPy oracle instead of torch.
    x = RNG.standard_normal((2, 7, 6, 3)).astype(np.float32)
    y = _run(AveragePooling2D(pool_size=[4, 3], strides=[2, 2], padding="same"), x)
    expected = np.empty((2, 4, 3, 3), np.float32)
    reference.average_pool2d_forward(x, 4, 3, 2, 2, 1, 0, expected)
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)


# ---- PyTorch parity --------------------------------------------------------------------------------------
def _torch_pool(torch, cls, config, x):
    """The torch twin of a layer on a channels-last tensor; 'same' max pooling pads with −inf explicitly."""
    F = torch.nn.functional
    if cls in GLOBAL:
        axes = tuple(range(1, cls.rank + 1))
        # max_pool over the whole input picks the first maximum, as nnctl does (amax would share ties).
        full = x.permute(0, cls.rank + 1, *axes)
        if cls in (GlobalMaxPooling1D, GlobalMaxPooling2D):
            pooled = (F.max_pool1d if cls.rank == 1 else F.max_pool2d)(full, full.shape[2:])
        else:
            pooled = full.mean(dim=tuple(range(2, cls.rank + 2)), keepdim=True)
        return pooled.permute(0, *range(2, cls.rank + 2), 1).reshape(x.shape[0], -1)
    rank = cls.rank
    pool, strides = [config["pool_size"]] * rank, [config["strides"]] * rank
    xc = x.permute(0, rank + 1, *range(1, rank + 1))  # channels first
    if config["padding"] == "same":
        pads = []
        for axis in reversed(range(rank)):  # F.pad lists the last axis first
            out, before = pooled_size(x.shape[1 + axis], pool[axis], strides[axis], "same")
            total = max((out - 1) * strides[axis] + pool[axis] - x.shape[1 + axis], 0)
            pads += [before, total - before]
        xc = F.pad(xc, pads, value=-float("inf"))
    if cls in (MaxPooling1D, MaxPooling2D):
        yc = (F.max_pool1d if rank == 1 else F.max_pool2d)(xc, pool, strides)
    else:
        yc = (F.avg_pool1d if rank == 1 else F.avg_pool2d)(xc, pool, strides)
    return yc.permute(0, *range(2, rank + 2), 1)


PARITY_CASES = [
    (MaxPooling2D, {"pool_size": 2, "strides": 2, "padding": "valid"}, (8, 26, 26, 16)),
    (MaxPooling2D, {"pool_size": 3, "strides": 2, "padding": "valid"}, (4, 11, 11, 8)),
    (MaxPooling2D, {"pool_size": 3, "strides": 2, "padding": "same"}, (4, 10, 9, 8)),
    (MaxPooling2D, {"pool_size": 2, "strides": 1, "padding": "same"}, (4, 7, 7, 5)),
    (AveragePooling2D, {"pool_size": 2, "strides": 2, "padding": "valid"}, (8, 13, 13, 16)),
    (AveragePooling2D, {"pool_size": 3, "strides": 1, "padding": "valid"}, (4, 9, 7, 6)),
    (MaxPooling1D, {"pool_size": 5, "strides": 5, "padding": "valid"}, (4, 494, 32)),
    (MaxPooling1D, {"pool_size": 3, "strides": 2, "padding": "same"}, (4, 20, 6)),
    (AveragePooling1D, {"pool_size": 4, "strides": 3, "padding": "valid"}, (4, 30, 6)),
    (GlobalMaxPooling1D, {}, (4, 488, 32)),
    (GlobalAveragePooling1D, {}, (4, 50, 16)),
    (GlobalMaxPooling2D, {}, (4, 5, 6, 16)),
    (GlobalAveragePooling2D, {}, (4, 5, 6, 16)),
]


@pytest.mark.parametrize("cls, config, shape", PARITY_CASES,
                         ids=[f"{c.type_name}-{s}-{k.get('padding', '')}" for c, k, s in PARITY_CASES])
def test_matches_pytorch_forward_and_backward(cls, config, shape):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    x = rng.standard_normal(shape).astype(np.float32)
    y, dx, y_torch, dx_torch = _both_sides(torch, cls, config, x, rng)
    np.testing.assert_allclose(y, y_torch, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dx, dx_torch, rtol=1e-6, atol=1e-6)


def _both_sides(torch, cls, config, x, rng):
    """(y, dx) of our layer and of PyTorch's pooling on the same x and the same random upstream gradient."""
    layer = cls(**config)
    y = _run(layer, x)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = layer.backward(dy)
    xt = torch.tensor(x, requires_grad=True)
    yt = _torch_pool(torch, cls, config, xt)
    yt.backward(torch.tensor(dy).reshape(yt.shape))
    return y, dx, yt.detach().numpy().reshape(y.shape), xt.grad.numpy()


@pytest.mark.parametrize("cls, config", [(MaxPooling2D, {"pool_size": 3, "strides": 1, "padding": "valid"}),
                                         (MaxPooling1D, {"pool_size": 4, "strides": 2, "padding": "valid"}),
                                         (GlobalMaxPooling2D, {}), (GlobalMaxPooling1D, {})])
def test_ties_go_to_the_first_maximum_as_in_pytorch(cls, config):
    # Few distinct values (as after a ReLU): the gradient must land where PyTorch's does, on one cell.
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(12)
    shape = (3, 6, 4) if cls.rank == 1 else (3, 6, 7, 4)
    x = rng.integers(0, 3, shape).astype(np.float32)
    y, dx, y_torch, dx_torch = _both_sides(torch, cls, config, x, rng)
    np.testing.assert_array_equal(y, y_torch)
    np.testing.assert_array_equal(dx, dx_torch)

