"""Graphs in YAML (nnctl/config/graph.py): layers that name their `inputs` become a functional Model, and each
mistake in a graph is one located error."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.config import load_config
from nnctl.config.build import build_model
from nnctl.config.yamlfile import ConfigError
from nnctl.nn.functional import Model
from nnctl.nn.model import Sequential
from tests.conftest import invoke, write_npz

HEAD = """\
name: graph
seed: 1
data:
  path: tiny.npz
  validation: {split: 0.2}
model:
  layers:
"""
TAIL = """\
loss: binary_crossentropy
optimizer: {type: rmsprop, learning_rate: 0.01}
metrics: [accuracy]
epochs: 3
batch_size: 16
"""
RESIDUAL = """\
    - {type: dense, units: 8, activation: relu}
    - {name: block, type: dense, units: 8, activation: relu}
    - {type: add, inputs: [dense, block]}
    - {type: dense, units: 1, activation: sigmoid}
"""


def _config(tmp_path, layers, extra=""):
    write_npz(tmp_path / "tiny.npz")
    path = tmp_path / "graph.yaml"
    path.write_text(HEAD + layers + extra + TAIL)
    return path


def _errors(tmp_path, layers, extra=""):
    with pytest.raises(ConfigError) as caught:
        build_model(load_config(_config(tmp_path, layers, extra)), input_shape=(10,))
    return [(issue.path, issue.message, issue.source.line) for issue in caught.value.issues]


def test_a_residual_config_builds_a_graph_and_a_plain_stack_stays_sequential(tmp_path):
    model = build_model(load_config(_config(tmp_path, RESIDUAL)), input_shape=(10,))
    assert isinstance(model, Model)
    assert [layer.name for layer in model.layers] == ["dense", "block", "add", "dense_2"]  # as Sequential counts
    assert model.sources == [[-1], [0], [0, 1], [2]]
    plain = build_model(load_config(_config(tmp_path, "    - {type: dense, units: 1, activation: sigmoid}\n")),
                        input_shape=(10,))
    assert type(plain) is Sequential


def test_a_graph_config_trains_evaluates_and_predicts_through_the_cli(tmp_path):
    path = _config(tmp_path, RESIDUAL)
    runs = tmp_path / "runs"
    result = invoke("train", path, "--runs-dir", runs)
    assert result.exit_code == 0, result.output
    run = next(runs.glob("graph*"))
    assert invoke("evaluate", run).exit_code == 0
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(5, 10)).astype(np.float32))
    predicted = invoke("predict", run, "--input", tmp_path / "x.npy")
    assert predicted.exit_code == 0, predicted.output
    summary = invoke("summary", path)
    assert "Connected to" in summary.output and "dense, block" in summary.output


def test_the_input_is_named_input_and_a_bare_name_is_one_input(tmp_path):
    layers = """\
    - {type: dense, units: 10}
    - {type: add, inputs: [input, dense]}
    - {type: dense, units: 1, activation: sigmoid, inputs: add}
"""
    model = build_model(load_config(_config(tmp_path, layers)), input_shape=(10,))
    assert model.sources == [[-1], [-1, 0], [1]]


@pytest.mark.parametrize("layers, path, message", [
    ("    - {type: dense, units: 4}\n    - {type: add, inputs: [dense, nowhere]}\n"
     "    - {type: dense, units: 1, activation: sigmoid}\n",
     ("model", "layers", 1, "inputs", 1), "no layer or input above is named 'nowhere' (known: input, dense)"),
    ("    - {type: dense, units: 4, inputs: last}\n    - {name: last, type: dense, units: 1, activation: sigmoid}\n",
     ("model", "layers", 0, "inputs"), "'last' is this layer or one below it"),
    ("    - {type: dense, units: 4}\n    - {type: dense, units: 1, activation: sigmoid, inputs: [input, dense]}\n",
     ("model", "layers", 1, "inputs"), "dense 'dense_1' takes one input, got 2"),
    ("    - {type: dense, units: 4}\n    - {type: dense, units: 3, inputs: input}\n"
     "    - {type: add, inputs: [dense, dense_1]}\n    - {type: dense, units: 1, activation: sigmoid}\n",
     ("model", "layers", 2, "inputs"), "(4,)"),
    ("    - {type: dense, units: 4}\n    - {type: dense, units: 4, inputs: input}\n"
     "    - {type: dense, units: 1, activation: sigmoid, inputs: dense_1}\n",
     ("model", "layers", 0), "the output of dense 'dense' is not used"),
    ("    - {name: input, type: dense, units: 4}\n    - {type: dense, units: 1, activation: sigmoid, inputs: input}\n",
     ("model", "layers", 0, "name"), "already taken by the model input"),
], ids=["unknown", "later", "two-into-dense", "shapes", "unused", "name-clash"])
def test_graph_mistakes_are_located(tmp_path, layers, path, message):
    errors = _errors(tmp_path, layers)
    assert len(errors) == 1, errors
    assert errors[0][0] == path and message in errors[0][1], errors
    assert errors[0][2] == 8 + path[2]  # the layer's own line in the file


def test_outputs_must_name_a_layer(tmp_path):
    errors = _errors(tmp_path, RESIDUAL, "  outputs: [nothing]\n")
    assert errors[0][0] == ("model", "outputs", 0) and "no layer is named 'nothing'" in errors[0][1]


def test_check_reports_a_graph_error_as_one_located_line(tmp_path):
    path = _config(tmp_path, "    - {type: dense, units: 4}\n    - {type: add, inputs: [dense, nowhere]}\n"
                             "    - {type: dense, units: 1, activation: sigmoid}\n")
    result = invoke("check", path)
    assert result.exit_code == 2
    assert f"{path}:9:" in result.output and "nowhere" in result.output and "Traceback" not in result.output


SHARED = """\
    - {name: encoder, type: dense, units: 6, activation: tanh}
    - {type: dense, units: 10, inputs: input}
    - {name: encoded_again, apply: encoder}
    - {type: add, inputs: [encoder, encoded_again]}
    - {type: dense, units: 1, activation: sigmoid}
"""


def test_apply_shares_a_layer_above_and_trains(tmp_path):
    path = _config(tmp_path, SHARED)
    model = build_model(load_config(path), input_shape=(10,))
    assert model.first_use == [0, 1, 0, 3, 4] and model.sources == [[-1], [-1], [1], [0, 2], [3]]
    assert [p.name for p in model.store.weights].count("encoder/kernel") == 1
    runs = tmp_path / "runs"
    result = invoke("train", path, "--runs-dir", runs)
    assert result.exit_code == 0, result.output
    evaluated = invoke("evaluate", next(runs.glob("graph*")))  # reads the saved config's `apply` back
    assert evaluated.exit_code == 0, evaluated.output
    summary = invoke("summary", path).output
    assert "input, dense" in summary  # encoder's two uses in its "Connected to"


@pytest.mark.parametrize("layers, path, message", [
    ("    - {type: dense, units: 4}\n    - {apply: nothing}\n    - {type: dense, units: 1, activation: sigmoid}\n",
     ("model", "layers", 1, "apply"), "no layer above is named 'nothing' (layers: dense)"),
    ("    - {type: dense, units: 4}\n    - {apply: dense}\n    - {type: dense, units: 1, activation: sigmoid}\n",
     ("model", "layers", 1), "shared: it was built for inputs of shape (10,)"),
    ("    - {type: dense, units: 4}\n    - {apply: dense, inputs: input, units: 3}\n"
     "    - {type: dense, units: 1, activation: sigmoid}\n", ("model", "layers", 1, "units"), "unknown key"),
], ids=["unknown", "shape", "extra-key"])
def test_apply_mistakes_are_located(tmp_path, layers, path, message):
    errors = _errors(tmp_path, layers)
    assert len(errors) == 1 and errors[0][0] == path and message in errors[0][1], errors


def test_one_mistake_is_one_error_not_a_cascade(tmp_path):
    errors = _errors(tmp_path, "    - {type: dense, units: 4}\n    - {type: add, inputs: [dense, nothing]}\n"
                               "    - {type: dense, units: 1, activation: sigmoid, inputs: [input, add]}\n"
                               "    - {type: dense, units: 1, activation: sigmoid}\n")
    assert [path for path, _, _ in errors] == [("model", "layers", 1, "inputs", 1)]
