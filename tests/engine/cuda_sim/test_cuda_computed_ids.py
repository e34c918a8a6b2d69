"""`device: cuda` for an Embedding reading token ids another layer computes (nnctl/nn/cudaops_embedding.py,
ComputedIdsOp), under the CUDA simulator: cast and checked on the device, it trains as the CPU does (after an
Activation, with `mask_zero` into an LSTM, inside a nested model reading a computed input), and an id outside the
vocabulary raises the CPU's error when the runner call ends, the host weights left as they were. Run by
tests/engine/test_cuda_sim.py."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.errors import ShapeError
from nnctl.nn.layers import LSTM, Activation, Dense, Embedding, Flatten, Reshape
from nnctl.nn.model import Sequential
from tests.engine.cuda_sim.agree import fit_on_both

RNG = np.random.default_rng(41)
IDS = np.where(np.arange(6) < RNG.integers(0, 4, (16, 1)), 0, RNG.integers(1, 12, (16, 6))).astype(np.float32)
Y = (IDS[:, -1:] > 5).astype(np.float32)


def _nested(device):
    inner = Sequential([Embedding(12, 3, mask_zero=True), LSTM(2)], input_shape=(6,), seed=1, name="encoder")
    return Sequential([Reshape((6,)), inner, Dense(1, activation="sigmoid")], input_shape=(6,), seed=2, device=device)


MODELS = {
    "after-an-activation": lambda device: Sequential([Activation("linear"), Embedding(12, 3), Flatten(),
                                                      Dense(1, activation="sigmoid")], input_shape=(6,), seed=3,
                                                     device=device),
    "masked-into-an-lstm": lambda device: Sequential([Reshape((6,)), Embedding(12, 3, mask_zero=True), LSTM(2),
                                                      Dense(1, activation="sigmoid")], input_shape=(6,), seed=4,
                                                     device=device),
    "inside-a-nested-model": _nested,
}


@pytest.mark.parametrize("case", list(MODELS))
def test_computed_ids_are_cast_on_the_device_and_train_as_on_the_cpu(case, strict_device_arrays):
    from nnctl.nn.cudaops_embedding import ComputedIdsOp

    runs = fit_on_both(MODELS[case], IDS, Y, dict(optimizer="adam", loss="binary_crossentropy"), epochs=2,
                       validation=(IDS, Y))
    (path,) = runs[1][3]._cuda_paths.values()
    assert len(path.id_checks) == 1 and isinstance(path.id_checks[0], ComputedIdsOp)


def test_an_id_outside_the_vocabulary_raises_the_cpus_error_and_keeps_the_last_good_weights():
    bad = IDS.copy()
    bad[3, 5] = 12.7  # cast to 12: one past the vocabulary, in the first batch
    bad[9, 0] = 30.0  # in the second batch, earlier in it than the first one in its own: the first is named
    errors, kept = [], []
    for device in ("cpu", "cuda"):
        model = MODELS["after-an-activation"](device)
        model.compile(optimizer="adam", loss="binary_crossentropy")
        model.fit(IDS, Y, epochs=1, batch_size=8)
        before = model.get_weights()
        with pytest.raises(ShapeError) as caught:
            model.fit(bad, Y, epochs=1, batch_size=8, shuffle=False)
        errors.append(str(caught.value))
        kept.append(all(np.array_equal(before[name], value) for name, value in model.get_weights().items()))
        with pytest.raises(ShapeError, match="got token id 12, outside its vocabulary"):
            model.predict(bad)
    assert errors[0] == errors[1] == ("layer 'embedding' (Embedding) got token id 12, outside its vocabulary [0, "
                                      "12): raise `input_dim` or cap the ids (num_words)")
    assert kept[1]  # on the GPU the failing epoch's updates never reach the host
