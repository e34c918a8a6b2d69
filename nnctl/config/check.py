"""`nnctl check`: every problem of a config in one go, from its YAML to its data and its model's shapes.

Each stage's issues are kept; where the config is still usable without its faulty keys, the next stage runs too.
"""

from __future__ import annotations

import copy
from pathlib import Path

from nnctl.config.resolve import in_file_order, resolve_document
from nnctl.config.yamlfile import (ConfigError, ConfigIssue, Document, Source, parse_yaml, read_config_text,
                                   value_at)
from nnctl.errors import NnctlError


def check_config(path, overrides=()):
    """The data and the compiled model (a `Prepared`) when the config at `path` has no problem; otherwise one
    ConfigError with every issue found (duplicate keys, schema, names, data, shapes), in file order."""
    path = Path(path)
    label, overrides = str(path), list(overrides)
    issues: list[ConfigIssue] = []
    try:
        doc = parse_yaml(read_config_text(path, label), label)
    except ConfigError as error:
        issues += error.issues
        doc = getattr(error, "document", None)  # None: not YAML at all, nothing more can be read
        if doc is None:
            raise
    # A refused tag leaves no value behind: the schema's "expected …" for it would only repeat the reader.
    unreadable = [issue.path for issue in issues if issue.path and value_at(doc.data, issue.path) is None]
    if doc.data is None and not overrides:
        issues.append(ConfigIssue(Source(label, 1, 1), (), "the config file is empty (expected a mapping of keys: "
                                                           "name, data, model, loss, ...)"))
        raise ConfigError(issues)
    resolved = _resolve(doc, overrides, path, issues)
    prepared = _prepare(resolved, issues) if resolved is not None else None
    if issues:
        raise ConfigError(_merge(issues, unreadable))
    return prepared


def _copy(doc: Document) -> Document:
    return Document(copy.deepcopy(doc.data), doc.label, dict(doc.values), dict(doc.keys))


def _resolve(doc: Document, overrides: list, path: Path, issues: list):
    """The resolved config; after schema issues, the config without the keys they name (each then takes its
    default) when that is valid, else None: later stages would only guess."""
    attempt = _copy(doc)
    try:
        return resolve_document(attempt, overrides, default_name=path.stem, base_dir=path.resolve().parent)
    except ConfigError as error:
        issues += error.issues
        found = error.issues
    pruned = _copy(doc)
    for issue in found:
        if not _remove(pruned.data, issue.path):
            return None  # a missing key, a list entry, the whole file: nothing to fall back on
    try:
        return resolve_document(pruned, overrides, default_name=path.stem, base_dir=path.resolve().parent)
    except ConfigError:
        return None


def _remove(data, path: tuple) -> bool:
    """Deletes the mapping key at `path` (never a list entry: the entries after it would shift)."""
    if not path or not isinstance(path[-1], str):
        return False
    data = value_at(data, path[:-1])
    if not isinstance(data, dict) or path[-1] not in data:
        return False
    del data[path[-1]]
    return True


def _prepare(resolved, issues: list):
    """What `nnctl train` prepares (device, data, model, data against model), each stage's issues collected; the
    model is still built from `model.input_shape` when the data cannot be read."""
    from nnctl.config.build import build_model, check_data
    from nnctl.data.files import load_data
    from nnctl.train.session import Prepared

    from nnctl.config.device import check_gpu, place

    issues.extend(check_gpu(resolved))
    splits = _collect(lambda: load_data(resolved), resolved, ("data",), issues)
    input_shape = tuple(splits.train[0].shape[1:]) if splits is not None else None
    model = None
    if splits is not None or resolved.config.model.input_shape:
        rows = splits.train[0].shape[0] if splits is not None else None
        model = _collect(lambda: build_model(resolved, input_shape=input_shape, rows=rows), resolved,
                         ("model",), issues)
    if splits is not None and model is not None:
        _collect(lambda: check_data(resolved, model, splits), resolved, ("data",), issues)
    if model is not None and not any(issue.path == ("device",) for issue in issues):
        _collect(lambda: place(resolved, model), resolved, ("device",), issues)
    return Prepared(splits, model, 0.0) if splits is not None and model is not None else None


def _collect(stage, resolved, where: tuple, issues: list):
    """`stage()`, or None with its problems added to `issues` (a plain NnctlError located at `where`)."""
    try:
        return stage()
    except ConfigError as error:
        issues += error.issues
    except NnctlError as error:
        issues.append(resolved.issue(where, str(error).splitlines()[0]))
    return None


def _merge(issues: list[ConfigIssue], unreadable: list[tuple]) -> list[ConfigIssue]:
    """In file order, each once; at and below a value the YAML reader refused, only the reader's issue."""
    seen, merged = set(), []
    for issue in sorted(issues, key=in_file_order):  # stable: the reader's issues stay ahead of the schema's
        key = (str(issue.source), issue.path, issue.message)
        refused = next((path for path in unreadable if issue.path[:len(path)] == path), None)
        if key in seen or refused is not None and any(other.path == refused for other in merged):
            continue
        seen.add(key)
        merged.append(issue)
    return merged
