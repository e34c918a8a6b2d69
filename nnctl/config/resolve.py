"""From a file and `--set` arguments to a validated `Config`: load, override, fill defaults, validate.

Every problem becomes a located `ConfigIssue`; all of a stage's problems are reported together.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import get_args

import yaml
from pydantic import BaseModel, ValidationError

from nnctl.config.overrides import apply_overrides
from nnctl.config.schema import DATASET_SPECS, LAYER_SPECS, OPTIMIZER_SPECS, TRANSFORM_SPECS, Config
from nnctl.config.yamlfile import (ConfigError, ConfigIssue, Document, Source, format_path, parse_yaml,
                                   read_config_text)
from nnctl.errors import NnctlError, did_you_mean, show
from nnctl.registry import Registry


@dataclass
class ResolvedConfig:
    """A validated config, the document it came from (for error positions) and the file's folder."""

    config: Config
    doc: Document
    base_dir: Path
    plugins: list = field(default_factory=list)  # nnctl.plugins.Plugin: what the config's plugins loaded

    def issue(self, path, message: str) -> ConfigIssue:
        return ConfigIssue(self.doc.source(path), tuple(path), message)

    def to_yaml(self) -> str:
        """The resolved config with every default filled in: what a run saves and `config show` prints."""
        return yaml.safe_dump(self.config.model_dump(), sort_keys=False, allow_unicode=True)  # int keys stay ints


def load_config(path, overrides=(), label: str | None = None) -> ResolvedConfig:
    """Reads, overrides and validates a config file; raises ConfigError listing every problem found."""
    path = Path(path)
    label = label or str(path)
    doc = parse_yaml(read_config_text(path, label), label)
    if doc.data is None and not overrides:
        raise ConfigError([ConfigIssue(Source(label, 1, 1), (), "the config file is empty (expected a mapping of "
                                                                "keys: name, data, model, loss, ...)")])
    return resolve_document(doc, list(overrides), default_name=path.stem, base_dir=path.resolve().parent)


def resolve_document(doc: Document, overrides: list[str], default_name: str, base_dir: Path) -> ResolvedConfig:
    if doc.data is None:
        doc.data = {}
    if not isinstance(doc.data, dict):
        raise ConfigError([ConfigIssue(doc.source(()), (), "a config file must be a mapping of keys (name, data, "
                                                            "model, loss, ...)")])
    doc.data.setdefault("optimizer", "rmsprop")  # before --set, so `--set optimizer.learning_rate=...` has a target
    apply_overrides(doc, overrides)
    data = doc.data
    if "name" not in data:
        data["name"] = run_name_from_file(default_name)
    if "seed" not in data:
        data["seed"] = secrets.randbelow(2**31)  # recorded in the resolved config, so the run can be repeated
    from nnctl.config.plugin_names import load_plugins

    plugin_issues, plugins = load_plugins(doc, base_dir)
    issues, unknown = _canonicalize_names(doc, {name for plugin in plugins for name in plugin.names})
    failed = tuple(f"{plugin.failed}." for plugin in plugins if plugin.failed)  # said once, at `plugins`
    issues = plugin_issues + [issue for issue in issues if not (failed and "type" in issue.path[-1:] and str(
        _at(data, issue.path)).startswith(failed))]
    plugins = [plugin for plugin in plugins if not plugin.failed]
    try:
        config = Config.model_validate(data)
    except ValidationError as err:
        # An entry whose `type` is unknown was reported above; its schema errors would only repeat that.
        issues += [issue for issue in _translate(err, doc) if not any(issue.path[:len(p)] == p for p in unknown)]
    if issues:
        raise ConfigError(sorted(issues, key=in_file_order))
    return ResolvedConfig(config, doc, base_dir, plugins)


def run_name_from_file(stem: str) -> str:
    """A valid run name from a config file's name: `no name` → `no_name`; a name with no ASCII letter or digit
    (`日本`) → `run_` and its UTF-8 bytes in hex, so two such files still get two names."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("_.-")
    if not re.search(r"[A-Za-z0-9]", name):
        return f"run_{stem.encode('utf-8', 'replace').hex()}"[:MAX_NAME]
    return name[:MAX_NAME].rstrip("_.-")


MAX_NAME = 100  # the schema's limit for `name`


def in_file_order(issue: ConfigIssue):
    """File order: issues with a line first, by line and column, then `--set` ones in argument order."""
    return (issue.source.line is None, issue.source.line or 0, issue.source.column or 0)


def _canonicalize_names(doc: Document, plugged: set = frozenset()) -> tuple[list[ConfigIssue], list[tuple]]:
    """Rewrites each `{type: ...}` entry's type to its canonical name (aliases, any case) so the schema can
    dispatch on it; a bare name becomes `{type: name}`. Unknown names get a did-you-mean.

    Returns the issues and the paths of the entries they make unusable. `plugged`: the layer types this
    config's plugins registered (another config's plugin types are unknown here).
    """
    from nnctl.nn.layers import LAYERS
    from nnctl.plugins import LAYER_TYPES
    from nnctl.nn.optimizers import OPTIMIZERS

    data, issues, unusable = doc.data, [], []
    data_section = data.get("data") if isinstance(data.get("data"), dict) else {}
    model = data.get("model")
    layers = model.get("layers") if isinstance(model, dict) else None
    places = [(("optimizer",), OPTIMIZERS, OPTIMIZER_SPECS)]
    if "dataset" in data_section:
        places.append((("data", "dataset"), Registry("dataset", {k: k for k in DATASET_SPECS}), DATASET_SPECS))
    if isinstance(data_section.get("transforms"), list):
        table = Registry("transform", {k: k for k in TRANSFORM_SPECS})
        places += [(("data", "transforms", i), table, TRANSFORM_SPECS) for i in range(len(data_section["transforms"]))]
    if isinstance(layers, list):
        places += [(("model", "layers", i), LAYERS, LAYER_SPECS) for i in range(len(layers))]
    for path, registry, specs in places:
        parent = _at(data, path[:-1])
        entry = parent[path[-1]]
        # A bare name is reported at the name itself: the file has no `type` key there.
        type_path = path if isinstance(entry, str) else path + ("type",)
        if isinstance(entry, str):
            parent[path[-1]] = entry = {"type": entry}
            doc.values[path + ("type",)] = doc.source(path)
        if not isinstance(entry, dict):
            continue  # the schema reports the wrong type
        if registry is LAYERS and "apply" in entry and entry.get("type", "apply") == "apply":
            entry["type"] = "apply"  # a shared layer's next use (config/graph.py)
            continue
        if registry is LAYERS and entry.get("type") == "model":  # another config's model (config/nested.py)
            continue
        if "type" not in entry:
            issues.append(ConfigIssue(doc.source(path), path, f"required key 'type' is missing (allowed: "
                                                              f"{', '.join(sorted(specs))})"))
            unusable.append(path)
            continue
        try:
            canonical = registry.canonical(entry["type"])
        except NnctlError as err:  # unknown, or not a string
            hint = (f"; `{entry['type'].split('.')[0]}.…` names a plugin file: list it in `plugins`"
                    if registry is LAYERS and isinstance(entry["type"], str) and "." in entry["type"]
                    and "did you mean" not in str(err) else "")
            issues.append(ConfigIssue(doc.source(type_path), type_path, str(err) + hint))
            unusable.append(path)
            continue
        if canonical in LAYER_TYPES and registry is LAYERS:
            if canonical not in plugged:
                issues.append(ConfigIssue(doc.source(type_path), type_path, f"layer '{canonical}' comes from a plugin "
                                                                            f"this config does not list in `plugins`"))
                unusable.append(path)
            entry["type"] = canonical
            continue
        if canonical not in specs:
            issues.append(ConfigIssue(doc.source(type_path), type_path,
                                      f"{registry.kind} '{canonical}' cannot be used in a config file yet"))
            unusable.append(path)
        entry["type"] = canonical
    return issues, unusable


def _at(data, path):
    for part in path:
        data = data[part]
    return data


_TAGS = (set(LAYER_SPECS) | set(OPTIMIZER_SPECS) | set(DATASET_SPECS) | set(TRANSFORM_SPECS)
         | {"apply", "model", "plugin"})


def _data_path(loc, data) -> tuple:
    """pydantic's error location minus its union-tag steps, i.e. the path into the YAML data."""
    path, node, tagged = [], data, None
    for part in loc:
        if isinstance(node, dict) and part in _TAGS and node.get("type") == part and tagged is not node:
            tagged = node  # the union's tag (`{apply: …}` also has a key of that name, after it)
            continue
        if isinstance(node, dict) and part in node or isinstance(node, list) and isinstance(part, int):
            path.append(part)
            node = node[part] if not isinstance(node, list) or part < len(node) else None
        elif isinstance(node, dict) and isinstance(part, str) and part not in _TAGS:
            path.append(part)  # a missing or unknown key
            node = None
    return tuple(path)


def _model_at(path: tuple, data) -> type[BaseModel] | None:
    """The schema class that validates the mapping at `path` (for listing its allowed keys)."""
    annotation, node = Config, data
    for part in path:
        if isinstance(part, int):
            node = node[part]
            continue
        cls = _pick_model(annotation, node)
        if cls is None or part not in cls.model_fields:
            return None
        annotation, node = cls.model_fields[part].annotation, node.get(part) if isinstance(node, dict) else None
    return _pick_model(annotation, node)


NO_DEFAULT = object()


def default_at(path: tuple, data) -> object:
    """The schema's default for the key at `path` of the config `data` (a layer's by its `type`), as YAML holds
    it; NO_DEFAULT for a required key or a path the schema does not know."""
    if not path or not isinstance(path[-1], str):
        return NO_DEFAULT
    try:
        cls = _model_at(tuple(path[:-1]), data)
    except (KeyError, IndexError, TypeError):  # the path runs through a value of another shape
        return NO_DEFAULT
    field = cls.model_fields.get(path[-1]) if cls is not None else None
    if field is None or field.is_required():
        return NO_DEFAULT
    default = field.get_default(call_default_factory=True)
    return default.model_dump() if isinstance(default, BaseModel) else default


def _pick_model(annotation, node):
    found, stack = [], [annotation]
    while stack:
        item = stack.pop()
        if isinstance(item, type) and issubclass(item, BaseModel):
            found.append(item)
        else:
            stack.extend(get_args(item))
    if len(found) > 1 and isinstance(node, dict):
        found = [cls for cls in found if cls.model_fields["type"].default == node.get("type")]
    return found[0] if len(found) == 1 else None


def _translate(err: ValidationError, doc: Document) -> list[ConfigIssue]:
    issues, suggested = [], set()
    for error in err.errors(include_url=False):
        path = _data_path(error["loc"], doc.data)
        kind, value = error["type"], error.get("input")
        if kind == "extra_forbidden":
            cls = _model_at(path[:-1], doc.data)
            allowed = sorted(cls.model_fields) if cls else []
            hint = did_you_mean(path[-1], allowed) if allowed else None
            suggested.add(path[:-1] + (hint,))
            message = (f"unknown key {show(path[-1], 80)}" + (f" — did you mean '{hint}'?" if hint else "")
                       + (f" (allowed: {', '.join(allowed)})" if allowed else ""))
            issues.append(ConfigIssue(doc.key_source(path), path, message))
            continue
        if kind == "missing":
            issues.append(ConfigIssue(doc.source(path[:-1]), path, "required key is missing"))
            continue
        if kind == "literal_error":
            allowed = [a.strip("'") for a in error["ctx"]["expected"].replace(" or ", ", ").split(", ")]
            hint = did_you_mean(str(value), allowed)
            message = (f"expected one of {', '.join(allowed)}, got {show(value)}"
                       + (f" — did you mean '{hint}'?" if hint else ""))
        elif kind in ("model_type", "model_attributes_type", "dict_type"):
            message = f"expected a mapping, got {_describe(value)}"
        elif kind == "list_type":
            message = f"expected a list, got {_describe(value)}"
        elif kind == "too_short":
            message = "expected at least one entry"
        elif kind == "too_long":
            message = f"expected at most {error['ctx']['max_length']:,} entries, got {len(value):,}"
        elif kind in ("union_tag_not_found", "union_tag_invalid"):
            message = f"expected a mapping with `type`, got {_describe(value)}"
        else:
            message = error["msg"]
        issues.append(ConfigIssue(doc.source(path), path, message))
    # `unitz: 8` is one mistake: its did-you-mean already names the missing `units`.
    return [issue for issue in issues if not (issue.message == "required key is missing" and issue.path in suggested)]


def _describe(value) -> str:
    return "a list" if isinstance(value, list) else "a mapping" if isinstance(value, dict) else show(value)


__all__ = ["ConfigError", "ResolvedConfig", "format_path", "load_config", "resolve_document"]
