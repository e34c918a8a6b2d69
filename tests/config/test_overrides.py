"""nnctl.config.overrides: `--set key.path=value` paths, YAML values, and the sources they leave behind."""

from __future__ import annotations

import pytest

from nnctl.config.overrides import apply_overrides, parse_key_path
from nnctl.config.yamlfile import ConfigError, Source, parse_yaml

TEXT = """\
epochs: 3
optimizer: rmsprop
model:
  layers:
    - {type: dense, units: 8}
    - {type: dense, units: 1}
"""


@pytest.mark.parametrize("text, path", [
    ("a.b[2].c", ("a", "b", 2, "c")),
    ("a.b.2.c", ("a", "b", 2, "c")),
    ("epochs", ("epochs",)),
    ("model.layers[0].units", ("model", "layers", 0, "units")),
    ("a[0][1]", ("a", 0, 1)),
    ("a.b.10", ("a", "b", 10)),
    ("learning_rate_2", ("learning_rate_2",)),
    ("_private.x", ("_private", "x")),
])
def test_parse_key_path(text, path):
    assert parse_key_path(text) == path


@pytest.mark.parametrize("text", [
    "", ".a", "a.", "a..b", "[0]", "0.a", "a b", "a[x]", "a-b", "a.2b", "a[1]x", "a[-1]", "a.b=c",
])
def test_malformed_key_paths(text):
    with pytest.raises(ValueError, match="cannot read key path"):
        parse_key_path(text)


def apply(*assignments, text=TEXT):
    return apply_overrides(parse_yaml(text, "c.yaml"), list(assignments))


def test_replace_a_value_and_record_its_source():
    doc = apply("epochs=5")
    assert doc.data["epochs"] == 5
    assert doc.source(("epochs",)) == Source("--set epochs=5")
    assert doc.key_source(("epochs",)) == Source("--set epochs=5")
    assert doc.source(("optimizer",)) == Source("c.yaml", 2, 12)  # untouched values keep their file position


def test_new_top_level_and_nested_keys():
    doc = apply("batch_size=64", "data.validation.split=0.2")
    assert doc.data["batch_size"] == 64
    assert doc.data["data"] == {"validation": {"split": 0.2}}
    for path in (("data",), ("data", "validation"), ("data", "validation", "split")):
        assert doc.source(path) == Source("--set data.validation.split=0.2")


@pytest.mark.parametrize("assignment", ["model.layers[1].units=3", "model.layers.1.units=3"])
def test_list_index(assignment):
    doc = apply(assignment)
    assert doc.data["model"]["layers"] == [{"type": "dense", "units": 8}, {"type": "dense", "units": 3}]
    assert doc.source(("model", "layers", 1, "units")) == Source(f"--set {assignment}")
    assert doc.source(("model", "layers", 1, "type")) == Source("c.yaml", 6, 14)


def test_flow_values_replace_the_whole_subtree():
    doc = apply("model.layers[0]={type: dropout, rate: 0.5}", "optimizer={type: adam, learning_rate: 1e-3}",
                "metrics=[accuracy, auc]")
    assert doc.data["model"]["layers"][0] == {"type": "dropout", "rate": 0.5}
    assert doc.data["optimizer"] == {"type": "adam", "learning_rate": 0.001}
    assert doc.data["metrics"] == ["accuracy", "auc"]
    label = "--set model.layers[0]={type: dropout, rate: 0.5}"
    assert doc.source(("model", "layers", 0, "rate")) == Source(label)
    # Nothing of the replaced value keeps a position in the file.
    assert ("model", "layers", 0, "units") not in doc.values
    assert doc.source(("model", "layers", 0, "units")) == Source(label)
    assert doc.source(("metrics", 1)) == Source("--set metrics=[accuracy, auc]")


def test_values_are_read_as_yaml_1_2():
    doc = apply("a=1e-3", "b=yes", "c='5'", "d=~", "e=0x10", "f=", "g=a=b")
    assert doc.data["a"] == 0.001
    assert doc.data["b"] == "yes"
    assert doc.data["c"] == "5"
    assert doc.data["d"] is None and doc.data["f"] is None
    assert doc.data["e"] == 16
    assert doc.data["g"] == "a=b"  # only the first `=` separates the path


def test_a_bare_name_takes_keys_as_type_plus_arguments():
    doc = apply("optimizer.learning_rate=0.05")
    assert doc.data["optimizer"] == {"type": "rmsprop", "learning_rate": 0.05}
    assert doc.source(("optimizer", "type")) == Source("c.yaml", 2, 12)
    assert doc.source(("optimizer", "learning_rate")) == Source("--set optimizer.learning_rate=0.05")


def test_later_overrides_win():
    assert apply("epochs=2", "epochs=7").data["epochs"] == 7


def test_every_bad_override_is_reported_together():
    with pytest.raises(ConfigError) as caught:
        apply("model.layers[5].units=3", "epochs=4", "epochs.x=1", "nothing", "a=[1", "b=!!python/name:os.system x")
    assert [str(issue) for issue in caught.value.issues] == [
        "--set model.layers[5].units=3: model.layers[5].units: index 5 is out of range (the list has 2 entries)",
        "--set epochs.x=1: epochs.x: 'x' is set inside a value that is not a mapping",
        "--set nothing: expected key.path=value, e.g. --set epochs=5",
        "--set a=[1: invalid YAML: expected ',' or ']', but got '<stream end>'",
        "--set b=!!python/name:os.system x: YAML tag '!!python/name:os.system' is not allowed: nnctl reads plain "
        "values only (mappings, lists, strings, numbers, booleans)",
    ]
    assert all(issue.source.line is None for issue in caught.value.issues)


def test_index_into_a_non_list():
    with pytest.raises(ConfigError, match=r"epochs\[0\]: index 0 is out of range \(the list has 0 entries\)"):
        apply("epochs[0]=1")


def test_singular_entry():
    with pytest.raises(ConfigError, match=r"the list has 1 entry\)"):
        apply("a[3]=1", text="a: [1]\n")


def test_override_on_an_empty_document():
    doc = apply_overrides(parse_yaml("", "c.yaml"), ["epochs=2"])
    assert doc.data == {"epochs": 2}
