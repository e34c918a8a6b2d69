"""`device: cuda` for shared layers (one layer called at several nodes, its weights' gradients added over the
uses, its regularizer counted once), under the CUDA simulator: a siamese Dense on two inputs, a shared Embedding
and LSTM on two id inputs of different lengths (the table's uses scattered together), and a convolution applied
to its own output; each agrees with the same seed's CPU run. Run by tests/engine/test_cuda_sim.py."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.nn.functional import Input, Model
from nnctl.nn.layers import LSTM, Concatenate, Conv2D, Dense, Embedding, Flatten, Subtract

RNG = np.random.default_rng(29)
LEFT, RIGHT = RNG.standard_normal((16, 5)).astype(np.float32), RNG.standard_normal((16, 5)).astype(np.float32)
# The two uses of the table read rows of their own (a step's gradient rows of one use are none of the other's).
QUESTION = RNG.integers(1, 20, (16, 6)).astype(np.int32)
ANSWER = np.where(np.arange(4) < RNG.integers(0, 3, (16, 1)), 0, RNG.integers(20, 40, (16, 4))).astype(np.int32)
IMAGES = RNG.standard_normal((16, 5, 5, 2)).astype(np.float32)


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
    images = Input((5, 5, 2))
    conv = Conv2D(2, 3, padding="same", activation="relu")
    out = Dense(3, activation="softmax")(Flatten()(conv(conv(images))))
    return Model(images, out, seed=3, device=device), IMAGES, np.argmax(IMAGES[:, 0, :3, 0], 1), dict(
        optimizer="adam", loss="sparse_categorical_crossentropy")


CASES = {"siamese-dense-regularized": _siamese, "shared-table-and-lstm": _shared_table_and_lstm,
         "conv-on-its-own-output": _conv_twice}


@pytest.mark.parametrize("case", list(CASES))
def test_a_shared_layer_on_the_cuda_path_agrees_with_the_cpu(case, strict_device_arrays):
    runs = []
    for device in ("cpu", "cuda"):
        model, x, y, compiled = CASES[case](device)
        model.compile(**compiled)
        history = model.fit(x, y, epochs=2, batch_size=8, validation_data=(x, y))
        runs.append((history, model.get_weights(), model.predict(x), model))
    (cpu, cpu_weights, cpu_out, _), (gpu, gpu_weights, gpu_out, model) = runs
    assert model._cuda_paths
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(gpu[key], cpu[key], rtol=2e-5, err_msg=key)
    assert set(gpu_weights) == set(cpu_weights)
    for name in cpu_weights:
        np.testing.assert_allclose(gpu_weights[name], cpu_weights[name], rtol=1e-4, atol=2e-6, err_msg=name)
    np.testing.assert_allclose(gpu_out, cpu_out, rtol=1e-4, atol=2e-6)
