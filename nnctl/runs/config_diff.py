"""`nnctl compare`'s config differences that are no difference: a key an older nnctl did not write yet, which
every other run holds at its default (the run without it behaved the same)."""

from __future__ import annotations


def without_absent_defaults(rows: list, configs: list) -> list:
    """`rows` ((key, one value per run), "(absent)" where a config lacks the key) less the keys that every
    config holding them holds at the schema's default; `configs` are the runs' parsed configs (None: unreadable)."""
    from nnctl.config.resolve import NO_DEFAULT, default_at

    readable = [config for config in configs if isinstance(config, dict)]
    leaves = [leaf_paths(config) for config in readable]
    kept = []
    for key, values in rows:
        given = [(config, found[key]) for config, found in zip(readable, leaves) if key in found]
        lacking = [config for config, found in zip(readable, leaves) if key not in found]
        defaults = [default_at(path, config) for config, (path, _) in given]
        parent = given[0][1][0][:-1] if given else None
        # Only a key missing from a mapping the run has: a layer only one run has is a difference in full.
        if lacking and all(isinstance(_at(config, parent), dict) for config in lacking) and all(
                default is not NO_DEFAULT and default == value for default, (_, (_, value)) in zip(defaults, given)):
            continue
        kept.append((key, values))
    return kept


def _at(config, path: tuple):
    for step in path:
        if isinstance(config, dict) and step in config or isinstance(config, list) and isinstance(step, int) \
                and 0 <= step < len(config):
            config = config[step]
        else:
            return None
    return config


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
