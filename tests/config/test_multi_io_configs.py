"""Configs with several inputs and outputs (model.inputs, model.outputs, loss/metrics/loss_weights by output):
the book's ticket model trains from YAML on generated and on .npz data, every command reads its run, and each
mistake is one located error."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nnctl.config import load_config
from nnctl.config.yamlfile import ConfigError
from nnctl.data.builtin import load_synthetic
from nnctl.train.session import prepare
from tests.conftest import invoke, run_path

MODEL = """\
model:
  inputs:
    title: {shape: [300]}
    text_body: {shape: [300]}
    tags: {shape: [12]}
  layers:
    - {name: features, type: concatenate, inputs: [title, text_body, tags]}
    - {type: dense, units: 16, activation: relu}
    - {name: priority, type: dense, units: 1, activation: sigmoid}
    - {name: department, type: dense, units: 4, activation: softmax, inputs: dense}
  outputs: [priority, department]
"""
COMPILE = """\
loss: {priority: mean_squared_error, department: categorical_crossentropy}
loss_weights: {priority: 1.0, department: 0.5}
metrics: {priority: [mean_absolute_error], department: [accuracy]}
optimizer: {type: rmsprop, learning_rate: 0.003}
epochs: 3
batch_size: 32
"""
SYNTHETIC = """\
name: tickets
seed: 3
data:
  dataset: {type: synthetic, kind: tickets, samples: 400, width: 300, features: 12, classes: 4, noise: 0.3}
  validation: {split: 0.2}
"""


def _write(tmp_path, data=SYNTHETIC, model=MODEL, compile_=COMPILE, extra=""):
    path = tmp_path / "tickets.yaml"
    path.write_text(data + model + compile_ + extra)
    return path


def _issues(path):
    with pytest.raises(ConfigError) as caught:
        prepare(load_config(path))
    return [(issue.path, issue.message, issue.source.line) for issue in caught.value.issues]


def _tickets_npz(path, samples=200):
    data = load_synthetic(kind="tickets", samples=samples, width=300, features=12, classes=4, noise=0.3)
    arrays = {**data.x_train.arrays, **data.y_train.arrays,
              **{f"{k}_test": v for k, v in data.x_test.arrays.items()},
              **{f"{k}_test": v for k, v in data.y_test.arrays.items()}}
    np.savez(path, **arrays)
    return data


def test_the_ticket_config_trains_and_every_command_reads_the_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("train", _write(tmp_path, extra="callbacks: [{type: early_stopping, monitor: "
                                                    "val_department_accuracy, patience: 5}]\n"))
    assert result.exit_code == 0, result.output
    run = run_path(result.output)
    history = json.loads((run / "history.json").read_text())
    keys = ["loss", "priority_loss", "department_loss", "priority_mean_absolute_error", "department_accuracy"]
    assert [k for k in history if k not in ("epoch_time", "lr")] == keys + [f"val_{k}" for k in keys]
    assert history["department_accuracy"][-1] > history["department_accuracy"][0]
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(keys) <= set(metrics["test"])
    evaluated = invoke("evaluate", run)
    assert evaluated.exit_code == 0 and "department_accuracy" in evaluated.output
    data = load_synthetic(kind="tickets", samples=30, width=300, features=12, classes=4)
    np.savez(tmp_path / "new.npz", **data.x_test.arrays)
    import nnctl
    priority, department = nnctl.load_run(run).predict(data.x_test.arrays)
    assert priority.shape == (6, 1) and department.shape == (6, 4)
    shown = invoke("predict", run, "--input", tmp_path / "new.npz")
    assert shown.exit_code == 0 and "department class" in shown.output and "priority" in shown.output
    assert invoke("predict", run, "--input", tmp_path / "new.npz", "--output", tmp_path / "p.npz").exit_code == 0
    with np.load(tmp_path / "p.npz") as saved:
        assert saved["priority"].shape == (6, 1) and saved["department"].shape == (6, 4)
        np.testing.assert_allclose(saved["department"].sum(axis=1), 1.0, rtol=1e-5)
    assert invoke("predict", run, "--input", tmp_path / "new.npz", "--output", tmp_path / "p.csv").exit_code == 0
    assert (tmp_path / "p_priority.csv").read_text().startswith("output\n")
    assert (tmp_path / "p_department.csv").read_text().startswith("output_0,output_1,output_2,output_3\n")
    np.savez(tmp_path / "wrong.npz", title=data.x_test["title"], body=data.x_test["text_body"])
    wrong = invoke("predict", run, "--input", tmp_path / "wrong.npz")
    assert wrong.exit_code == 2 and "no array named 'text_body', 'tags'; unknown array(s) 'body'" in wrong.output
    listed = invoke("runs")
    assert listed.exit_code == 0 and "val_loss" in listed.output  # several outputs: judged by the total loss
    resumed = invoke("train", "--resume", run, "--set", "epochs=4")
    assert resumed.exit_code == 0, resumed.output
    assert len(json.loads((run / "history.json").read_text())["loss"]) == 4


def test_npz_arrays_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _tickets_npz(tmp_path / "t.npz")
    path = _write(tmp_path, data="name: t\nseed: 1\ndata:\n  path: t.npz\n  validation: {split: 0.25}\n")
    prepared = prepare(load_config(path))
    x, y = prepared.splits.train
    assert x.names() == ["title", "text_body", "tags"] and y.names() == ["priority", "department"]
    assert prepared.splits.test is not None and len(prepared.splits.test[0]) == 40
    renamed = tmp_path / "r.npz"
    with np.load(tmp_path / "t.npz") as arrays:
        np.savez(renamed, **{f"a_{k}": v for k, v in arrays.items()})
    mapped = _write(tmp_path, data=(
        "name: t\nseed: 1\ndata:\n  dataset:\n    type: npz\n    path: r.npz\n"
        "    x: {title: a_title, text_body: a_text_body, tags: a_tags}\n"
        "    y: {priority: a_priority, department: a_department}\n    x_test: null\n    y_test: null\n"))
    assert invoke("train", mapped).exit_code == 0


def test_mistakes_are_located(tmp_path):
    found = _issues(_write(tmp_path, compile_=COMPILE.replace("{priority: mean_squared_error,",
                                                               "{priorty: mean_squared_error,")))
    assert any(path == ("loss", "priorty") and "did you mean 'priority'" in message and line == 17
               for path, message, line in found), found
    assert any(path == ("loss",) and "no loss for output 'priority'" in message for path, message, _ in found)
    found = _issues(_write(tmp_path, compile_=COMPILE.replace("metrics: {priority: [mean_absolute_error], "
                                                               "department: [accuracy]}", "metrics: [accuracy]")))
    assert found[0][0] == ("metrics",) and "give metrics by output" in found[0][1]
    found = _issues(_write(tmp_path, model=MODEL.replace("inputs: [title, text_body, tags]", "inputs: [title, tags]")))
    assert found == [(("model", "inputs", "text_body"), "input 'text_body' is not read by any layer the outputs "
                                                         "depend on", 9)]
    found = _issues(_write(tmp_path, model=MODEL.replace("{name: features, type: concatenate, inputs: [title, "
                                                         "text_body, tags]}", "{type: dense, units: 4}")))
    assert "several inputs (title, text_body, tags)" in found[0][1] and found[0][2] == 12
    found = _issues(_write(tmp_path, model=MODEL.replace("outputs: [priority, department]",
                                                         "outputs: [priority, departement]")))
    assert found[0][0] == ("model", "outputs", 1) and "no layer is named 'departement'" in found[0][1]
    found = _issues(_write(tmp_path, extra="callbacks: [{type: early_stopping, monitor: val_departement_accuracy}]\n"))
    assert "did you mean 'val_department_accuracy'" in found[0][1]
    found = _issues(_write(tmp_path, data=SYNTHETIC.replace("  validation:", "  transforms: [standardize]\n"
                                                                            "  validation:")))
    assert found[0][0] == ("data", "transforms") and "several named inputs" in found[0][1]


def test_mistakes_in_named_data_are_located(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _tickets_npz(tmp_path / "t.npz")
    with np.load(tmp_path / "t.npz") as arrays:
        kept = {k: v for k, v in arrays.items() if k != "tags"}
        kept["tags"] = arrays["tags"][:, :5]
        np.savez(tmp_path / "narrow.npz", **kept)
        np.savez(tmp_path / "short.npz", **{k: v for k, v in arrays.items() if k != "department"})
    head = "name: t\nseed: 1\ndata:\n  path: {}\n"
    found = _issues(_write(tmp_path, data=head.format("short.npz")))
    assert found[0][0] == ("data", "path") and "no 'department' array" in found[0][1]
    found = _issues(_write(tmp_path, data=head.format("narrow.npz")))
    assert found[0][0] == ("model", "inputs", "tags", "shape") and "takes shape [12]" in found[0][1]
    one_input = tmp_path / "plain.npz"
    np.savez(one_input, x_train=np.zeros((10, 3)), y_train=np.zeros(10))
    found = _issues(_write(tmp_path, data=head.format("plain.npz")))
    assert "must map the model's inputs" in found[0][1] or "has no" in found[0][1]


def test_a_shared_embedding_from_yaml_reads_two_inputs_of_other_lengths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    title, body = rng.integers(1, 50, (160, 6)), rng.integers(1, 50, (160, 9))
    label = ((title < 10).any(axis=1) | (body < 5).any(axis=1)).astype(np.float32)
    np.savez(tmp_path / "words.npz", title=title, body=body, label=label)
    config = tmp_path / "shared.yaml"
    config.write_text("""\
name: shared
seed: 5
data: {path: words.npz, validation: {split: 0.25}}
model:
  inputs: {title: {shape: [6]}, body: {shape: [9]}}
  layers:
    - {name: words, type: embedding, input_dim: 50, output_dim: 8, inputs: title}
    - {name: title_vector, type: global_average_pooling1d}
    - {name: body_words, apply: words, inputs: body}
    - {name: body_vector, type: global_average_pooling1d}
    - {type: concatenate, inputs: [title_vector, body_vector]}
    - {name: label, type: dense, units: 1, activation: sigmoid}
loss: binary_crossentropy
metrics: [accuracy]
optimizer: {type: adam, learning_rate: 0.01}
epochs: 8
batch_size: 16
""")
    result = invoke("train", config)
    assert result.exit_code == 0, result.output
    run = run_path(result.output)
    history = json.loads((run / "history.json").read_text())
    assert history["loss"][-1] < history["loss"][0]
    from safetensors.numpy import load_file
    assert sorted(load_file(run / "weights.safetensors")) == ["label/bias", "label/kernel", "words/embeddings"]


GROUPS = """\
name: groups
seed: 1
data:
  dataset:
    type: csv
    path: groups.csv
    test_path: test.csv
    features: {a: [a0, a1, a2], b: [b0, b1]}
    target: {score: score, kind: kind}
  validation: {split: 0.2}
model:
  inputs: {a: {shape: [3]}, b: {shape: [2]}}
  layers:
    - {type: concatenate, inputs: [a, b]}
    - {type: dense, units: 16, activation: relu}
    - {name: score, type: dense, units: 1}
    - {name: kind, type: dense, units: 1, activation: sigmoid, inputs: dense}
  outputs: [score, kind]
loss: {score: mse, kind: binary_crossentropy}
metrics: {score: [mae], kind: [accuracy]}
optimizer: {type: adam, learning_rate: 0.01}
epochs: 6
batch_size: 16
"""


def _groups_csv(path, rows, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(rows, 3)), rng.normal(size=(rows, 2))
    lines = ["id,a0,a1,a2,b0,b1,score,kind"] + [
        f"r{i},{a[i, 0]:.5f},{a[i, 1]:.5f},{a[i, 2]:.5f},{b[i, 0]:.5f},{b[i, 1]:.5f},{a[i, 0] + b[i, 1]:.5f},"
        f"{'big' if a[i, 1] > 0 else 'small'}" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return a, b


def test_csv_column_groups_feed_inputs_and_outputs_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _groups_csv(tmp_path / "groups.csv", 300, 0)
    a, b = _groups_csv(tmp_path / "test.csv", 40, 1)
    (tmp_path / "groups.yaml").write_text(GROUPS)
    prepared = prepare(load_config(tmp_path / "groups.yaml"))
    x, y = prepared.splits.train
    assert x.names() == ["a", "b"] and x["b"].shape == (240, 2) and set(np.unique(y["kind"])) == {0.0, 1.0}
    result = invoke("train", tmp_path / "groups.yaml")
    assert result.exit_code == 0, result.output
    run = run_path(result.output)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["kind_accuracy"] > 0.8 and metrics["test"]["samples"] == 40
    # predict reads a CSV's columns by header name, in any order, extra columns ignored
    header = "kind,b1,b0,a2,a1,a0,id"
    rows = [f"big,{b[i, 1]},{b[i, 0]},{a[i, 2]},{a[i, 1]},{a[i, 0]},x" for i in range(3)]
    (tmp_path / "new.csv").write_text("\n".join([header] + rows) + "\n")
    shown = invoke("predict", run, "--input", tmp_path / "new.csv")
    assert shown.exit_code == 0, shown.output
    assert " big " in shown.output or " small " in shown.output  # class names from the training file
    (tmp_path / "short.csv").write_text("a0,a1,a2,b0\n1,2,3,4\n")
    missing = invoke("predict", run, "--input", tmp_path / "short.csv")
    assert missing.exit_code == 2 and "missing column(s) 'b1'" in missing.output


def test_csv_group_mistakes_are_located(tmp_path):
    _groups_csv(tmp_path / "groups.csv", 50, 0)
    _groups_csv(tmp_path / "test.csv", 10, 1)
    path = tmp_path / "groups.yaml"
    path.write_text(GROUPS.replace("b: [b0, b1]", "b: [b0, b9]"))
    found = _issues(path)
    assert found[0][0] == ("data", "dataset", "features", "b") and "b9" in found[0][1]
    path.write_text(GROUPS.replace("b: [b0, b1]", "b: [b0, score]"))
    assert "'score' is a target; it cannot also be a feature" in _issues(path)[0][1]
    path.write_text(GROUPS.replace("kind: kind}", "kind: kinds}"))
    assert _issues(path)[0][0] == ("data", "dataset", "target", "kind")


def test_kfold_with_several_outputs_trains_evaluates_and_averages_predictions(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, data=SYNTHETIC.replace("validation: {split: 0.2}", "validation: {kfold: 2}"),
                  compile_=COMPILE.replace("epochs: 3", "epochs: 1"))
    result = invoke("train", path)
    assert result.exit_code == 0, result.output
    run = run_path(result.output)
    evaluated = invoke("evaluate", run)
    assert evaluated.exit_code == 0 and "department_accuracy" in evaluated.output
    data = load_synthetic(kind="tickets", samples=20, width=300, features=12, classes=4)
    np.savez(tmp_path / "new.npz", **data.x_test.arrays)
    assert invoke("predict", run, "--input", tmp_path / "new.npz", "--output", tmp_path / "p.npz").exit_code == 0
    with np.load(tmp_path / "p.npz") as saved:
        folds = [nnctl_load(run / f"fold_{k}") for k in (1, 2)]
        for name, index in (("priority", 0), ("department", 1)):
            mean = np.mean([fold.predict(data.x_test.arrays)[index] for fold in folds], axis=0)
            np.testing.assert_allclose(saved[name], mean, rtol=1e-6)


def nnctl_load(folder):
    import nnctl

    return nnctl.load_run(folder.parent, weights=folder / "weights.safetensors")
