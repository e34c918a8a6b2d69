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
