"""nnctl.config.footprint and the schema's bounds: sizes that cannot fit are refused, located, before any
weight is allocated; the estimate counts weights, gradients, optimizer slots, checkpoint copies, activations.
"""

from __future__ import annotations

import pytest

import nnctl.config.build as build
import nnctl.nn.model
from nnctl.config import ConfigError, load_config
from nnctl.config.build import build_model
from nnctl.config.footprint import estimate
from nnctl.host import available_memory, size_text
from nnctl.nn.layers import Dense, Dropout, Flatten

CONFIG = """\
name: big
seed: 1
data:
  dataset: {type: synthetic, samples: 100, features: 8}
model:
  input_shape: [1000]
  layers:
    - {type: dense, units: 64, activation: relu}
    - {type: dense, units: 1, activation: sigmoid}
loss: binary_crossentropy
optimizer: adam
epochs: 2
batch_size: 32
"""


def write(tmp_path, text=CONFIG):
    path = tmp_path / "big.yaml"
    path.write_text(text)
    return path


def refusal(tmp_path, overrides=(), text=CONFIG, **build_options) -> str:
    with pytest.raises(ConfigError) as caught:
        build_model(load_config(write(tmp_path, text), list(overrides)), **build_options)
    (issue,) = caught.value.issues
    return str(issue)


def test_estimate_counts_every_weight_and_activation():
    footprint = estimate([Dense(64), Dropout(0.5), Flatten(), Dense(3)], (1000,), batch_rows=10, slot_count=3)
    assert footprint.params == 1000 * 64 + 64 + 64 * 3 + 3
    assert footprint.state_bytes == footprint.params * 4 * (2 + 3 + 2 * 4)
    assert footprint.activation_bytes == 10 * 4 * (1000 + 3 * (64 + 64 + 64 + 3))
    assert (footprint.biggest_layer, footprint.widest_layer) == (0, 0)
    assert estimate([Dense(4), Flatten()], (0, 3), 1, 1) is not None
    assert available_memory() > 0
    assert size_text(1536) == "1.5 KiB" and size_text(3 * 2**40) == "3.0 TiB" and size_text(2**70) == "2^70+ bytes"


def test_a_model_that_cannot_fit_is_refused_before_any_weight_is_allocated(tmp_path, monkeypatch):
    def no_allocation(*args, **kwargs):
        raise AssertionError("weights were allocated before the memory check")

    monkeypatch.setattr(nnctl.nn.model, "ParameterStore", no_allocation)
    monkeypatch.setattr(build, "available_memory", lambda: 64 << 30)  # the same figure on any machine
    line = refusal(tmp_path, ["model.layers[0].units=16000000"])
    assert line == ("--set model.layers[0].units=16000000: model.layers[0].units: training this model needs about "
                    "782.1 GiB of memory: 16,032,000,001 parameters with gradients, optimizer slots and checkpoint "
                    "copies take 776.4 GiB, a 32-row batch's activations 5.7 GiB (allowed: the 64.0 GiB this machine "
                    "has available)")


def test_the_batch_is_blamed_only_when_a_smaller_batch_would_fit(tmp_path, monkeypatch):
    monkeypatch.setattr(build, "available_memory", lambda: 200 * 2**20)
    line = refusal(tmp_path, text=CONFIG.replace("batch_size: 32", "batch_size: 100000"))
    assert "big.yaml:13:13: batch_size: training this model needs about 459.0 MiB of memory" in line
    assert "a 100,000-row batch's activations" in line
    # The same batch over 100 training rows is a 100-row batch: it fits.
    build_model(load_config(write(tmp_path, CONFIG.replace("batch_size: 32", "batch_size: 100000"))), rows=100)


def test_a_model_too_wide_for_even_one_row_blames_the_layer(tmp_path, monkeypatch):
    monkeypatch.setattr(build, "available_memory", lambda: 2**30)
    text = CONFIG.replace("    - {type: dense, units: 64, activation: relu}",
                          "    - {type: reshape, target_shape: [1000, 1]}\n    - {type: dense, units: 1000000}")
    line = refusal(tmp_path, text=text)
    assert ":9:28: model.layers[1].units: training this model needs about " in line


@pytest.mark.parametrize("override, words", [
    ("model.layers[0].units=1000000000", "model.layers[0].units: 1000000000 is too large (allowed: 1 to 16,777,216)"),
    ("epochs=1000000000000000000", "epochs: 1000000000000000000 is too large (allowed: 1 to 1,000,000)"),
    ("batch_size=999999999999999999", "batch_size: 999999999999999999 is too large (allowed: 1 to 1,048,576)"),
    ("data.dataset.classes=1000000000000000000000000000000", "data.dataset.classes: 1000000000000000000000000000000 "
                                                           "is too large (allowed: 1 to 10,000)"),
    ("data.transforms=[{type: one_hot, classes: 1000000000000000000000000000000}]",
     "data.transforms[0].classes: 1000000000000000000000000000000 is too large (allowed: 1 to 100,000)"),
    ("seed=18446744073709551616", "seed: 18446744073709551616 is too large (allowed: 0 to 4,294,967,295)"),
    ("data.validation={kfold: 1000000}", "data.validation.kfold: 1000000 is too large (allowed: 2 to 1,000)"),
    ("model.input_shape=[100000, 100000]", "model.input_shape: expected a list of positive integers (each at "
                                           "most 16,777,216, at most 2,147,483,647 values in all)"),
    ("data.dataset={type: synthetic, samples: 10000000, features: 20}",
     "data.dataset: samples × features = 200,000,000 values"),
    ("data.dataset={type: synthetic, kind: text, samples: 10000000, length: 100000}",
     "data.dataset: samples × length = 1,000,000,000,000 values is too large (allowed: at most 100,000,000)"),
    ("name=" + "n" * 101, "name: expected a name of at most 100 letters"),
    ("model.layers=[" + ", ".join(["dense"] * 1001) + "]", "model.layers: expected at most 1,000 entries, got 1,001"),
])
def test_sizes_are_bounded_in_the_schema(tmp_path, override, words):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path), [override])
    (issue,) = caught.value.issues
    assert words in str(issue), str(issue)


def test_bounds_do_not_refuse_sane_values(tmp_path):
    resolved = load_config(write(tmp_path), ["epochs=1000000", "batch_size=1048576", "seed=4294967295",
                                             "model.layers[0].units=16777216", "data.validation={kfold: 1000}"])
    assert resolved.config.model.layers[0].units == 2**24
