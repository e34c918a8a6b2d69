"""Another config's model as a layer from YAML (`{type: model, config: …, weights: …, trainable: …}`, config/
nested.py): transfer learning from a trained run, freezing, every command on the outer run, located mistakes."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file

from nnctl.config import load_config
from nnctl.config.yamlfile import ConfigError
from nnctl.train.session import prepare
from tests.conftest import invoke, run_path

BASE = """\
name: base
seed: 1
data: {path: d.npz, validation: {split: 0.2}}
model:
  input_shape: [10]
  layers:
    - {type: dense, units: 8, activation: relu}
    - {type: dense, units: 1, activation: sigmoid}
loss: binary_crossentropy
metrics: [accuracy]
epochs: 4
batch_size: 16
"""
OUTER = """\
name: outer
seed: 2
data: {path: d.npz, validation: {split: 0.2}}
model:
  layers:
    - {name: pretrained, type: model, SOURCE}
    - {type: dense, units: 1, activation: sigmoid}
loss: binary_crossentropy
metrics: [accuracy]
epochs: 2
batch_size: 16
"""


@pytest.fixture
def trained(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 10)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.float32)
    np.savez(tmp_path / "d.npz", x_train=x[:240], y_train=y[:240], x_test=x[240:], y_test=y[240:])
    (tmp_path / "base.yaml").write_text(BASE)
    result = invoke("train", tmp_path / "base.yaml")
    assert result.exit_code == 0, result.output
    return run_path(result.output)


def _outer(tmp_path, source):
    path = tmp_path / "outer.yaml"
    path.write_text(OUTER.replace("SOURCE", source))
    return path


def test_a_frozen_trained_run_stays_as_trained_and_the_outer_run_stands_alone(tmp_path, trained):
    result = invoke("train", _outer(tmp_path, "config: base.yaml, weights: runs/base/latest, trainable: false"))
    assert result.exit_code == 0, result.output
    run = run_path(result.output)
    before, after = load_file(trained / "weights.safetensors"), load_file(run / "weights.safetensors")
    assert sorted(after) == sorted([f"pretrained/{k}" for k in before] + ["dense/bias", "dense/kernel"])
    for key, value in before.items():
        np.testing.assert_array_equal(after[f"pretrained/{key}"], value)
    summary = invoke("summary", tmp_path / "outer.yaml")
    assert "pretrained (Sequential)" in summary.output and "Non-trainable params: 97" in summary.output
    shutil.rmtree(trained.parent)  # the outer run holds every weight: evaluate and predict need only base.yaml
    assert invoke("evaluate", run).exit_code == 0
    np.save(tmp_path / "x.npy", np.zeros((2, 10), np.float32))
    assert invoke("predict", run, "--input", tmp_path / "x.npy").exit_code == 0


def test_trainable_nested_weights_move_and_a_run_alone_gives_its_model(tmp_path, trained):
    result = invoke("train", _outer(tmp_path, "weights: runs/base/latest"))
    assert result.exit_code == 0, result.output
    run = run_path(result.output)
    before, after = load_file(trained / "weights.safetensors"), load_file(run / "weights.safetensors")
    assert not np.array_equal(after["pretrained/dense/kernel"], before["dense/kernel"])  # trained further
    resumed = invoke("train", "--resume", run, "--set", "epochs=3")
    assert resumed.exit_code == 0, resumed.output
    assert len(json.loads((run / "history.json").read_text())["loss"]) == 3


def test_nested_mistakes_are_located(tmp_path, trained):
    def issues(source):
        with pytest.raises(ConfigError) as caught:
            prepare(load_config(_outer(tmp_path, source)))
        return [(issue.path, issue.message, issue.source.line) for issue in caught.value.issues]

    found = issues("config: missing.yaml")
    assert found[0][0] == ("model", "layers", 0) and "missing.yaml" in found[0][1] and found[0][2] == 6
    (tmp_path / "small.yaml").write_text(BASE.replace("units: 8", "units: 5"))
    found = issues("config: small.yaml, weights: runs/base/latest")
    assert "do not fit small.yaml's model" in found[0][1] and "has shape (10, 5)" in found[0][1]
    (tmp_path / "deep.yaml").write_text(BASE.replace("    - {type: dense, units: 1", "    - {type: dense, units: 3}\n"
                                                                                  "    - {type: dense, units: 1"))
    assert "it lacks dense_2/bias, dense_2/kernel" in issues("config: deep.yaml, weights: runs/base/latest")[0][1]
    assert "give `config`" in issues("trainable: false")[0][1]
    (tmp_path / "loop.yaml").write_text(OUTER.replace("SOURCE", "config: loop.yaml").replace("name: outer",
                                                                                             "name: loop"))
    assert "nests itself" in issues("config: loop.yaml")[0][1]
    assert "no such run" in issues("weights: runs/nothing")[0][1]
