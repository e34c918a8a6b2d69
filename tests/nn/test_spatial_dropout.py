"""SpatialDropout1D/2D: whole channels dropped, the mask reused in backward, a gradient check with the draws
held fixed, rank errors, and the same bytes from the same seed."""

import numpy as np
import pytest

from nnctl.errors import ArgumentError, ShapeError
from nnctl.nn.layers.core import Dense, Flatten
from nnctl.nn.layers.regularization import SpatialDropout1D, SpatialDropout2D
from nnctl.nn.model import Sequential
from tests.nn.test_gradients import numeric_gradients

RNG = np.random.default_rng(5)


def _layer(cls, rate, dtype=np.float64):
    layer = cls(rate)
    layer.backend = Sequential([Dense(1)], input_shape=(1,)).backend
    layer.rng, layer.dtype = np.random.default_rng(0), dtype
    return layer


@pytest.mark.parametrize("cls, shape", [(SpatialDropout1D, (200, 6, 64)), (SpatialDropout2D, (100, 3, 4, 64))])
def test_whole_channels_are_dropped_and_survivors_scaled(cls, shape):
    layer = _layer(cls, 0.3)
    x = RNG.random(shape) + 0.5  # no zeros of its own
    y = layer.forward(x, training=True)
    per_channel = (y / x).reshape(shape[0], -1, shape[-1])
    # One value per (sample, channel), shared by every step or pixel: 0 or 1/(1 − rate).
    np.testing.assert_allclose(per_channel, per_channel[:, :1, :].repeat(per_channel.shape[1], axis=1))
    values = per_channel[:, 0, :]
    assert set(np.unique(np.round(values, 6))) == {0.0, round(1 / 0.7, 6)}
    assert 0.27 < (values == 0).mean() < 0.33  # 12,800 or 6,400 draws at rate 0.3
    dy = RNG.standard_normal(shape)
    np.testing.assert_allclose(layer.backward(dy), dy * (y / x))  # the forward's mask, not a new draw
    assert layer.forward(x, training=False) is x


def test_gradients_with_the_draws_held_fixed():
    class FixedDraws:  # the same uniform draws at every call, so central differences see one mask
        def random(self, shape, dtype):
            return np.random.default_rng(4).random(shape, dtype=dtype)

    model = Sequential([Dense(4, activation="tanh"), SpatialDropout1D(0.5), Flatten(), Dense(2)],
                       input_shape=(3, 2), seed=3, dtype="float64")
    model.compile(optimizer="sgd", loss="mse")
    model.layers[1].rng = FixedDraws()
    x, y = RNG.standard_normal((5, 3, 2)), RNG.standard_normal((5, 2))
    model.compute_gradients(x, y)
    analytic = model.store.grads.copy()
    scale = model.layers[1].scale
    assert (scale == 0).any() and (scale == 2).any()  # the check covers dropped and kept channels
    np.testing.assert_allclose(analytic, numeric_gradients(model, x, y), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("cls, shape", [(SpatialDropout1D, (10,)), (SpatialDropout1D, (4, 4, 2)),
                                        (SpatialDropout2D, (5, 3)), (SpatialDropout2D, (2, 2, 2, 2))])
def test_the_input_rank_is_checked(cls, shape):
    with pytest.raises(ShapeError, match=rf"'{cls.type_name}' \({cls.__name__}\).*takes {cls.rank + 2}-D inputs"):
        Sequential([cls(0.2), Flatten(), Dense(1)], input_shape=shape).build()


def test_rate_is_checked_and_round_trips():
    with pytest.raises(ArgumentError, match="`rate`"):
        SpatialDropout2D(1.0)
    assert SpatialDropout1D(0.25, name="sd").get_config() == {"rate": 0.25, "name": "sd"}


def test_the_same_seed_gives_the_same_bytes():
    x, y = RNG.standard_normal((64, 6, 6, 3)), RNG.standard_normal(64)
    weights = []
    for _ in range(2):
        model = Sequential([Dense(4, activation="relu"), SpatialDropout2D(0.4), Flatten(), Dense(1)],
                           input_shape=(6, 6, 3), seed=9)
        model.compile("adam", "mse")
        model.fit(x, y, epochs=2, batch_size=16)
        weights.append(model.get_weights())
    for name in weights[0]:
        assert weights[0][name].tobytes() == weights[1][name].tobytes()


def test_a_resumed_run_gives_the_bytes_of_an_uninterrupted_one():
    from nnctl.nn import checkpoint
    from nnctl.nn.callbacks import History
    from nnctl.nn.layers.embedding import Embedding

    ids, y = RNG.integers(0, 50, (80, 6)), RNG.integers(0, 2, 80)

    def model():
        m = Sequential([Embedding(50, 4), SpatialDropout1D(0.3), Flatten(), Dense(1, activation="sigmoid")],
                       input_shape=(6,), seed=7)
        m.compile("rmsprop", "binary_crossentropy")
        return m
    straight = model()
    straight.fit(ids, y, epochs=4, batch_size=16)
    first = model()
    history = History()
    first.fit(ids, y, epochs=2, batch_size=16, callbacks=[history])
    snapshot = checkpoint.capture(first, history)
    resumed = model()
    checkpoint.restore(resumed, snapshot, History())
    resumed.fit(ids, y, epochs=4, batch_size=16, initial_epoch=2)
    for name, value in straight.get_weights().items():
        assert resumed.get_weights()[name].tobytes() == value.tobytes()
