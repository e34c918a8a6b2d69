"""`device: cuda` for shared layers and nested models, under the CUDA simulator. Shared layers (one layer called at
several nodes, its weights' gradients added over the uses, its regularizer counted once): a siamese Dense on two
inputs, a shared Embedding and LSTM on two id inputs of different lengths (the table's uses scattered together), a
convolution applied to its own output. Nested models (a model used as a layer): a graph between two outer layers
(its input's gradient flowing out), one called on two inputs, a frozen trained base under a new head. Each agrees
with the same seed's CPU run. Run by tests/engine/test_cuda_sim.py."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.nn.functional import Input, Model
from nnctl.nn.layers import LSTM, Concatenate, Conv2D, Dense, Embedding, Flatten, Subtract
from tests.engine.cuda_sim.agree import fit_on_both

RNG = np.random.default_rng(29)
LEFT, RIGHT = RNG.standard_normal((16, 5)).astype(np.float32), RNG.standard_normal((16, 5)).astype(np.float32)
# The two uses of the table read rows of their own (a step's gradient rows of one use are none of the other's).
QUESTION = RNG.integers(1, 20, (16, 6)).astype(np.int32)
ANSWER = np.where(np.arange(4) < RNG.integers(0, 3, (16, 1)), 0, RNG.integers(20, 40, (16, 4))).astype(np.int32)
IMAGES = RNG.standard_normal((16, 4, 4, 2)).astype(np.float32)


def _siamese(device):
    left, right = Input((5,), name="left"), Input((5,), name="right")
    shared = Dense(4, activation="tanh", kernel_regularizer={"type": "l2", "l2": 0.05})
    out = Dense(1)(Subtract()([shared(left), shared(right)]))
    x, y = {"left": LEFT, "right": RIGHT}, (LEFT - RIGHT)[:, :1] * 2
    return Model([left, right], out, seed=3, device=device), x, y, dict(optimizer="adam", loss="mse")


def _shared_table_and_lstm(device):
    question, answer = Input((6,), name="question"), Input((4,), name="answer")
    table, reader = Embedding(40, 3, mask_zero=True), LSTM(3)
    both = Concatenate()([reader(table(question)), reader(table(answer))])
    out = Dense(1, activation="sigmoid")(both)
    x, y = {"question": QUESTION, "answer": ANSWER}, (QUESTION[:, :1] + 20 > ANSWER[:, -1:]).astype(np.float32)
    return Model([question, answer], out, seed=3, device=device), x, y, dict(optimizer="rmsprop",
                                                                             loss="binary_crossentropy")


def _conv_twice(device):
    images = Input((4, 4, 2))
    conv = Conv2D(2, 3, padding="same", activation="relu")
    out = Dense(3, activation="softmax")(Flatten()(conv(conv(images))))
    return Model(images, out, seed=3, device=device), IMAGES, np.argmax(IMAGES[:, 0, :3, 0], 1), dict(
        optimizer="adam", loss="sparse_categorical_crossentropy")


CASES = {"siamese-dense-regularized": _siamese, "shared-table-and-lstm": _shared_table_and_lstm,
         "conv-on-its-own-output": _conv_twice}


def _encoder(name="encoder"):
    """A small graph (a Dense read twice, its two readers added, a Dropout of rate 0 inside) to nest."""
    from nnctl.nn.layers import Add, Dropout

    inputs = Input((5,))
    hidden = Dense(4, activation="tanh", kernel_regularizer={"type": "l2", "l2": 0.02})(inputs)
    return Model(inputs, Dropout(0.0)(Add()([hidden, Dense(4)(hidden)])), name=name, seed=1)


def _nested_graph_after_a_layer(device):
    """A nested graph between two outer layers: its input's gradient flows to the Dense before it."""
    inputs = Input((5,))
    out = Dense(1)(_encoder()(Dense(5, activation="relu")(inputs)))
    return Model(inputs, out, seed=3, device=device), LEFT, (LEFT[:, :1] * LEFT[:, 1:2]), dict(optimizer="adam",
                                                                                               loss="mse")


def _nested_siamese(device):
    """One nested model called on two inputs (shared: its weights' gradients added over the calls)."""
    encoder, left, right = _encoder("tower"), Input((5,), name="left"), Input((5,), name="right")
    out = Dense(1, activation="sigmoid")(Concatenate()([encoder(left), encoder(right)]))
    x, y = {"left": LEFT, "right": RIGHT}, (LEFT[:, :1] > RIGHT[:, :1]).astype(np.float32)
    return Model([left, right], out, seed=3, device=device), x, y, dict(optimizer="rmsprop", loss="binary_crossentropy")


def _frozen_conv_base(device):
    """The book's transfer-learning shape: a frozen, trained convolutional base in a Sequential, a new head."""
    from nnctl.nn.layers import MaxPooling2D
    from nnctl.nn.model import Sequential

    base = Sequential([Conv2D(3, 3, activation="relu"), MaxPooling2D(2)], input_shape=(4, 4, 2), seed=2, name="base")
    base.compile("rmsprop", "mse")
    base.fit(IMAGES, np.zeros((16, 1, 1, 3), np.float32) + 0.5, epochs=1, batch_size=8)
    base.trainable = False
    model = Sequential([base, Flatten(), Dense(3, activation="softmax")], input_shape=(4, 4, 2), seed=5, device=device)
    return model, IMAGES, np.argmax(IMAGES[:, 0, :3, 0], 1), dict(optimizer="adam",
                                                                   loss="sparse_categorical_crossentropy")


def _nested_text_encoder(device):
    """A text encoder nested in a graph (a masked Embedding and an LSTM reading the model's ids), a Dense beside."""
    from nnctl.nn.model import Sequential

    encoder = Sequential([Embedding(40, 3, mask_zero=True), LSTM(3)], input_shape=(4,), seed=2, name="encoder")
    answer = Input((4,), name="answer")
    out = Dense(1, activation="sigmoid")(encoder(answer))
    return Model(answer, out, seed=3, device=device), ANSWER, (ANSWER[:, -1:] > 30).astype(np.float32), dict(
        optimizer="rmsprop", loss="binary_crossentropy")


def _nested_text_encoder_twice(device):
    """One nested text encoder called on two id inputs whose ids use other rows: its table's rows from both calls
    (the calls' Embeddings scatter together), its LSTM's gradients added."""
    from nnctl.nn.model import Sequential

    encoder = Sequential([Embedding(40, 3, mask_zero=True), LSTM(3)], input_shape=(4,), seed=2, name="encoder")
    question, answer = Input((4,), name="question"), Input((4,), name="answer")
    out = Dense(1, activation="sigmoid")(Concatenate()([encoder(question), encoder(answer)]))
    x, y = {"question": QUESTION[:, :4], "answer": ANSWER}, (QUESTION[:, :1] + 20 > ANSWER[:, -1:]).astype(np.float32)
    return Model([question, answer], out, seed=3, device=device), x, y, dict(optimizer="rmsprop",
                                                                             loss="binary_crossentropy")


def _shared_inside_nested(device):
    """A nested graph applying one Dense twice (a shared layer inside the nested model), the nested model itself
    called on two inputs."""
    inside = Input((5,))
    twice = Dense(5, activation="tanh", kernel_regularizer={"type": "l2", "l2": 0.01})
    inner = Model(inside, twice(twice(inside)), name="twice", seed=1)
    left, right = Input((5,), name="left"), Input((5,), name="right")
    out = Dense(1)(Subtract()([inner(left), inner(right)]))
    x, y = {"left": LEFT, "right": RIGHT}, (LEFT - RIGHT)[:, 1:2]
    return Model([left, right], out, seed=3, device=device), x, y, dict(optimizer="adam", loss="mse")


CASES.update({"shared-inside-a-nested-model-called-twice": _shared_inside_nested})
CASES.update({"nested-graph-after-a-layer": _nested_graph_after_a_layer, "nested-siamese": _nested_siamese,
              "frozen-conv-base": _frozen_conv_base, "nested-text-encoder": _nested_text_encoder,
              "nested-text-encoder-called-twice": _nested_text_encoder_twice})


@pytest.mark.parametrize("case", list(CASES))
def test_a_shared_layer_on_the_cuda_path_agrees_with_the_cpu(case, strict_device_arrays):
    _, x, y, compiled = CASES[case]("cpu")
    fit_on_both(lambda device: CASES[case](device)[0], x, y, compiled, epochs=2, validation=(x, y))
