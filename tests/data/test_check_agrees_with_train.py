"""`nnctl check` and `nnctl train` agree on the data: a transform list check accepts trains, one it refuses is
refused by train with the same located line before any run folder exists (`[one_hot, one_hot]` passed check with
a wrong row count and failed in training, after the run folder was written)."""

import itertools

import numpy as np
import pytest

from nnctl.config import load_config
from nnctl.config.yamlfile import ConfigError
from nnctl.data.files import load_data
from tests.conftest import invoke

SPECS = {"one_hot": "{type: one_hot, classes: 3}", "standardize": "standardize",
         "rescale": "{type: rescale, scale: 0.5}",
         "flatten": "flatten", "reshape": "{type: reshape, shape: [2, 2]}", "multi_hot": "multi_hot",
         "pad_sequences": "{type: pad_sequences, maxlen: 3}"}
CONFIG = """\
name: pair
seed: 3
data:
  path: d.npz
  validation: {{split: 0.25}}
  transforms: [{transforms}]
model:
  layers: [{{type: flatten}}, {{type: dense, units: {units}, activation: {activation}}}]
loss: {loss}
epochs: 1
batch_size: 8
"""


def write_pair(folder, names) -> object:
    rng = np.random.default_rng(0)
    np.savez(folder / "d.npz", x_train=rng.normal(size=(32, 4)).astype(np.float32),
             y_train=rng.integers(0, 3, 32), x_test=rng.normal(size=(8, 4)).astype(np.float32),
             y_test=rng.integers(0, 3, 8))
    one_hot = "one_hot" in names
    text = CONFIG.format(transforms=", ".join(SPECS[name] for name in names), units=3 if one_hot else 1,
                         activation="softmax" if one_hot else "linear",
                         loss="categorical_crossentropy" if one_hot else "mse")
    (folder / "c.yaml").write_text(text, encoding="utf-8")
    return folder / "c.yaml"


@pytest.mark.parametrize("names", list(itertools.product(SPECS, repeat=2)), ids="+".join)
def test_every_pair_keeps_one_row_per_sample_or_is_a_located_error(tmp_path, names):
    try:
        splits = load_data(load_config(write_pair(tmp_path, names)))
    except ConfigError as err:
        (issue,) = err.issues
        assert issue.path[:2] == ("data", "transforms"), str(err)
        return
    for name in ("train", "validation", "test"):
        x, y = splits.split(name)
        assert x.shape[0] == len(y), (name, x.shape, y.shape)


def check_and_train(tmp_path, names):
    config = write_pair(tmp_path, names)
    checked = invoke("check", config)
    trained = invoke("train", config, "--runs-dir", tmp_path / "runs", "--quiet")
    return checked, trained


def assert_agree(tmp_path, checked, trained):
    if checked.exit_code == 0:
        assert trained.exit_code == 0, trained.output
        return
    assert checked.exit_code == trained.exit_code == 2, (checked.output, trained.output)
    assert [line for line in checked.output.splitlines() if line.startswith("error:")] == \
        [line for line in trained.output.splitlines() if line.startswith("error:")]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("manifest.json"))


def test_one_hot_twice_fails_in_check_as_in_train_and_writes_nothing(tmp_path):
    checked, trained = check_and_train(tmp_path, ("one_hot", "one_hot"))
    assert checked.exit_code == 2
    assert "c.yaml:6:15: data.transforms: one_hot needs one integer label per row, got targets of shape [24, 3] " \
           "(already one-hot?)" in checked.output
    assert_agree(tmp_path, checked, trained)


@pytest.mark.parametrize("names", [("standardize", "one_hot"), ("multi_hot", "one_hot"), ("flatten", "rescale")],
                         ids="+".join)
def test_check_and_train_agree(tmp_path, names):
    assert_agree(tmp_path, *check_and_train(tmp_path, names))


@pytest.mark.slow
@pytest.mark.parametrize("names", list(itertools.product(SPECS, repeat=2)), ids="+".join)
def test_check_and_train_agree_on_every_pair(tmp_path, names):
    assert_agree(tmp_path, *check_and_train(tmp_path, names))
