"""`nnctl compare` leaves out a config key that only an older run lacks, where the others hold its default."""

from __future__ import annotations

import yaml

from nnctl.runs.config_diff import leaf_paths
from nnctl.runs.browse import config_diff, flatten_config
from tests.conftest import invoke
from tests.runs.test_browse import CLASSIFIER, write_run

OLD = {"name": "mlp", "data": {"path": "a.npz"}, "model": {"layers": [{"type": "dense", "units": 3}]},
       "loss": "mse", "optimizer": {"type": "rmsprop", "learning_rate": 0.001}}
NEW = {**OLD, "device": "cpu", "batch_size": 32,  # what a newer nnctl writes: every default filled in
       "model": {"layers": [{"type": "dense", "units": 3, "use_bias": True}]},
       "optimizer": {"type": "rmsprop", "learning_rate": 0.001, "rho": 0.9}}


def test_keys_absent_only_where_the_default_holds_are_left_out():
    assert config_diff([yaml.safe_dump(OLD), yaml.safe_dump(NEW)]) == []  # before: 4 rows of "(absent)"
    changed = {**NEW, "batch_size": 64, "optimizer": {**NEW["optimizer"], "rho": 0.8}}
    assert config_diff([yaml.safe_dump(OLD), yaml.safe_dump(changed), None]) == [
        ("batch_size", ["(absent)", "64", "?"]), ("optimizer.rho", ["(absent)", "0.8", "?"])]


def test_a_required_key_or_an_unknown_one_is_still_a_difference():
    extra = {**OLD, "model": {"layers": [{"type": "dense", "units": 3}, {"type": "dense", "units": 1}]},
             "custom": 1}
    assert sorted(config_diff([yaml.safe_dump(OLD), yaml.safe_dump(extra)])) == [
        ("custom", ["(absent)", "1"]), ("model.layers[1].type", ["(absent)", "dense"]),
        ("model.layers[1].units", ["(absent)", "1"])]  # a layer only one run has is a difference in full


def test_leaf_paths_spell_keys_as_flatten_config():
    config = {"a": {"b": [{"c": 1}, {}]}, "x": [], "y": "s"}
    paths = leaf_paths(config)
    assert list(paths) == list(flatten_config(config))
    assert paths["a.b[0].c"] == (("a", "b", 0, "c"), 1) and paths["a.b[1]"] == (("a", "b", 1), {})


def test_compare_shows_no_difference_for_an_absent_default(tmp_path):
    first = write_run(tmp_path / "runs", "mlp", CLASSIFIER, config=OLD)
    second = write_run(tmp_path / "runs", "mlp", CLASSIFIER, config=NEW)
    result = invoke("compare", first.path, second.path)
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith("config: identical\n")
