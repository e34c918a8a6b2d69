"""A `.npz` for a model with several inputs or outputs: one array per input and per output name.

    data:
      dataset: {type: npz, path: tickets.npz}   # arrays title, text_body, tags, priority, department
                                                 # (+ title_test, …, department_test for a test split)
      dataset: {type: npz, path: t.npz, x: {title: t_train, ...}, y: {priority: p_train, ...}}   # other keys
"""

from __future__ import annotations

from nnctl.config.yamlfile import ConfigError
from nnctl.errors import clip
from nnctl.named import NamedArrays


def wants_named(resolved, spec) -> bool:
    """Whether the config's npz data is read by name: the model names several inputs or outputs, or the
    dataset maps names to keys."""
    model = resolved.config.model
    mapped = any(isinstance(getattr(spec, key, None), dict) for key in ("x", "y", "x_test", "y_test"))
    return mapped or len(model.inputs or {}) > 1 or len(model.outputs or []) > 1


def named_keys(resolved, spec) -> tuple[dict, dict, dict | None, dict | None]:
    """(x keys, y keys, x_test keys, y_test keys), each {name: array key}; the test ones None when not asked."""
    model = resolved.config.model
    inputs = list(model.inputs or {}) or ["input"]
    outputs = list(model.outputs or []) or [model.layers[-1].name or "output"]

    def keys(given, default_names, suffix, default_key):
        if isinstance(given, dict):
            return dict(given)
        if given is None:
            return None
        if given != default_key:  # one key named: a single input or output
            return {default_names[0]: given} if len(default_names) == 1 else None
        return {name: f"{name}{suffix}" for name in default_names}

    return (keys(spec.x, inputs, "", "x_train"), keys(spec.y, outputs, "", "y_train"),
            keys(spec.x_test, inputs, "_test", "x_test"), keys(spec.y_test, outputs, "_test", "y_test"))


def load_named(resolved, where, path, arrays: dict, spec):
    """(x, y, x_test, y_test) as NamedArrays from the file's `arrays`; a missing key, a name that is not an
    input or output, or rows that disagree are located errors at `where`."""
    model = resolved.config.model
    x_keys, y_keys, xt_keys, yt_keys = named_keys(resolved, spec)
    problems = []
    for what, mapping, names in (("x", x_keys, list(model.inputs or {})), ("y", y_keys, list(model.outputs or []))):
        if mapping is None:
            problems.append(f"`{what}` must map the model's {'inputs' if what == 'x' else 'outputs'} "
                            f"({', '.join(names)}) to array keys")
            continue
        unknown = [name for name in mapping if names and name not in names]
        if unknown:
            problems.append(f"`{what}` names {', '.join(map(repr, unknown))}, which the model does not have "
                            f"(its {'inputs' if what == 'x' else 'outputs'}: {', '.join(names)})")
        missing = [key for key in mapping.values() if key not in arrays]
        if missing:
            problems.append(f"{path.name} has no {', '.join(map(repr, missing))} array (it has: "
                            f"{clip(', '.join(sorted(arrays)) or 'nothing')})")
    if problems:
        raise ConfigError([resolved.issue(where, "; ".join(problems))])
    test = xt_keys is not None and yt_keys is not None and all(k in arrays for k in [*xt_keys.values(),
                                                                                     *yt_keys.values()])

    def gather(mapping, what):
        try:
            return NamedArrays({name: arrays[key] for name, key in mapping.items()}, f"{path.name}'s {what}")
        except Exception as err:  # noqa: BLE001 — rows that disagree, located at the data
            raise ConfigError([resolved.issue(where, str(err))]) from None

    x, y = gather(x_keys, "inputs"), gather(y_keys, "targets")
    x_test = gather(xt_keys, "test inputs") if test else None
    y_test = gather(yt_keys, "test targets") if test else None
    for inputs, targets in ((x, y), (x_test, y_test)):
        if inputs is not None and len(inputs) != len(targets):
            raise ConfigError([resolved.issue(where, f"{path.name}: the inputs have {len(inputs)} rows but the "
                                                     f"targets have {len(targets)}")])
    if len(x_keys) == 1:  # one input: a plain array, which `transforms` can work on
        x, x_test = x.values()[0], None if x_test is None else x_test.values()[0]
    return x, y, x_test, y_test
