"""`nnctl compare`'s config differences: one row per leaf on which runs' configs differ, less the differences
that are none (a key an older nnctl did not write yet, which every other run holds at its default)."""

from __future__ import annotations

import json


def without_absent_defaults(rows: list, configs: list) -> list:
    """`rows` ((key, one value per run), "(absent)" where a config lacks the key) less the keys that every
    config holding them holds at the schema's default; `configs` are the runs' parsed configs (None: unreadable)."""
    from nnctl.config.resolve import NO_DEFAULT, default_at
    from nnctl.config.yamlfile import value_at

    readable = [config for config in configs if isinstance(config, dict)]
    leaves = [leaf_paths(config) for config in readable]
    kept = []
    for key, values in rows:
        given = [(config, found[key]) for config, found in zip(readable, leaves) if key in found]
        lacking = [config for config, found in zip(readable, leaves) if key not in found]
        defaults = [default_at(path, config) for config, (path, _) in given]
        parent = given[0][1][0][:-1] if given else None
        # Only a key missing from a mapping the run has: a layer only one run has is a difference in full.
        if lacking and all(isinstance(value_at(config, parent), dict) for config in lacking) and all(
                default is not NO_DEFAULT and default == value for default, (_, (_, value)) in zip(defaults, given)):
            continue
        kept.append((key, values))
    return kept


def leaf_paths(value, path: tuple = ()) -> dict:
    """{key as nnctl.runs.browse.flatten_config spells it: (its path as a tuple of keys and indexes, value)}."""
    if isinstance(value, (dict, list)) and value:
        children = value.items() if isinstance(value, dict) else enumerate(value)
        found: dict = {}
        for step, child in children:
            found.update(leaf_paths(child, path + (step,)))
        return found
    key = "".join(f"[{step}]" if isinstance(step, int) else f".{step}" for step in path).lstrip(".")
    return {key: (path, value)}


def flatten_config(value, prefix: str = "") -> dict:
    """{"optimizer.learning_rate": 0.001, "model.layers[0].units": 16, ...}: one entry per leaf of a config."""
    if isinstance(value, dict) and value:
        items = [(f"{prefix}.{key}" if prefix else str(key), child) for key, child in value.items()]
    elif isinstance(value, list) and value:
        items = [(f"{prefix}[{index}]", child) for index, child in enumerate(value)]
    else:
        return {prefix: value}
    flat: dict = {}
    for path, child in items:
        flat.update(flatten_config(child, path))
    return flat


def config_diff(config_texts: list[str | None]) -> list[tuple[str, list[str]]]:
    """(key path, one value per run) for every leaf on which the configs differ, as YAML would spell the values;
    "(absent)" where a config lacks the key, "?" for a run without a readable config.yaml."""
    from nnctl.config.yamlfile import ConfigError, parse_yaml

    flats, configs = [], []
    for text in config_texts:
        try:  # the config loader's parser: safe, with its budget against alias bombs and deep nesting
            loaded = parse_yaml(text, "config.yaml").data if text is not None else None
        except (ConfigError, RecursionError):
            loaded = None
        flats.append(flatten_config(loaded) if isinstance(loaded, dict) else None)
        configs.append(loaded)
    present = [flat for flat in flats if flat is not None]
    keys = list(dict.fromkeys(key for flat in present for key in flat))
    rows = []
    for key in keys:
        values = ["?" if flat is None else _yaml_scalar(flat, key) for flat in flats]
        if len({value for value, flat in zip(values, flats) if flat is not None}) > 1:
            rows.append((key, values))
    return without_absent_defaults(rows, configs)  # an older nnctl's config lacks a newer key's default


def _yaml_scalar(flat: dict, key: str) -> str:
    if key not in flat:
        return "(absent)"
    return flat[key] if isinstance(flat[key], str) else json.dumps(flat[key])
