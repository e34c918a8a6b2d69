"""`--set key.path=value` overrides: parse the path, read the value as YAML, and apply it to a Document.

Errors in an override point at the `--set` argument itself, just as file errors point at a line.
"""

from __future__ import annotations

import re

from nnctl.config.yamlfile import (MAX_FILE_BYTES, ConfigError, ConfigIssue, Document, Source, format_path,
                                   parse_yaml)
from nnctl.errors import clip, show

_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\.(\d+)(?=\.|\[|$)")


def parse_key_path(text: str) -> tuple:
    """"model.layers[2].units" or "model.layers.2.units" → ("model", "layers", 2, "units"); ValueError if malformed."""
    parts, pos = [], 0
    while pos < len(text):
        after_dot = parts and text[pos] == "." and pos + 1 < len(text) and not text[pos + 1].isdigit()
        pos += 1 if after_dot else 0
        match = _PART.match(text, pos)
        name, bracket, dotted = match.groups() if match else (None, None, None)
        if not match or (name is not None and parts and not after_dot):  # "a[0]b" lacks the dot before b
            raise ValueError(f"cannot read key path {show(text, 80)} at {show(text[pos:], 40)}: write it like "
                             f"model.layers[0].units")
        parts.append(name if name is not None else int(bracket or dotted))
        pos = match.end()
    if not parts or not isinstance(parts[0], str):
        raise ValueError(f"cannot read key path {show(text, 80)}: it must start with a key, like epochs or "
                         f"optimizer.type")
    return tuple(parts)


def apply_overrides(doc: Document, assignments: list) -> Document:
    """Applies each `key.path=value` in order; every bad one is reported, together, as a ConfigError."""
    issues: list[ConfigIssue] = []
    for assignment in assignments:
        # An option like --device arrives as (assignment, label) so errors name what the user typed.
        assignment, label = assignment if isinstance(assignment, tuple) else (assignment,
                                                                              f"--set {clip(assignment, 80)}")
        key_text, sep, value_text = assignment.partition("=")
        try:
            if not sep:
                raise ValueError("expected key.path=value, e.g. --set epochs=5")
            path = parse_key_path(key_text.strip())
            if len(value_text) > MAX_FILE_BYTES:
                raise ValueError(f"the value is {len(value_text):,} characters long (allowed: at most "
                                 f"{MAX_FILE_BYTES:,})")
            value_doc = parse_yaml(value_text, label)
            _assign(doc, path, value_doc, label)
        except ValueError as err:
            issues.append(ConfigIssue(Source(label), (), str(err)))
        except ConfigError as err:
            issues.extend(ConfigIssue(Source(label), (), issue.message) for issue in err.issues)
    if issues:
        raise ConfigError(issues)
    return doc


def _assign(doc: Document, path: tuple, value_doc: Document, label: str) -> None:
    if not isinstance(doc.data, dict):
        doc.data = {}
    node = doc.data
    for depth, part in enumerate(path[:-1]):
        here = path[:depth + 1]
        child = _child(node, part, path)
        if child is None:
            child = {}
            _set(node, part, child, path)
        elif isinstance(child, str) and isinstance(path[depth + 1], str):
            # A bare name stands for {type: name}: `optimizer: rmsprop` takes `--set optimizer.learning_rate=...`.
            child = {"type": child}
            _set(node, part, child, path)
            doc.values[here + ("type",)] = doc.source(here)
        node = child
        doc.values.setdefault(here, Source(label))
    _set(node, path[-1], value_doc.data, path)
    # Everything under the old value now comes from the --set argument.
    for table in (doc.values, doc.keys):
        for key in [k for k in table if k[:len(path)] == path]:
            del table[key]
    for sub in value_doc.values:
        doc.values[path + sub] = Source(label)
    doc.keys[path] = Source(label)


def _child(node, part, path):
    if isinstance(part, int):
        if not isinstance(node, list) or part >= len(node):
            size = len(node) if isinstance(node, list) else 0
            raise ValueError(f"{format_path(path)}: index {part} is out of range (the list has {size} "
                             f"{'entry' if size == 1 else 'entries'})")
        return node[part]
    if not isinstance(node, dict):
        raise ValueError(f"{format_path(path)}: '{part}' is set inside a value that is not a mapping")
    return node.get(part)


def _set(node, part, value, path):
    _child(node, part, path)  # the same range and type checks as reading
    node[part] = value
