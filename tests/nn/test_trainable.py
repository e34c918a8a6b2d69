"""`trainable: false`: a frozen layer keeps its weights, passes gradients through, has no optimizer slot,
and is saved and counted as non-trainable."""

import numpy as np

from nnctl.nn.layers import Dense
from nnctl.nn.model import Sequential


def _data(rows=64):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, 5)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.float32)


def _model(freeze_middle: bool):
    model = Sequential([Dense(6, activation="relu"), Dense(4, activation="tanh", trainable=not freeze_middle),
                        Dense(1, activation="sigmoid")], input_shape=(5,), seed=3)
    model.compile("rmsprop", "binary_crossentropy")
    return model


def test_a_frozen_layer_keeps_its_weights_while_the_layers_around_it_learn():
    model = _model(freeze_middle=True)
    before = model.get_weights()
    model.fit(*_data(), epochs=2, batch_size=16)
    after = model.get_weights()
    for name in ("dense_1/kernel", "dense_1/bias"):
        np.testing.assert_array_equal(after[name], before[name])
    for name in ("dense/kernel", "dense_2/kernel"):  # the layer below still gets a gradient through it
        assert not np.array_equal(after[name], before[name])


def test_frozen_weights_are_counted_saved_and_kept_out_of_the_optimizer():
    frozen, free = _model(True), _model(False)
    summary = frozen.summary()
    assert summary["non_trainable_params"] == 6 * 4 + 4
    assert summary["trainable_params"] + summary["non_trainable_params"] == summary["total_params"]
    assert frozen.store.values.size == free.store.values.size - 28
    assert set(frozen.get_weights()) == set(free.get_weights())  # all still saved by name
    # Same seed, same initialization order: freezing changes no initial value.
    for name, value in free.get_weights().items():
        np.testing.assert_array_equal(frozen.get_weights()[name], value)


def test_a_frozen_layer_still_receives_the_gradient_it_passes_on():
    model = _model(True)
    x, y = _data(8)
    _, grads = model.compute_gradients(x, y)
    assert "dense_1/kernel" not in grads and np.abs(grads["dense/kernel"]).max() > 0

