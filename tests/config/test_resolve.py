"""nnctl.config.resolve: load_config fills `name` and `seed`, applies `--set`, and round-trips through to_yaml."""

from __future__ import annotations

import pytest

from nnctl.config import ConfigError, load_config
from nnctl.config.yamlfile import Source

MINIMAL = """\
data: {path: data.npz}
model:
  layers:
    - {type: dense, units: 1, activation: sigmoid}
loss: binary_crossentropy
"""


@pytest.fixture
def minimal(tmp_path):
    path = tmp_path / "my-experiment.yaml"
    path.write_text(MINIMAL, encoding="utf-8")
    return path


def test_name_defaults_to_the_file_stem(minimal):
    assert load_config(minimal).config.name == "my-experiment"


@pytest.mark.parametrize("file_name, name", [("no name.yaml", "no_name"), ("日本.yaml", "run_e697a5e69cac"),
                                             ("日本 mnist.yaml", "mnist"), (".hidden-.yaml", "hidden"),
                                             ("mnist.v2.yaml", "mnist.v2"), ("a" * 150 + ".yaml", "a" * 100)])
def test_a_name_from_the_file_name_is_made_valid(tmp_path, file_name, name):
    path = tmp_path / file_name
    path.write_text(MINIMAL, encoding="utf-8")
    assert load_config(path).config.name == name  # before: a ConfigError on `name` for the first four


def test_two_unreadable_file_names_get_two_names(tmp_path):
    names = set()
    for stem in ("日本", "中国"):
        (tmp_path / f"{stem}.yaml").write_text(MINIMAL, encoding="utf-8")
        names.add(load_config(tmp_path / f"{stem}.yaml").config.name)
    assert len(names) == 2


@pytest.mark.parametrize("config, overrides, hint", [
    ("optimizer: {type: rmsprop, lr: 0.01}\n", (), "optimizer.lr: unknown key 'lr' — did you mean 'learning_rate'?"),
    ("", ("optimizer.lr=0.01",), "unknown key 'lr' — did you mean 'learning_rate'?"),
    ("device: gpu\n", (), "device: expected one of cpu, cuda, auto, got 'gpu' — did you mean 'cuda'?"),
    ("nb_epoch: 3\n", (), "unknown key 'nb_epoch' — did you mean 'epochs'?"),
])
def test_did_you_mean_for_names_from_other_tools(minimal, config, overrides, hint):
    minimal.write_text(MINIMAL + config, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(minimal, overrides)
    assert hint in str(caught.value)


def test_a_random_seed_is_drawn_and_recorded(minimal):
    first, second = load_config(minimal), load_config(minimal)
    assert isinstance(first.config.seed, int) and 0 <= first.config.seed < 2**31
    assert first.config.seed != second.config.seed  # 1 chance in 2**31 of a false failure
    assert f"seed: {first.config.seed}\n" in first.to_yaml()


def test_given_name_and_seed_are_kept(minimal):
    minimal.write_text("name: other\nseed: 7\n" + MINIMAL, encoding="utf-8")
    config = load_config(minimal).config
    assert (config.name, config.seed) == ("other", 7)


def test_defaults(minimal):
    config = load_config(minimal).config
    assert (config.epochs, config.batch_size, config.device, config.metrics) == (1, 32, "cpu", [])
    assert config.optimizer.type == "rmsprop" and config.optimizer.learning_rate == 0.001


@pytest.mark.parametrize("spelling", ["RMSprop", "rms_prop", "RMSProp", "rmsprop"])
def test_names_are_canonicalized(minimal, spelling):
    assert load_config(minimal, [f"optimizer={spelling}"]).config.optimizer.type == "rmsprop"


def test_overrides_are_applied_and_located(minimal):
    resolved = load_config(minimal, ["epochs=2", "optimizer.learning_rate=0.05", "model.layers[0].units=1"])
    assert resolved.config.epochs == 2
    assert resolved.config.optimizer.learning_rate == 0.05
    assert resolved.doc.source(("epochs",)) == Source("--set epochs=2")
    assert resolved.doc.source(("loss",)).line == 5


@pytest.mark.parametrize("optimizer", ["", "optimizer: rmsprop\n", "optimizer: RMSprop\n"])
def test_set_inside_a_default_or_bare_optimizer(minimal, optimizer):
    """`--set optimizer.learning_rate=...` works whether the optimizer is left out, a bare name or a mapping."""
    minimal.write_text(MINIMAL + optimizer, encoding="utf-8")
    config = load_config(minimal, ["optimizer.learning_rate=1e-4"]).config
    assert (config.optimizer.type, config.optimizer.learning_rate) == ("rmsprop", 1e-4)


def test_to_yaml_round_trips(minimal, tmp_path):
    resolved = load_config(minimal, ["epochs=4", "optimizer={type: adam, beta_1: 0.8}",
                                      "data.validation={holdout: 3}", "metrics=[accuracy, {type: auc}]"])
    saved = tmp_path / "resolved.yaml"
    saved.write_text(resolved.to_yaml(), encoding="utf-8")
    again = load_config(saved)
    assert again.config == resolved.config
    assert again.to_yaml() == resolved.to_yaml()


def test_resolved_yaml_has_every_default(minimal):
    text = load_config(minimal).to_yaml()
    for key in ("epochs: 1", "batch_size: 32", "use_bias: true", "kernel_initializer: glorot_uniform",
                "learning_rate: 0.001", "device: cpu"):
        assert key in text


def test_missing_file():
    with pytest.raises(ConfigError, match=r"nope\.yaml: no such config file"):
        load_config("nope.yaml")


def test_label_replaces_the_path_in_messages(minimal):
    minimal.write_text(MINIMAL.replace("units: 1", "units: x"), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(minimal, label="configs/x.yaml")
    assert str(caught.value) == "configs/x.yaml:4:28: model.layers[0].units: expected a positive integer, got 'x'"


def test_set_errors_and_file_errors_are_distinct(minimal):
    with pytest.raises(ConfigError) as caught:
        load_config(minimal, ["epochs=0"])
    assert str(caught.value) == "--set epochs=0: epochs: expected a positive integer, got 0"
