"""Safe YAML reading that remembers where every key and value came from (file, line, column).

Plain YAML values only, with YAML 1.2 scalars: `yes`/`on` stay strings, `1e-3` is a float, dates stay strings.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import yaml

from nnctl.errors import NnctlError

Path = tuple  # a key path into the data: ("model", "layers", 2, "units")


@dataclass(frozen=True)
class Source:
    """Where a value was written: a file position, or a `--set` argument (no line)."""

    label: str
    line: int | None = None
    column: int | None = None

    def __str__(self):
        return f"{self.label}:{self.line}:{self.column}" if self.line is not None else self.label


@dataclass
class ConfigIssue:
    """One problem in a config: where, which key path, and what is wrong (and allowed)."""

    source: Source
    path: Path
    message: str

    def __str__(self):
        where = f"{format_path(self.path)}: " if self.path else ""
        return f"{self.source}: {where}{self.message}"


class ConfigError(NnctlError):
    """Every problem found in a config; the CLI prints one line per issue and exits with code 2."""

    def __init__(self, issues: list[ConfigIssue]):
        self.issues = list(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))


@dataclass
class Document:
    """Parsed YAML data plus the source of every value (`values`) and of every mapping key (`keys`)."""

    data: object
    label: str
    values: dict = field(default_factory=dict)
    keys: dict = field(default_factory=dict)

    def source(self, path: Path) -> Source:
        """The nearest known source of `path`: the value itself, else its key, else its closest parent."""
        path = tuple(path)
        for end in range(len(path), -1, -1):
            head = path[:end]
            if end == len(path) and head in self.keys and head not in self.values:
                return self.keys[head]
            if head in self.values:
                return self.values[head]
        return Source(self.label)

    def key_source(self, path: Path) -> Source:
        """The position of the key that names `path` (for unknown-key errors), else the value's."""
        return self.keys.get(tuple(path)) or self.source(path)


def format_path(path: Path) -> str:
    """("model", "layers", 2, "units") → "model.layers[2].units"."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_INT = re.compile(r"^[-+]?(?:[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$|^[-+]?\.(?:inf|Inf|INF)$|"
                    r"^\.(?:nan|NaN|NAN)$")
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_STANDARD_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "seq", "map")}


class _Loader(yaml.SafeLoader):
    """SafeLoader that resolves only YAML 1.2 core scalars (no yes/no booleans, no sexagesimals, no dates)."""


_Loader.yaml_implicit_resolvers = {}
for _tag, _regex, _first in (("bool", _BOOL, "tTfF"), ("null", _NULL, ["~", "n", "N", ""]),
                             ("int", _INT, "-+0123456789"), ("float", _FLOAT, "-+0123456789.")):
    _Loader.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", _regex, list(_first))


def _scalar(node: yaml.ScalarNode):
    kind, text = node.tag.rsplit(":", 1)[-1], node.value
    if kind == "null":
        return None
    if kind == "bool":
        return text.lower() == "true"
    if kind == "int":
        sign, digits = (-1, text[1:]) if text[:1] == "-" else (1, text.lstrip("+"))
        base = 16 if digits[:2] == "0x" else 8 if digits[:2] == "0o" else 10
        return sign * int(digits[2:] if base != 10 else digits, base)
    if kind == "float":
        lowered = text.lower().lstrip("+")
        if lowered in (".inf", "-.inf", ".nan"):
            return {"-.inf": -math.inf, ".inf": math.inf, ".nan": math.nan}[lowered]
        return float(text)
    return text


def parse_yaml(text: str, label: str) -> Document:
    """Parse `text`; YAML errors, unsafe tags and duplicate keys become a ConfigError located in `label`."""
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        problem = err.problem or err.context or "invalid YAML"
        if problem.startswith("expected <block end>"):  # PyYAML's words for a line indented out of step
            problem = "bad indentation: this line does not line up with the keys or items above it"
        elif err.problem and err.context and err.context_mark and err.context_mark.line != mark.line:
            # The mistake is often where the unclosed bracket or mapping began, not where parsing gave up.
            problem += (f" ({err.context} that starts at line {err.context_mark.line + 1}, "
                        f"column {err.context_mark.column + 1})")
        where = Source(label, mark.line + 1, mark.column + 1) if mark else Source(label)
        raise ConfigError([ConfigIssue(where, (), f"invalid YAML: {problem}")]) from None
    doc = Document(None, label)
    issues: list[ConfigIssue] = []
    doc.data = _build(root, (), doc, issues) if root is not None else None
    if issues:
        raise ConfigError(issues)
    return doc


def _where(node, label) -> Source:
    return Source(label, node.start_mark.line + 1, node.start_mark.column + 1)


def _build(node, path, doc: Document, issues: list):
    doc.values[path] = _where(node, doc.label)
    if node.tag not in _STANDARD_TAGS:
        tag = node.tag.replace("tag:yaml.org,2002:", "!!", 1)  # as written in the file
        issues.append(ConfigIssue(doc.values[path], path, f"YAML tag '{tag}' is not allowed: nnctl reads plain "
                                                          f"values only (mappings, lists, strings, numbers, booleans)"))
        return None
    if isinstance(node, yaml.ScalarNode):
        return _scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, path + (i,), doc, issues) for i, item in enumerate(node.value)]
    out = {}
    for key_node, value_node in node.value:
        key = _build(key_node, path + ("<key>",), doc, issues)
        if not isinstance(key, str) and (isinstance(key, bool) or not isinstance(key, int)):  # ints: class ids
            issues.append(ConfigIssue(_where(key_node, doc.label), path, f"keys must be names, got {key!r}"))
            continue
        if key in out:
            first = doc.keys[path + (key,)]
            issues.append(ConfigIssue(_where(key_node, doc.label), path + (key,),
                                      f"duplicate key '{key}' (first given on line {first.line})"))
            continue
        doc.keys[path + (key,)] = _where(key_node, doc.label)
        out[key] = _build(value_node, path + (key,), doc, issues)
    doc.values.pop(path + ("<key>",), None)
    return out
