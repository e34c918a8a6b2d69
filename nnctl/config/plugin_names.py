"""The plugins a config names, loaded before its names are checked (nnctl/plugins.py): the files in `plugins`,
every `module:Class` type, and layer types an installed package registers as entry points. Each failure is a
located issue at the key that named it."""

from __future__ import annotations

from pathlib import Path

from nnctl.config.yamlfile import ConfigIssue, Document
from nnctl.errors import NnctlError


def _typed_entries(data: dict) -> list[tuple[tuple, object, str]]:
    """(path, type name, family) of every layer, loss and metric entry in the raw config."""
    found = []
    model = data.get("model") if isinstance(data.get("model"), dict) else {}
    layers = model.get("layers") if isinstance(model.get("layers"), list) else []
    for index, entry in enumerate(layers):
        found.append(_entry(("model", "layers", index), entry, "layer"))
    loss = data.get("loss")
    if isinstance(loss, dict) and "type" not in loss:
        found += [_entry(("loss", key), value, "loss") for key, value in loss.items()]
    else:
        found.append(_entry(("loss",), loss, "loss"))
    metrics = data.get("metrics")
    groups = metrics.items() if isinstance(metrics, dict) else [(None, metrics)]
    for key, group in groups:
        base = ("metrics",) + ((key,) if key is not None else ())
        if isinstance(group, list):
            found += [_entry(base + (index,), value, "metric") for index, value in enumerate(group)]
        else:
            found.append(_entry(base, group, "metric"))
    return [item for item in found if item is not None]


def _entry(path, entry, family):
    if isinstance(entry, str):
        return path, entry, family
    if isinstance(entry, dict) and isinstance(entry.get("type"), str):
        return path + ("type",), entry["type"], family
    return None


def load_plugins(doc: Document, base_dir: Path) -> tuple[list[ConfigIssue], list]:
    """(issues, the Plugin records) for the config in `doc`, read relative to `base_dir`."""
    from nnctl import plugins as registry
    from nnctl.nn.layers import LAYERS

    data, issues, loaded = doc.data, [], []
    files = data.get("plugins")
    for index, text in enumerate(files if isinstance(files, list) else []):
        if not isinstance(text, str) or not text.strip():
            continue  # the schema reports it
        path = Path(text).expanduser()
        try:
            loaded.append(registry.load_file(path if path.is_absolute() else base_dir / path))
        except NnctlError as err:
            issues.append(ConfigIssue(doc.source(("plugins", index)), ("plugins", index), str(err)))
            loaded.append(registry.Plugin(str(path), names=[], failed=path.stem))
    for path, name, family in _typed_entries(data):
        try:
            if ":" in name:
                loaded.append(_module_type(registry, name, base_dir, loaded))
            elif family == "layer" and "." not in name and not _known(LAYERS, name):
                found = registry.load_entry_point(name)
                if found is not None:
                    loaded.append(found)
        except NnctlError as err:
            issues.append(ConfigIssue(doc.source(path), path, str(err)))
    return issues, loaded


def _module_type(registry, name: str, base_dir: Path, loaded: list):
    """`module:Class` from a plugin file of that stem the config loaded, an importable module, or the file
    `<module path>.py` beside the config; registered under `name` as well."""
    module = name.partition(":")[0]
    plugin = next((p for p in loaded if p.sha256 and Path(p.source).stem == module), None)
    if plugin is None:
        beside = base_dir / (module.replace(".", "/") + ".py")
        try:
            return registry.load_module_type(name)
        except NnctlError:
            if not beside.is_file():
                raise
        plugin = registry.load_file(beside)
    plugin.names.append(registry.register_alias(name, plugin))
    return plugin


def _known(registry, name: str) -> bool:
    try:
        registry.canonical(name)
        return True
    except NnctlError:
        return False
