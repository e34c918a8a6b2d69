"""Plugins (nnctl/plugins.py): a user's layers, losses and metrics found from YAML — a file in `plugins:`, a
`module:Class` type, an entry point — trained, recorded by sha256, refused when changed, and every mistake
located."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from nnctl.config import load_config
from nnctl.config.yamlfile import ConfigError
from nnctl.nn.model import Sequential
from nnctl.train.session import prepare
from tests.conftest import invoke, run_path, write_npz

EXAMPLE = Path(__file__).parent.parent / "examples" / "plugins" / "my_layers.py"
CONFIG = """\
name: plug
seed: 4
plugins: [./my_layers.py]
data:
  path: tiny.npz
  validation: {split: 0.25}
model:
  layers:
    - {type: LAYER1}
    - {type: LAYER2}
loss: LOSS
metrics: [accuracy, my_layers.MeanPrediction]
optimizer: {type: rmsprop, learning_rate: 0.01}
epochs: 3
batch_size: 16
"""


def _config(tmp_path, layer1="my_layers.SimpleDense, units: 8, activation: relu",
            layer2="my_layers.SimpleDense, units: 1, activation: sigmoid", loss="binary_crossentropy", extra=""):
    shutil.copy(EXAMPLE, tmp_path / "my_layers.py")
    write_npz(tmp_path / "tiny.npz")
    path = tmp_path / "plug.yaml"
    path.write_text(CONFIG.replace("LAYER1", layer1).replace("LAYER2", layer2).replace("LOSS", loss) + extra)
    return path


def _issues(path):
    with pytest.raises(ConfigError) as caught:
        prepare(load_config(path))
    return [(issue.path, issue.message, issue.source.line) for issue in caught.value.issues]


def test_simple_dense_from_a_plugin_trains_as_dense(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    custom = invoke("train", _config(tmp_path))
    assert custom.exit_code == 0, custom.output
    builtin = invoke("train", _config(tmp_path, "dense, units: 8, activation: relu, kernel_initializer: random_normal",
                                      "dense, units: 1, activation: sigmoid, kernel_initializer: random_normal"))
    a, b = (json.loads((run_path(r.output) / "history.json").read_text()) for r in (custom, builtin))
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-5)
    np.testing.assert_allclose(a["val_accuracy"], b["val_accuracy"])
    assert "mean_prediction" in a and a["loss"][-1] < a["loss"][0]
    assert not (tmp_path / "__pycache__").exists()  # the plugin ran from its bytes: nothing written beside it
    manifest = json.loads((run_path(custom.output) / "manifest.json").read_text())
    digest = __import__("hashlib").sha256((tmp_path / "my_layers.py").read_bytes()).hexdigest()
    assert manifest["plugins"] == [{"path": str((tmp_path / "my_layers.py").resolve()), "sha256": digest}]


def test_a_changed_plugin_is_refused_by_evaluate_predict_and_resume(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = run_path(invoke("train", _config(tmp_path)).output)
    np.save(tmp_path / "x.npy", np.zeros((3, 10), np.float32))
    assert invoke("evaluate", run).exit_code == 0
    with open(tmp_path / "my_layers.py", "a") as handle:
        handle.write("\nprint('this must not run')\n")
    for args in (("evaluate", run), ("predict", run, "--input", tmp_path / "x.npy"),
                 ("train", "--resume", run, "--set", "epochs=4")):
        result = invoke(*args)
        assert result.exit_code == 2, result.output
        assert "changed since the run was trained" in result.output and "this must not run" not in result.output
        assert result.output.count("error:") == 1  # no follow-on "unknown layer" lines
    shutil.copy(EXAMPLE, tmp_path / "my_layers.py")
    assert invoke("predict", run, "--input", tmp_path / "x.npy").exit_code == 0


def test_a_plugin_loss_matches_its_formula_and_central_differences(tmp_path):
    from nnctl import plugins

    loaded = plugins.load_file(EXAMPLE)
    assert "my_layers.squared_hinge" in loaded.names
    from nnctl.nn.losses import LOSSES

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(10, 4)), (rng.random((10, 1)) < 0.5).astype(float)
    model = Sequential([{"type": "dense", "units": 1, "activation": "tanh"}], input_shape=(4,), seed=1,
                       dtype="float64")
    model.compile("sgd", LOSSES.get("my_layers.SquaredHinge"))
    loss, grads = model.compute_gradients(x, y)
    pred = model.predict(x)
    signs = np.where(y > 0.5, 1.0, -1.0)
    assert loss == pytest.approx(float(np.mean(np.maximum(1 - signs * pred, 0) ** 2)), rel=1e-9)
    kernel = model.store.weights[0]
    for index in np.ndindex(kernel.value.shape):
        keep = kernel.value[index]
        kernel.value[index] = keep + 1e-4
        up = model.compute_gradients(x, y)[0]
        kernel.value[index] = keep - 1e-4
        down = model.compute_gradients(x, y)[0]
        kernel.value[index] = keep
        assert grads[kernel.name][index] == pytest.approx((up - down) / 2e-4, rel=1e-4, abs=1e-8)


def test_a_plugin_loss_trains_from_yaml(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke("train", _config(tmp_path, layer2="my_layers.SimpleDense, units: 1, activation: tanh",
                                     loss="my_layers.SquaredHinge"))
    assert result.exit_code == 0, result.output
    history = json.loads((run_path(result.output) / "history.json").read_text())
    assert history["loss"][-1] < history["loss"][0]


def test_module_class_types_and_entry_points(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    package = tmp_path / "site"
    package.mkdir()
    (package / "tinylayers.py").write_text(EXAMPLE.read_text())
    dist = package / "tinylayers-1.2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tinylayers\nVersion: 1.2.3\n")
    (dist / "top_level.txt").write_text("tinylayers\n")
    (dist / "entry_points.txt").write_text("[nnctl.layers]\nsimple_dense_ep = tinylayers:SimpleDense\n")
    monkeypatch.syspath_prepend(str(package))
    by_module = invoke("train", _config(tmp_path, layer1='"tinylayers:SimpleDense", units: 8, activation: relu',
                                        extra="\n"))
    assert by_module.exit_code == 0, by_module.output
    manifest = json.loads((run_path(by_module.output) / "manifest.json").read_text())
    assert {"module": "tinylayers", "version": "1.2.3"} in manifest["plugins"]
    by_entry = invoke("train", _config(tmp_path, layer1="simple_dense_ep, units: 8, activation: relu"))
    assert by_entry.exit_code == 0, by_entry.output
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tinylayers\nVersion: 2.0.0\n")
    changed = invoke("evaluate", run_path(by_module.output))
    assert changed.exit_code == 2 and "version 2.0.0 now, the run was trained with 1.2.3" in changed.output
    sys.modules.pop("tinylayers", None)


def test_plugin_mistakes_are_located(tmp_path):
    path = _config(tmp_path, layer1="my_layers.SimpleDens, units: 8")
    found = _issues(path)
    assert found[0][0] == ("model", "layers", 0, "type") and "did you mean 'my_layers.simple_dense'" in found[0][1]
    found = _issues(_config(tmp_path, layer1="my_layers.SimpleDense, unit: 8"))
    assert found[0][0] == ("model", "layers", 0, "unit") and found[0][2] == 9
    (tmp_path / "broken.py").write_text("from nnctl.nn.layers import Layer\n\nclass Broken(Layer:\n    pass\n")
    path.write_text(path.read_text().replace("[./my_layers.py]", "[./my_layers.py, ./broken.py]"))
    found = _issues(path)
    assert found[0][0] == ("plugins", 1) and "broken.py:3: the plugin fails to load: SyntaxError" in found[0][1]
    (tmp_path / "empty.py").write_text("x = 1\n")
    path.write_text(_config(tmp_path).read_text().replace("[./my_layers.py]", "[./empty.py]"))
    found = _issues(path)
    assert "defines no layer, loss or metric" in found[0][1]
    assert "`plugins`" in found[1][1]  # my_layers.… is not listed any more: say where it would go
    path.write_text(_config(tmp_path).read_text().replace("plugins: [./my_layers.py]\n", ""))
    found = _issues(path)
    assert "comes from a plugin this config does not list" in found[0][1]
    path.write_text(_config(tmp_path).read_text().replace("[./my_layers.py]", "[./missing.py]"))
    assert "no such plugin file" in _issues(path)[0][1]


def test_a_module_class_type_finds_the_file_beside_the_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _config(tmp_path, layer1='"my_layers:SimpleDense", units: 8, activation: relu',
                   layer2='"my_layers:SimpleDense", units: 1, activation: sigmoid')
    path.write_text(path.read_text().replace("plugins: [./my_layers.py]\n", ""))
    result = invoke("train", path)
    assert result.exit_code == 0, result.output
    run = run_path(result.output)
    manifest = json.loads((run / "manifest.json").read_text())
    assert [entry["path"] for entry in manifest["plugins"]] == [str((tmp_path / "my_layers.py").resolve())]
    assert invoke("evaluate", run).exit_code == 0  # the saved config lists the file it found
