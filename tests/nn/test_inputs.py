"""nnctl.nn.inputs: inputs reach the first layer in its dtype; ids are never silently truncated."""

import numpy as np
import pytest

from nnctl.errors import ShapeError
from nnctl.nn.layers import Dense, Embedding, Flatten
from nnctl.nn.model import Sequential


def test_id_inputs_are_cast_to_int32_and_fractions_are_refused():
    model = Sequential([Embedding(10, 2), Flatten(), Dense(1, activation="sigmoid")], input_shape=(3,), seed=0)
    model.compile("rmsprop", "binary_crossentropy")
    ids = np.array([[1, 2, 3], [4, 5, 9]])
    out = model.predict(ids.astype(np.float64))  # whole numbers in a float array are ids too
    np.testing.assert_array_equal(out, model.predict(ids.astype(np.int64)))
    with pytest.raises(ShapeError, match="integer ids"):
        model.predict(ids + 0.5)
    with pytest.raises(ShapeError, match="int32 ids"):
        model.predict(ids * 2**40)


def test_an_id_outside_the_vocabulary_is_refused_before_any_training():
    model = Sequential([Embedding(10, 2), Flatten(), Dense(1, activation="sigmoid")], input_shape=(3,), seed=0)
    model.compile("rmsprop", "binary_crossentropy")
    before = model.get_weights()
    good, labels = np.array([[1, 2, 3], [4, 5, 9]]), np.array([0, 1])
    with pytest.raises(ShapeError, match=r"token id 10, outside its vocabulary \[0, 10\)"):
        model.fit(good, labels, epochs=1, validation_data=(good + 1, labels))
    for name, value in model.get_weights().items():  # refused before the first step
        np.testing.assert_array_equal(value, before[name])
    with pytest.raises(ShapeError, match="token id -1"):
        model.predict(good - 2)
