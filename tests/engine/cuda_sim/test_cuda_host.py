"""`device: cuda` for what has no device op (nnctl/nn/cudaops_host.py): a custom `build` + `call` layer with a
`compute_mask` of its own, one passing a Keras mask on that way, a normalization over a moved axis, an Embedding
with a regularizer, each run by its CPU code between copies, under the CUDA simulator; each agrees with the same
seed's CPU run, and `nnctl check` says what runs on the CPU each step. Run by tests/engine/test_cuda_sim.py."""

from __future__ import annotations

import numpy as np
import pytest

from click.testing import CliRunner

from nnctl.cli import main
from nnctl.nn.layers import LSTM, BatchNormalization, Dense, Embedding, Flatten, Layer, Reshape
from nnctl.nn.model import Sequential
from tests.engine.cuda_sim import test_cuda_tape as tape
from tests.engine.cuda_sim.agree import fit_on_both

RNG = np.random.default_rng(31)
X = RNG.standard_normal((16, 6)).astype(np.float32)
IDS = np.where(np.arange(6) < RNG.integers(0, 4, (16, 1)), 0, RNG.integers(1, 12, (16, 6))).astype(np.int32)


class Gated(tape.Gated):
    """test_cuda_tape.py's gated layer with a `compute_mask` of its own (so on the CPU each step: a tape layer
    without one runs its ops on the GPU)."""

    def compute_mask(self, mask):
        return None


class Gain(Layer):
    """x · g per feature, passing its input's Keras mask on by a `compute_mask` of its own."""

    def build(self, input_shape):
        self.g = self.add_weight("g", (input_shape[-1],), "ones")

    def call(self, inputs):
        return inputs * self.g

    def compute_mask(self, mask):
        return mask


CASES = {  # name: (x, y, layers, loss)
    "tape-layer-between-dense": (X, X[:, :1] * X[:, 1:2], lambda: [Dense(5, activation="relu"), Gated(), Dense(1)],
                                 "mse"),
    "tape-layer-passing-a-mask": (IDS, (IDS[:, -1:] > 5).astype(np.float32),
                                  lambda: [Embedding(12, 3, mask_zero=True), Gain(), LSTM(2),
                                           Dense(1, activation="sigmoid")], "binary_crossentropy"),
    "batch-norm-over-a-moved-axis": (X, X[:, :1] - X[:, 2:3],
                                     lambda: [Dense(6), Reshape((2, 3)), BatchNormalization(axis=1), Flatten(),
                                              Dense(1)], "mse"),
    "embedding-with-a-regularizer": (IDS, (IDS[:, :1] > 5).astype(np.float32),
                                     lambda: [Embedding(12, 3, embeddings_regularizer={"type": "l2", "l2": 0.01}),
                                              Flatten(), Dense(1, activation="sigmoid")], "binary_crossentropy"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_what_has_no_device_op_runs_on_the_host_and_agrees_with_the_cpu(case, strict_device_arrays):
    x, y, layers, loss = CASES[case]
    fit_on_both(lambda device: Sequential(layers(), input_shape=x.shape[1:], seed=3, device=device), x, y,
                dict(optimizer="adam", loss=loss() if isinstance(loss, type) else loss), epochs=2,
                validation=(x, y))


CONFIG = """\
name: host
seed: 4
data:
  dataset: {type: synthetic, kind: regression, samples: 32, features: 6}
model:
  layers:
    - {type: dense, units: 6, activation: relu}
    - {type: reshape, target_shape: [2, 3]}
    - {type: batch_normalization, axis: 1}
    - {type: flatten}
    - {type: dense, units: 1}
loss: mse
epochs: 1
batch_size: 16
device: cuda
"""


def test_check_says_which_layers_run_on_the_cpu_each_step(tmp_path):
    config = tmp_path / "host.yaml"
    config.write_text(CONFIG)
    result = CliRunner().invoke(main, ["check", str(config)])
    assert result.exit_code == 0, result.output
    assert "layer 2 (batch_normalization) on the CPU each step, trains on cuda)" in result.output
    result = CliRunner().invoke(main, ["train", str(config), "--runs-dir", str(tmp_path / "runs"), "-q"])
    assert result.exit_code == 0, result.output


def test_what_runs_on_the_host_is_said_in_one_phrase():
    from nnctl.nn.cudaops_host import on_the_host

    model = Sequential([Dense(3), Gated(), Gain(), Dense(1)], input_shape=(6,), seed=0)
    model.compile(optimizer="adam", loss="mse")
    assert on_the_host(model) == ["layers 1 (gated), 2 (gain)"]
    model = Sequential([Dense(1)], input_shape=(6,), seed=0)
    model.compile(optimizer="adam", loss="mse")
    assert on_the_host(model) == []
    inner = Sequential([Dense(4), Gated()], input_shape=(6,), seed=0, name="inner")
    model = Sequential([Dense(6), inner, Dense(1)], input_shape=(6,), seed=0)
    model.compile(optimizer="adam", loss="mse")
    assert on_the_host(model) == ["layer 1/1 (gated)"]
