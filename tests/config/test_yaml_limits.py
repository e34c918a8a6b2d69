"""nnctl.config.yamlfile's limits: alias bombs, recursive aliases, deep nesting, control characters, huge
integers, misfit tags, and config files that are not small regular UTF-8 files — each one located error.
"""

from __future__ import annotations

import os
import time

import pytest

from nnctl.config import load_config
from nnctl.config.overrides import apply_overrides
from nnctl.config.yamlfile import ALIAS_BUDGET, ConfigError, parse_yaml, read_config_text
from nnctl.errors import clip, show


def bomb(levels: int) -> str:
    lines = ['lol0: &a0 "lol"']
    lines += [f"lol{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def only_issue(text: str):
    with pytest.raises(ConfigError) as caught:
        parse_yaml(text, "c.yaml")
    (issue,) = caught.value.issues
    return issue


def test_billion_laughs_is_refused_in_milliseconds_at_the_alias():
    began = time.process_time()  # CPU time: a busy machine (parallel tests) does not stretch it
    issue = only_issue(bomb(9))
    assert time.process_time() - began < 0.5
    assert (issue.source.line, issue.source.column) == (5, 47)  # the alias that crosses the budget
    assert f"aliases expand to more than {ALIAS_BUDGET:,} values" in issue.message


def test_ordinary_anchors_and_aliases_still_work():
    doc = parse_yaml("hidden: &h {type: dense, units: 16, activation: relu}\n"
                     "layers: [*h, *h, {type: dense, units: 1}]\nbatch: &b 64\nother: *b\n", "c.yaml")
    assert doc.data["layers"][0] == doc.data["layers"][1] == {"type": "dense", "units": 16, "activation": "relu"}
    assert doc.data["other"] == 64
    assert parse_yaml(bomb(3), "c.yaml").data["lol3"][9][9][9] == "lol"  # 1,110 values: inside the budget


@pytest.mark.parametrize("text, where", [("zz: &r [*r]\n", (1, 9)), ("zz: &r {a: [1, *r]}\n", (1, 16)),
                                         ("zz: &r {*r : 1}\n", (1, 9))])
def test_recursive_aliases_are_refused(text, where):
    issue = only_issue(text)
    assert (issue.source.line, issue.source.column) == where
    assert "recursive structures are not allowed" in issue.message


@pytest.mark.parametrize("text", ["a: " + "[" * 5000 + "]" * 5000 + "\n", "a: " + "[" * 5000 + "\n",
                                  "a: " + "{b: " * 5000 + "1" + "}" * 5000 + "\n",
                                  "a: &x " + "[" * 60 + "]" * 60 + "\nb: &y " + "[" * 60 + "*x" + "]" * 60 + "\n"])
def test_deep_nesting_is_refused(text):
    issue = only_issue(text)
    assert issue.source.line in (1, 2) and "deeper than 100 levels" in issue.message


@pytest.mark.parametrize("text, where, code", [("a: 1\n# a \x01 in a comment\n", (2, 5), "U+0001"),
                                               ("a: x\x07y\n", (1, 5), "U+0007"), ("a: 1\x00\n", (1, 5), "U+0000")])
def test_control_characters_are_located(text, where, code):
    issue = only_issue(text)
    assert (issue.source.line, issue.source.column) == where and code in issue.message


@pytest.mark.parametrize("text, words", [
    ("a: " + "9" * 5000 + "\n", "an integer of 5,000 digits is too large (allowed: at most 100 digits)"),
    ('a: !!int "abc"\n', "'abc' is not a valid !!int value"), ('a: !!float "x"\n', "'x' is not a valid !!float"),
    ("a: !!bool maybe\n", "'maybe' is not a valid !!bool"), ("a: !!map [1]\n", "YAML tag '!!map' does not fit"),
    ("a: !!int [1]\n", "YAML tag '!!int' does not fit"),
])
def test_bad_scalars_are_located(text, words):
    issue = only_issue(text)
    assert (issue.source.line, issue.source.column) == (1, 4) and words in issue.message


def test_explicit_tags_that_fit_still_work():
    assert parse_yaml('a: !!int "12"\nb: !!str 5\nc: !!float 1e-3\n', "c.yaml").data == {"a": 12, "b": "5",
                                                                                           "c": 0.001}


def test_overrides_get_the_same_limits():
    doc = parse_yaml("epochs: 1\n", "c.yaml")
    for value in ("[" * 5000, "9" * 5000, "{" + bomb(9).replace("\n", ", ").rstrip(", ") + "}"):
        with pytest.raises(ConfigError) as caught:
            apply_overrides(doc, [f"epochs={value}"])
        (line,) = str(caught.value).splitlines()
        assert line.startswith("--set epochs=") and len(line) < 300


def test_messages_never_echo_a_huge_value():
    for text in ("x" * 100_000 + ": 1\n", "a:\n  " + "k" * 100_000 + ": 1\n  " + "k" * 100_000 + ": 2\n",
                 "? [" + ", ".join(["x" * 50] * 500) + "]\n: 1\n", '"a\\nb": 1\n"a\\nb": 2\n'):
        with pytest.raises(ConfigError) as caught:
            parse_yaml(text, "c.yaml")
        assert all(len(line) < 400 for line in str(caught.value).splitlines())
        assert len(str(caught.value).splitlines()) == len(caught.value.issues)
    assert len(show("x" * 10**6)) < 230 and show(10**5000) == "an integer of thousands of digits"
    assert clip("a\nb") == "a\\nb"


def test_config_files_that_are_not_small_regular_utf8_files(tmp_path):
    def message(path):
        with pytest.raises(ConfigError) as caught:
            read_config_text(path, str(path))
        (issue,) = caught.value.issues
        return str(issue)

    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    assert message(fifo).endswith("fifo.yaml:1:1: this is a FIFO (named pipe), not a regular file (allowed: a "
                                  "YAML file)")
    assert "this is a folder" in message(tmp_path)
    assert message("/dev/zero") == "/dev/zero:1:1: this is a device, not a regular file (allowed: a YAML file)"
    huge = tmp_path / "huge.yaml"
    huge.write_bytes(b"#" * (2 << 20))
    assert "huge.yaml:1:1: the config file is 2,097,152 bytes (allowed: at most 262,144)" in message(huge)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: x\n# caf\u00e9\n".encode("latin-1"))
    assert "latin.yaml:2:6: the config file is not UTF-8 text: byte 0xe9" in message(latin)
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    with pytest.raises(ConfigError, match=r"empty.yaml:1:1: the config file is empty"):
        load_config(empty)
    assert message(tmp_path / "missing.yaml").endswith("missing.yaml: no such config file")


def test_an_override_value_is_capped_like_a_file():
    doc = parse_yaml("epochs: 1\n", "c.yaml")
    with pytest.raises(ConfigError, match=r"the value is 300,000 characters long \(allowed: at most 262,144\)"):
        apply_overrides(doc, ["name=" + "x" * 300_000])
