"""`nnctl check`: every problem of a config in one run (duplicate keys, schema, names, data, shapes), in file order."""

from __future__ import annotations

import pytest

from nnctl.config.check import check_config
from nnctl.config.yamlfile import ConfigError
from tests.conftest import TINY_CONFIG, invoke, write_npz

# One mistake of each family, each on its own line (the comments name the family).
EVERY_FAMILY = """\
name: tiny
seed: 1
seed: 2                                          # duplicate key
data:
  path: {path}
  validation: {{split: 0.2}}
model:
  input_shape: [7]                               # shape: the data has 10 features
  layers:
    - {{type: dense, units: 8, activation: relu, unitz: 3}}
    - {{type: dense, units: 1, activation: {activation}}}
loss: binary_crossentropy
optimizer: {{type: rmsprop, learning_rate: 0.01}}
epochs: 3
batch_size: -16
"""


def issues_of(path, *overrides) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        check_config(path, overrides)
    return [str(issue) for issue in caught.value.issues]


def test_every_family_is_listed_in_one_go_in_file_order(tmp_path):
    write_npz(tmp_path / "tiny.npz")
    config = tmp_path / "bad.yaml"
    config.write_text(EVERY_FAMILY.format(path="tiny.npz", activation="sigmoid"), encoding="utf-8")
    found = issues_of(config)
    assert [int(issue.split(":")[1]) for issue in found] == [3, 8, 10, 15]  # before: only line 3
    assert "duplicate key 'seed'" in found[0]
    assert "model.input_shape: the model takes inputs of shape [7]" in found[1]
    assert "unknown key 'unitz' — did you mean 'units'?" in found[2]
    assert "batch_size: expected a positive integer, got -16" in found[3]
    result = invoke("check", config)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.stderr.splitlines() == [f"error: {issue}" for issue in found]


def test_names_are_listed_with_the_schema_issues(tmp_path):
    write_npz(tmp_path / "tiny.npz")
    config = tmp_path / "bad.yaml"
    config.write_text(EVERY_FAMILY.format(path="tiny.npz", activation="sigmoyd"), encoding="utf-8")
    found = issues_of(config)  # a model with an unknown name is not built: no shape is checked against it
    assert [int(issue.split(":")[1]) for issue in found] == [3, 10, 11, 15]
    assert "unknown activation 'sigmoyd' — did you mean 'sigmoid'?" in found[2]


def test_a_missing_data_file_is_listed_with_the_rest(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(EVERY_FAMILY.format(path="missing.npz", activation="sigmoyd"), encoding="utf-8")
    found = issues_of(config)
    assert any(":5:" in issue and "data.path" in issue and "missing.npz" in issue for issue in found)
    assert sum("duplicate key" in issue or "unitz" in issue or "sigmoyd" in issue or "batch_size" in issue
               for issue in found) == 4  # the model is still checked: model.input_shape is given


def test_an_unusable_config_stops_before_the_data(tmp_path):
    write_npz(tmp_path / "tiny.npz", features=7)
    config = tmp_path / "bad.yaml"
    config.write_text(TINY_CONFIG.replace("units: 8", "units: many"), encoding="utf-8")
    [issue] = issues_of(config)  # `units` has no default: the data is not read for a model that cannot exist
    assert issue.startswith(f"{config}:8:") and "model.layers[0].units" in issue


def test_a_refused_value_is_reported_once(tmp_path):
    write_npz(tmp_path / "tiny.npz")
    config = tmp_path / "bad.yaml"
    config.write_text(TINY_CONFIG.replace("epochs: 3", "epochs: !!python/object:os.system 3"), encoding="utf-8")
    [issue] = issues_of(config)
    assert "epochs: YAML tag" in issue


def test_a_good_config_prepares_data_and_model(tmp_path):
    write_npz(tmp_path / "tiny.npz")
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_CONFIG, encoding="utf-8")
    prepared = check_config(config)
    assert prepared.model.input_shape == (10,) and len(prepared.splits.train[1]) == 192
    result = invoke("check", config)
    assert result.exit_code == 0 and result.stdout.startswith(f"{config}: ok (2 layers")


def test_invalid_yaml_is_one_issue(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("name: [tiny\n", encoding="utf-8")
    [issue] = issues_of(config)
    assert "invalid YAML" in issue
