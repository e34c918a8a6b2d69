"""The training session's Ctrl-C handling: a stop asked for before or during fit keeps only whole epochs."""

import numpy as np

from nnctl.nn.callbacks import Callback
from nnctl.nn.layers import Dense
from nnctl.nn.model import Sequential
from nnctl.train.session import InterruptHandler

RNG = np.random.default_rng(0)
X = RNG.standard_normal((64, 5)).astype(np.float32)
Y = X.sum(axis=1)


def small_model():
    model = Sequential([Dense(4, activation="relu"), Dense(1)], input_shape=(5,), seed=0)
    model.compile("rmsprop", "mse")
    return model


def test_a_stop_asked_for_before_fit_trains_nothing():
    handler = InterruptHandler()
    handler.requested = True  # as when Ctrl-C arrives while kernels compile
    model = small_model()
    before = model.get_weights()
    history = model.fit(X, Y, epochs=3, batch_size=8, callbacks=[handler])
    assert history == {} and model.stopped_mid_epoch == 0
    assert all(np.array_equal(before[k], v) for k, v in model.get_weights().items())


def test_a_signal_between_epochs_stops_before_the_next_one():
    handler = InterruptHandler()
    model = small_model()

    class SignalAfterFirstEpoch(Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                handler._handle(None, None)

    history = model.fit(X, Y, epochs=5, batch_size=8, callbacks=[handler, SignalAfterFirstEpoch()])
    assert len(history["loss"]) == 1 and handler.requested and model.stopped_mid_epoch is None
