"""Safe YAML reading that remembers where every key and value came from (file, line, column).

Plain YAML values only, with YAML 1.2 scalars: `yes`/`on` stay strings, `1e-3` is a float, dates stay strings.
"""

from __future__ import annotations

import math
import os
import re
import stat
from dataclasses import dataclass, field

import yaml

from nnctl.errors import NnctlError, clip, show
from nnctl.host import file_kind

MAX_FILE_BYTES = 256 << 10  # a config is a page of text; PyYAML reads ~150 KB/s, so this is ~2 s at most
MAX_DEPTH = 100  # nesting levels; PyYAML's composer recurses once per level
ALIAS_BUDGET = 10_000  # values that aliases may add in all: a "billion laughs" file is stopped at once
MAX_INT_DIGITS = 100  # no size in a config needs more; Python refuses to parse past 4,300

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
        # A safety net: every message that quotes a user's value shortens it, no issue spans two lines, and
        # path and message together stay under ~280 characters (a long "allowed:" list loses its middle).
        return f"{self.source}: {where}{clip(self.message, max(120, 260 - len(where)))}"


def warning_line(issue: ConfigIssue) -> str:
    """`file:line:col: warning: key: message` for a config that runs but probably not as meant."""
    where = f"{format_path(issue.path)}: " if issue.path else ""
    return f"{issue.source}: warning: {where}{clip(issue.message, max(120, 260 - len(where)))}"


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


def value_at(data, path: Path):
    """The value at key path `path` in parsed YAML `data`, or None where the path leads nowhere."""
    for part in path:
        if isinstance(data, dict) and part in data or isinstance(data, list) and isinstance(part, int) \
                and 0 <= part < len(data):
            data = data[part]
        else:
            return None
    return data


def format_path(path: Path) -> str:
    """("model", "layers", 2, "units") → "model.layers[2].units"."""
    out = ""
    for part in path:
        part = part if isinstance(part, int) else clip(str(part), 60)  # a key can be any (huge) string
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


_INT = re.compile(r"^[-+]?(?:[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$|^[-+]?\.(?:inf|Inf|INF)$|"
                    r"^\.(?:nan|NaN|NAN)$")
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_STANDARD_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "seq", "map")}
_SCALAR_FORMS = {"int": _INT, "float": _FLOAT, "bool": _BOOL, "null": _NULL}  # what an explicit `!!int` must hold
_NON_PRINTABLE = re.compile("[^\x09\x0A\x0D\x20-\x7E\x85\xA0-\uD7FF\uE000-\uFFFD\U00010000-\U0010FFFF]")


class _Loader(yaml.SafeLoader):
    """SafeLoader that resolves only YAML 1.2 core scalars (no yes/no booleans, no sexagesimals, no dates),
    and refuses nesting past MAX_DEPTH, aliases that expand past ALIAS_BUDGET and aliases inside their anchor.
    """

    def __init__(self, stream):
        super().__init__(stream)
        self.depth, self.expanded = 0, 0
        self.open_anchors: set = set()
        self.extent: dict = {}  # id(node) -> (values in its expansion, its nesting depth)

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self.open_anchors:
                _refuse(event, f"alias *{clip(event.anchor, 40)} is used inside its own anchor: recursive "
                               f"structures are not allowed")
            node = super().compose_node(parent, index)
            size, height = self.extent.get(id(node), (1, 1))
            self.expanded += size
            if self.expanded > ALIAS_BUDGET:
                _refuse(event, f"aliases expand to more than {ALIAS_BUDGET:,} values (allowed: at most "
                               f"{ALIAS_BUDGET:,}; write the values out instead)")
            if self.depth + height > MAX_DEPTH:
                _refuse(event, f"this alias nests values deeper than {MAX_DEPTH} levels (allowed: {MAX_DEPTH})")
            return node
        self.depth += 1
        if self.depth > MAX_DEPTH:
            _refuse(event, f"values are nested deeper than {MAX_DEPTH} levels (allowed: {MAX_DEPTH})")
        if event.anchor is not None:
            self.open_anchors.add(event.anchor)
        node = super().compose_node(parent, index)
        self.open_anchors.discard(event.anchor)
        self.depth -= 1
        children = node.value if isinstance(node, yaml.SequenceNode) else [
            part for pair in node.value for part in pair] if isinstance(node, yaml.MappingNode) else []
        extents = [self.extent.get(id(child), (1, 1)) for child in children]
        self.extent[id(node)] = (1 + sum(e[0] for e in extents), 1 + max((e[1] for e in extents), default=0))
        return node


def _refuse(event, problem: str):
    raise yaml.composer.ComposerError(None, None, problem, event.start_mark)


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


def _position(text: str, offset: int) -> tuple[int, int]:
    """1-based (line, column) of character `offset` in `text`."""
    return text.count("\n", 0, offset) + 1, offset - (text.rfind("\n", 0, offset) + 1) + 1


def parse_yaml(text: str, label: str) -> Document:
    """Parse `text`; YAML errors, unsafe tags and duplicate keys become a ConfigError located in `label`."""
    bad = _NON_PRINTABLE.search(text)
    if bad:  # PyYAML's reader would raise an unlocated ReaderError, even for one in a comment
        where = Source(label, *_position(text, bad.start()))
        raise ConfigError([ConfigIssue(where, (), f"control character U+{ord(bad.group()):04X} is not allowed in "
                                                  f"YAML (allowed: tab, newline and printable characters)")])
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
    except yaml.YAMLError as err:  # unmarked: PyYAML found no position for it
        raise ConfigError([ConfigIssue(Source(label, 1, 1), (), f"invalid YAML: {clip(str(err))}")]) from None
    doc = Document(None, label)
    issues: list[ConfigIssue] = []
    doc.data = _build(root, (), doc, issues) if root is not None else None
    if issues:
        error = ConfigError(issues)
        error.document = doc  # what could be read (a duplicate's first value): `nnctl check` goes on with it
        raise error
    return doc


def _where(node, label) -> Source:
    return Source(label, node.start_mark.line + 1, node.start_mark.column + 1)


def _build(node, path, doc: Document, issues: list):
    doc.values[path] = _where(node, doc.label)
    if node.tag not in _STANDARD_TAGS:
        tag = clip(node.tag.replace("tag:yaml.org,2002:", "!!", 1), 80)  # as written in the file
        issues.append(ConfigIssue(doc.values[path], path, f"YAML tag '{tag}' is not allowed: nnctl reads plain "
                                                          f"values only (mappings, lists, strings, numbers, booleans)"))
        return None
    problem = _misfit(node)
    if problem:
        issues.append(ConfigIssue(doc.values[path], path, problem))
        return None
    if isinstance(node, yaml.ScalarNode):
        return _scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, path + (i,), doc, issues) for i, item in enumerate(node.value)]
    out = {}
    for key_node, value_node in node.value:
        key = _build(key_node, path + ("<key>",), doc, issues)
        if not isinstance(key, str) and (isinstance(key, bool) or not isinstance(key, int)):  # ints: class ids
            issues.append(ConfigIssue(_where(key_node, doc.label), path, f"keys must be names, got {show(key)}"))
            continue
        if key in out:
            first = doc.keys[path + (key,)]
            issues.append(ConfigIssue(_where(key_node, doc.label), path + (key,),
                                      f"duplicate key {show(key)} (first given on line {first.line})"))
            continue
        doc.keys[path + (key,)] = _where(key_node, doc.label)
        out[key] = _build(value_node, path + (key,), doc, issues)
    doc.values.pop(path + ("<key>",), None)
    return out


def _misfit(node) -> str | None:
    """Why an explicitly tagged node cannot be read as its tag says (`!!int "abc"`, `!!map [1]`), or None."""
    kind = node.tag.rsplit(":", 1)[-1]
    shape = "seq" if isinstance(node, yaml.SequenceNode) else "map" if isinstance(node, yaml.MappingNode) else None
    if shape or kind in ("seq", "map"):
        return None if kind == shape else f"YAML tag '!!{kind}' does not fit this value"
    if kind in _SCALAR_FORMS and not _SCALAR_FORMS[kind].match(node.value):
        return f"{show(node.value)} is not a valid !!{kind} value"
    digits = len(node.value.lstrip("+-"))
    if kind == "int" and digits > MAX_INT_DIGITS:
        return f"an integer of {digits:,} digits is too large (allowed: at most {MAX_INT_DIGITS} digits)"
    return None


def read_config_text(path, label: str) -> str:
    """The text of a config file: a regular UTF-8 file of at most MAX_FILE_BYTES, or a located ConfigError.

    A FIFO or a device would block or never end: the file's type is checked before it is opened (and again
    on the opened descriptor, in case the path was swapped in between).
    """
    def refuse(message, line=1, column=1):
        raise ConfigError([ConfigIssue(Source(label, line, column), (), message)])

    data = b""
    try:
        info = os.stat(path)
        if stat.S_ISREG(info.st_mode) and info.st_size <= MAX_FILE_BYTES:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
            with os.fdopen(fd, "rb") as handle:
                info = os.fstat(handle.fileno())
                if stat.S_ISREG(info.st_mode):
                    data = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError([ConfigIssue(Source(label), (), "no such config file")]) from None
    except OSError as err:
        refuse(f"cannot read the config file: {err.strerror or err}")
    if not stat.S_ISREG(info.st_mode):
        refuse(f"this is {file_kind(info.st_mode)}, not a regular file (allowed: a YAML file)")
    if info.st_size > MAX_FILE_BYTES or len(data) > MAX_FILE_BYTES:
        refuse(f"the config file is {max(info.st_size, len(data)):,} bytes (allowed: at most {MAX_FILE_BYTES:,})")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        start = data.rfind(b"\n", 0, err.start) + 1
        column = len(data[start:err.start].decode("utf-8", "replace")) + 1
        refuse(f"the config file is not UTF-8 text: byte 0x{data[err.start]:02x} cannot be decoded (allowed: "
               f"UTF-8)", data.count(b"\n", 0, err.start) + 1, column)
