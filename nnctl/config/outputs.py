"""A config's losses, loss weights and metrics for a model with several outputs (or several inputs).

`loss`, `loss_weights` and `metrics` name the outputs (`model.outputs`, by layer name):

    loss: {priority: mean_squared_error, department: categorical_crossentropy}
    loss_weights: {priority: 1.0, department: 1.0}
    metrics: {priority: [mean_absolute_error], department: [accuracy]}

One `loss` that is not a mapping by output applies to every output, as in Keras; metrics given as a plain list
are refused for several outputs (which output would they measure?). Every problem is located at its key.
"""

from __future__ import annotations

from nnctl.config.resolve import ResolvedConfig, in_file_order
from nnctl.config.yamlfile import ConfigError
from nnctl.errors import NnctlError, did_you_mean, show


def by_output(spec) -> bool:
    """Whether a `loss` or `metrics` value is a mapping by output name."""
    return isinstance(spec, dict) and "type" not in spec


def metric_entries(metrics) -> list[tuple[tuple, object]]:
    """(path, spec) of every metric in the config, whichever form `metrics` takes."""
    if not by_output(metrics):
        return [(("metrics", index), spec) for index, spec in enumerate(metrics)]
    found = []
    for name, given in metrics.items():
        if isinstance(given, list):
            found += [(("metrics", name, index), spec) for index, spec in enumerate(given)]
        else:
            found.append((("metrics", name), given))
    return found


def compile_outputs(resolved: ResolvedConfig, model, optimizer, losses) -> None:
    """Compiles a several-output (or several-input) `MultiModel` with the config's per-output losses, weights
    and metrics; a ConfigError lists every name that is not an output and every output/loss mismatch."""
    from nnctl.nn.metrics import resolve_metric

    cfg, issues = resolved.config, []
    names = model.output_names
    single = not by_output(cfg.loss)

    def unknown(section, key):
        close = did_you_mean(str(key), names)
        return resolved.issue((section, key), f"{show(key, 80)} is not an output of the model"
                                              f"{f' — did you mean {close!r}?' if close else ''} (outputs: "
                                              f"{', '.join(names)})")

    if not single:
        issues += [unknown("loss", key) for key in cfg.loss if key not in names]
        missing = [name for name in names if name not in cfg.loss]
        if missing:
            issues.append(resolved.issue(("loss",), f"no loss for output {', '.join(repr(m) for m in missing)}: "
                                                    f"give one for every output ({', '.join(names)})"))
    issues += [unknown("loss_weights", key) for key in cfg.loss_weights or {} if key not in names]
    if by_output(cfg.metrics):
        issues += [unknown("metrics", key) for key in cfg.metrics if key not in names]
    elif cfg.metrics and len(names) > 1:
        issues.append(resolved.issue(("metrics",), f"the model has several outputs ({', '.join(names)}): give "
                                                   f"metrics by output, e.g. {{{names[-1]}: [accuracy]}}"))
    if issues:
        raise ConfigError(sorted(issues, key=in_file_order))
    per_loss = {name: losses if single else losses[name] for name in names}
    for head in model.heads:
        layer, loss = model.layers[head.node], per_loss[head.name]
        where = ("loss",) if single else ("loss", head.name)
        if loss.name in ("categorical_crossentropy", "sparse_categorical_crossentropy") and head.units == 1:
            issues.append(resolved.issue(where, f"output '{head.name}' has 1 unit: {loss.name} needs one unit per "
                                                f"class (for two classes use binary_crossentropy with a sigmoid)"))
        if (loss.name == "binary_crossentropy" and getattr(layer, "output_activation", None) == "softmax"
                and head.units == 1):
            issues.append(resolved.issue(where, f"output '{head.name}' is a 1-unit softmax, always 1.0: use "
                                                f"`sigmoid` with binary_crossentropy"))
    metrics = {}
    given = cfg.metrics if by_output(cfg.metrics) else {names[0]: cfg.metrics} if cfg.metrics else {}
    for name, entry in given.items():
        entries = entry if isinstance(entry, list) else [entry]
        head = model.heads[names.index(name)]
        built = []
        for index, spec in enumerate(entries):
            path = ("metrics", name) + ((index,) if isinstance(entry, list) else ())
            if not by_output(cfg.metrics):
                path = ("metrics", index)
            try:
                built.append(resolve_metric(spec, per_loss[name].name, head.units))
            except (NnctlError, TypeError) as err:
                issues.append(resolved.issue(path, str(err).rstrip(".")))
        metrics[name] = built
    if issues:
        raise ConfigError(sorted(issues, key=in_file_order))
    try:
        model.compile(optimizer=optimizer, loss=per_loss, metrics=metrics,
                      loss_weights=dict(cfg.loss_weights or {}))
    except NnctlError as err:
        raise ConfigError([resolved.issue(("loss",), str(err).rstrip("."))]) from None


def data_issues(resolved: ResolvedConfig, model, splits) -> list:
    """The data against a several-input or several-output model: arrays by input and output name, each
    input's shape, and each output's targets against its loss and width."""
    import numpy as np

    from nnctl.named import NamedArrays
    from nnctl.nn.inputs import target_rows

    issues, seen = [], set()
    for split in ("train", "validation", "test"):
        pair = getattr(splits, split)
        if pair is None:
            continue
        x, y = pair
        if not isinstance(x, NamedArrays) and len(model.input_names) == 1:
            x = NamedArrays({model.input_names[0]: x})
        for what, value, names in (("inputs", x, model.input_names), ("outputs", y, model.output_names)):
            have = value.names() if isinstance(value, NamedArrays) else []
            missing = [name for name in names if name not in have]
            if missing and what not in seen:
                seen.add(what)
                issues.append(resolved.issue(("data",), f"the model's {what} are {', '.join(names)}: the data must "
                                             f"give an array for each by name, the {split} split has "
                                             f"{', '.join(have) or 'a single unnamed array'}"))
        if issues:
            break
        for k, name in enumerate(model.input_names):
            got = tuple(np.shape(x[name])[1:])
            if got != model.input_shapes[k] and name not in seen:
                seen.add(name)
                issues.append(resolved.issue(("model", "inputs", name, "shape"), f"input '{name}' takes shape "
                                             f"{list(model.input_shapes[k])} per sample, the {split} data has "
                                             f"{list(got)}"))
        for head in model.heads:
            try:
                head.loss.prepare_targets(target_rows(np.asarray(y[head.name]), head.shape), head.units)
            except NnctlError as err:
                if head.name not in seen:
                    seen.add(head.name)
                    where = ("loss", head.name) if by_output(resolved.config.loss) else ("loss",)
                    issues.append(resolved.issue(where, f"the {split} targets of output '{head.name}': "
                                                        f"{str(err).rstrip('.')}"))
    return issues

