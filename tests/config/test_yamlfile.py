"""nnctl.config.yamlfile: safe YAML 1.2 scalars, 1-based positions of keys and values, located errors."""

from __future__ import annotations

import math

import pytest

from nnctl.config.yamlfile import ConfigError, ConfigIssue, Source, format_path, parse_yaml

TEXT = """\
name: demo
model:
  layers:
    - {type: dense, units: 16}
    - type: dropout
      rate: 0.5
"""


def test_value_and_key_positions_are_one_based():
    doc = parse_yaml(TEXT, "c.yaml")
    assert doc.values[("name",)] == Source("c.yaml", 1, 7)
    assert doc.keys[("name",)] == Source("c.yaml", 1, 1)
    assert doc.keys[("model", "layers")] == Source("c.yaml", 3, 3)
    assert doc.values[("model", "layers", 0)] == Source("c.yaml", 4, 7)
    assert doc.values[("model", "layers", 0, "units")] == Source("c.yaml", 4, 28)
    assert doc.keys[("model", "layers", 0, "units")] == Source("c.yaml", 4, 21)
    assert doc.values[("model", "layers", 1, "rate")] == Source("c.yaml", 6, 13)
    assert doc.keys[("model", "layers", 1, "rate")] == Source("c.yaml", 6, 7)


def test_source_falls_back_to_the_nearest_known_parent():
    doc = parse_yaml(TEXT, "c.yaml")
    assert doc.source(("model", "layers", 0, "activation")) == Source("c.yaml", 4, 7)
    assert doc.source(("missing", "deeper")) == Source("c.yaml", 1, 1)
    assert doc.key_source(("model", "layers", 1, "rate")) == Source("c.yaml", 6, 7)
    assert doc.key_source(("model", "layers", 1, "nothing")) == Source("c.yaml", 5, 7)


@pytest.mark.parametrize("text, expected", [
    ("1e-3", 0.001), ("1.5", 1.5), (".5", 0.5), ("-2.5e+2", -250.0), ("1_000", "1_000"),
    ("42", 42), ("-7", -7), ("+3", 3), ("0x10", 16), ("0o17", 15), ("010", 10),
    ("true", True), ("False", False), ("TRUE", True),
    ("yes", "yes"), ("no", "no"), ("on", "on"), ("off", "off"), ("Yes", "Yes"), ("y", "y"), ("n", "n"),
    ("~", None), ("null", None), ("", None), ("Null", None),
    ("2024-01-01", "2024-01-01"), ("2024-01-01T12:00:00", "2024-01-01T12:00:00"), ("1:30", "1:30"),
    ("'2'", "2"), ('"true"', "true"), ("relu", "relu"),
])
def test_yaml_1_2_core_scalars(text, expected):
    value = parse_yaml(f"v: {text}\n", "c.yaml").data["v"]
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("text, check", [
    (".inf", lambda v: v == math.inf), ("-.inf", lambda v: v == -math.inf), ("+.inf", lambda v: v == math.inf),
    (".nan", math.isnan), (".NaN", math.isnan),
])
def test_special_floats(text, check):
    value = parse_yaml(f"v: {text}\n", "c.yaml").data["v"]
    assert isinstance(value, float) and check(value)


def test_empty_document_is_none():
    assert parse_yaml("", "c.yaml").data is None
    assert parse_yaml("# only a comment\n", "c.yaml").data is None


@pytest.mark.parametrize("text, where, shown", [
    ("a: !!python/object/apply:os.system ['echo hi']\n", (1, 4), "!!python/object/apply:os.system"),
    ("a: !!python/name:os.system x\n", (1, 4), "!!python/name:os.system"),
    ("a: !!binary aGk=\n", (1, 4), "!!binary"),
    ("a: !!timestamp 2024-01-01\n", (1, 4), "!!timestamp"),
    ("a: !custom 1\n", (1, 4), "!custom"),
    ("a:\n  b: !!set {x, y}\n", (2, 6), "!!set"),
])
def test_tags_are_rejected_where_written(text, where, shown):
    with pytest.raises(ConfigError) as caught:
        parse_yaml(text, "c.yaml")
    (issue,) = caught.value.issues
    assert (issue.source.line, issue.source.column) == where
    assert f"YAML tag '{shown}' is not allowed" in issue.message


def test_every_tag_is_reported_together():
    with pytest.raises(ConfigError) as caught:
        parse_yaml("a: !x 1\nb: !y 2\nc: 3\n", "c.yaml")
    assert [(i.source.line, i.path) for i in caught.value.issues] == [(1, ("a",)), (2, ("b",))]


def test_duplicate_keys_are_reported_at_the_second():
    with pytest.raises(ConfigError) as caught:
        parse_yaml("a: 1\nb:\n  c: 1\n  c: 2\na: 3\n", "c.yaml")
    messages = [str(issue) for issue in caught.value.issues]
    assert messages == ["c.yaml:4:3: b.c: duplicate key 'c' (first given on line 3)",
                        "c.yaml:5:1: a: duplicate key 'a' (first given on line 1)"]


def test_keys_must_be_names():
    with pytest.raises(ConfigError) as caught:
        parse_yaml("1.5: a\n", "c.yaml")
    assert "keys must be names, got 1.5" in str(caught.value)


@pytest.mark.parametrize("text, where, words", [
    ("a: [1, 2\nb: 3\n", (2, 2), "(while parsing a flow sequence that starts at line 1, column 4)"),
    ("a: {b: 1\n", (2, 1), "(while parsing a flow mapping that starts at line 1, column 4)"),
    ("a:\n  b: 1\n c: 2\n", (3, 2), "bad indentation"),
    ("a: 'unclosed\nb: 2\n", (3, 1), "(while scanning a quoted scalar that starts at line 1, column 4)"),
    ("a: b: c\n", (1, 5), "mapping values are not allowed here"),
    ("\ta: 1\n", (1, 1), "invalid YAML"),
])
def test_syntax_errors_are_located(text, where, words):
    with pytest.raises(ConfigError) as caught:
        parse_yaml(text, "c.yaml")
    (issue,) = caught.value.issues
    assert (issue.source.line, issue.source.column) == where
    assert issue.message.startswith("invalid YAML: ") and words in issue.message


@pytest.mark.parametrize("path, text", [
    (("model", "layers", 2, "units"), "model.layers[2].units"),
    (("epochs",), "epochs"),
    (("a", 0, 1), "a[0][1]"),
    ((), ""),
])
def test_format_path(path, text):
    assert format_path(path) == text


def test_issue_and_error_text():
    issue = ConfigIssue(Source("c.yaml", 3, 9), ("model", "layers", 0), "bad")
    assert str(issue) == "c.yaml:3:9: model.layers[0]: bad"
    assert str(ConfigIssue(Source("--set epochs=x"), ("epochs",), "bad")) == "--set epochs=x: epochs: bad"
    assert str(ConfigIssue(Source("c.yaml"), (), "bad")) == "c.yaml: bad"
    error = ConfigError([issue, issue])
    assert str(error) == "c.yaml:3:9: model.layers[0]: bad\nc.yaml:3:9: model.layers[0]: bad"
