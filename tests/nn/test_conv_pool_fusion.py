"""A shallow conv layer (ReLU or linear) and the max pooling after it run fused (nnctl/nn/layers/conv_pool.py):
the same outputs and gradients as the two layers run apart, central differences through the pair, the same bytes
on one or two threads, and the pairs that must not fuse."""

import numpy as np
import pytest

from nnctl.engine import settings
from nnctl.nn.layers import conv_pool
from nnctl.nn.layers import (Activation, AveragePooling2D, Conv1D, Conv2D, Dense, Flatten, MaxPooling1D,
                             MaxPooling2D)
from nnctl.nn.model import Sequential
from tests.nn.test_gradients import numeric_gradients

RNG = np.random.default_rng(11)


def image_stack(activation="relu", pool=None, first=None):
    """[first…] Conv2D(16, 3) → max pooling → Flatten → Dense 3: the conv plan is 'direct' (depth 9)."""
    return [*(first or []), Conv2D(16, 3, activation=activation), pool or MaxPooling2D(2), Flatten(), Dense(3)]


CASES = {
    "relu": (lambda: image_stack(), (10, 9, 1)),
    "linear": (lambda: image_stack("linear"), (10, 9, 1)),
    "odd, pool same": (lambda: image_stack(pool=MaxPooling2D(2, padding="same")), (9, 8, 1)),
    "overlapping windows": (lambda: image_stack(pool=MaxPooling2D(3, strides=2)), (11, 10, 1)),
    "strided, dilated conv": (lambda: [Conv2D(16, 3, strides=2, padding="same", activation="relu"),
                                       MaxPooling2D(2), Flatten(), Dense(3)], (13, 12, 1)),
    # a Dense per pixel first: the fused conv must also give its input gradient
    "needs dx": (lambda: image_stack(first=[Dense(1, activation="tanh")]), (10, 9, 2)),
    "conv1d": (lambda: [Conv1D(16, 5, padding="causal", activation="relu"), MaxPooling1D(3), Flatten(), Dense(3)],
               (17, 1)),
    # a 3×3 columns plan under 2×2 pooling: Winograd F(2×2, 3×3) forward (nnctl/engine/cpu/conv3x3.py) ...
    "columns plan": (lambda: [Conv2D(16, 3, activation="relu"), MaxPooling2D(2), Flatten(), Dense(3)], (10, 9, 3)),
    "columns plan, 'same'": (lambda: [Conv2D(16, 3, padding="same", activation="relu"), MaxPooling2D(2), Flatten(),
                                      Dense(3)], (10, 8, 3)),
    # ... or im2col + GEMM with NNCTL_WINOGRAD=0; plans that keep z: pooled chunk by chunk through the plan's hooks
    "columns plan, im2col": (lambda: [Conv2D(16, 3, activation="relu"), MaxPooling2D(2), Flatten(), Dense(3)],
                             (10, 9, 3)),
    "taps plan": (lambda: [Conv1D(8, 5, activation="relu"), MaxPooling1D(2), Flatten(), Dense(3)], (17, 24)),
    "columns, needs dx": (lambda: image_stack(first=[Conv2D(16, 3, activation="relu"), MaxPooling2D(2),
                                                     Conv2D(8, 2, activation="relu")]), (14, 14, 1)),
}
METHODS = {"columns plan": "columns", "columns plan, 'same'": "columns", "columns plan, im2col": "columns",
           "taps plan": "taps", "columns, needs dx": "direct"}
# The pooling reads every conv output here; elsewhere the conv computes only the rows and columns it reads
UNCROPPED = {"odd, pool same", "columns, needs dx", "columns plan, 'same'"}
# A pair that runs by Winograd (the tested one, or in "columns, needs dx" the model's third conv) rounds otherwise
# than the direct sums: close, not equal
WINOGRAD = {"columns plan", "columns plan, 'same'", "columns, needs dx"}


# One-channel pairs whose 2×2 windows tile the output: conv3x3_pool_forward/_weight_grad (the same sums in the same
# order as the general direct kernels: equal bytes)
ONE_CHANNEL = {"relu", "linear", "needs dx", "columns, needs dx"}


@pytest.fixture(autouse=True)
def im2col_case(request, monkeypatch):
    if "im2col" in request.node.name:
        monkeypatch.setattr(settings, "WINOGRAD", False)


def build(case, fused=True, dtype="float32", seed=5):
    layers, shape = CASES[case]
    model = Sequential(layers(), input_shape=shape, seed=seed, dtype=dtype)
    model.compile(optimizer="rmsprop", loss="mse")
    if not fused:
        for layer in model.layers:
            if hasattr(layer, "pool_after"):
                layer.pool_after = None
    return model


def data(case, n=12):
    shape = CASES[case][1]
    return RNG.standard_normal((n,) + shape).astype(np.float32), RNG.standard_normal((n, 3)).astype(np.float32)


@pytest.mark.parametrize("case", sorted(CASES))
def test_fused_pair_matches_the_two_layers(case):
    x, y = data(case)
    fused, apart = build(case), build(case, fused=False)
    loss_f, grads_f = fused.compute_gradients(x, y)
    loss_a, grads_a = apart.compute_gradients(x, y)
    conv = next(layer for layer in fused.layers if hasattr(layer, "pool_after") and layer.pool_after)
    assert conv.fused and not any(getattr(layer, "fused", False) for layer in apart.layers)
    assert conv.plan.method == METHODS.get(case, "direct")
    assert (conv.plan.crop is None) == (case in UNCROPPED)
    assert conv_pool.one_channel_3x3(conv) == (case in ONE_CHANNEL)
    assert any(conv_pool.winograd_fits(layer) for layer in fused.layers if getattr(layer, "fused", False)) == (
        case in WINOGRAD)
    if case in WINOGRAD:
        np.testing.assert_allclose(fused.predict(x), apart.predict(x), rtol=1e-5, atol=1e-6)
    else:
        np.testing.assert_array_equal(fused.predict(x), apart.predict(x))  # the same numbers, pooled in place
    assert loss_f == pytest.approx(loss_a, rel=1e-6)
    for name in grads_a:
        np.testing.assert_allclose(grads_f[name], grads_a[name], rtol=2e-5, atol=1e-6, err_msg=name)
    fused.fit(x, y, epochs=2, batch_size=5)
    apart.fit(x, y, epochs=2, batch_size=5)
    np.testing.assert_allclose(fused.store.values, apart.store.values, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("case", ["relu", "overlapping windows", "needs dx", "conv1d", "taps plan",
                                  "columns, needs dx", "columns plan", "columns plan, 'same'"])
def test_central_differences_through_the_fused_pair(case):
    model = build(case, dtype="float64", seed=3)
    x, y = (a.astype(np.float64) for a in data(case, n=4))
    model.store.values += np.random.default_rng(1).normal(0, 0.1, model.store.values.size)
    model.compute_gradients(x, y)
    assert next(layer for layer in model.layers if getattr(layer, "fused", False))
    analytic = model.store.grads.copy()
    numeric = numeric_gradients(model, x, y)
    assert np.abs(analytic).max() > 1e-6
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7)


def test_fused_training_gives_the_same_bytes_on_one_or_two_threads(monkeypatch):
    # MNIST's size, batch 64, on the chunk pool: a direct pair (6 chunks of 11 images), then a columns pair;
    # a Dense per pixel first, so both give dx too
    x = RNG.standard_normal((128, 28, 28, 2)).astype(np.float32)
    y = RNG.standard_normal((128, 3)).astype(np.float32)
    runs = []
    for threads in (1, 2):
        monkeypatch.setattr(settings, "thread_count", lambda threads=threads: threads)
        layers = image_stack(first=[Dense(1, activation="tanh"), Conv2D(16, 3, activation="relu"), MaxPooling2D(2)])
        model = Sequential(layers, input_shape=(28, 28, 2), seed=5)
        model.compile(optimizer="rmsprop", loss="mse")
        model.fit(x, y, epochs=2, batch_size=64)
        runs.append(model.store.values.copy())
    direct, columns = model.layers[1], model.layers[3]
    assert direct.fused and direct.plan.method == "direct" and len(direct.plan.chunks(64)) > 2
    assert columns.fused and columns.plan.method == "columns" and len(columns.plan.chunks(64)) > 2
    assert conv_pool.winograd_fits(columns)
    np.testing.assert_array_equal(runs[0], runs[1])


@pytest.mark.parametrize("layers", [
    [Conv2D(16, 3, activation="gelu"), MaxPooling2D(2)],            # max(gelu(z)) is not gelu(max(z))
    [Conv2D(16, 3, activation="relu"), AveragePooling2D(2)],
    [Conv2D(16, 3, activation="relu"), Activation("relu"), MaxPooling2D(2)],
], ids=["gelu", "average", "layer between"])
def test_pairs_that_do_not_fuse(layers):
    model = Sequential([*layers, Flatten(), Dense(2)], input_shape=(10, 9, 1), seed=0)
    model.compile(optimizer="sgd", loss="mse")
    model.compute_gradients(RNG.standard_normal((3, 10, 9, 1)), RNG.standard_normal((3, 2)))
    assert not layers[0].fused


def test_a_graph_runs_the_layers_apart():
    import nnctl

    inputs = nnctl.Input((10, 9, 1))
    conv = Conv2D(16, 3, activation="relu")
    outputs = Dense(2)(Flatten()(MaxPooling2D(2)(conv(inputs))))
    model = nnctl.Model(inputs, outputs)
    model.compile(optimizer="sgd", loss="mse")
    model.compute_gradients(RNG.standard_normal((3, 10, 9, 1)), RNG.standard_normal((3, 2)))
    assert conv.pool_after is None and not conv.fused
