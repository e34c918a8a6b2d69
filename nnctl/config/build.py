"""Turns a validated config into the compiled model, checking what only the real objects can check.

Names (activations, initializers, losses, metrics), layer shapes and loss/output combinations are tried
by building them; each failure becomes a `ConfigIssue` at the key that caused it.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from nnctl.config.footprint import describe, estimate
from nnctl.config.graph import graph_model, is_graph
from nnctl.config.nested import nested_layer
from nnctl.config.outputs import by_output, compile_outputs, data_issues, metric_entries
from nnctl.config.resolve import ResolvedConfig, in_file_order
from nnctl.config.yamlfile import ConfigError, ConfigIssue
from nnctl.errors import ArgumentError, NnctlError, ShapeError, UnknownNameError, did_you_mean, show
from nnctl.host import available_memory

_BACKTICKED = re.compile(r"`(\w+)`")


def _key_of(err: Exception, spec: dict, path: tuple) -> tuple:
    """The most precise path for `err` inside `spec`: the key it names, or whose value it rejects."""
    if isinstance(err, UnknownNameError):
        for key, value in spec.items():
            named = value.get("type") if isinstance(value, dict) else value
            if named == err.name:
                return path + (key,) + (("type",) if isinstance(value, dict) else ())
    for key in _BACKTICKED.findall(str(err)):
        if key in spec:
            return path + (key,)
    return path


def _spec_dict(spec) -> dict:
    return spec if isinstance(spec, dict) else {"type": spec}


def _unknown_arguments(spec, registry) -> list[tuple[str, str]]:
    """(key, message) for each key of a `{type: name, ...}` spec that the named class does not take.

    Checked here because some classes take `**kwargs` and would silently ignore a misspelt key.
    """
    if not isinstance(spec, dict) or "type" not in spec:
        return []
    try:
        factory = registry.lookup(spec["type"])
    except NnctlError:
        return []  # the unknown name itself is reported when building
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    allowed = [name for name, p in inspect.signature(factory).parameters.items() if p.kind in kinds]
    out = []
    for key in (k for k in spec if k != "type" and k not in allowed):
        hint = did_you_mean(key, allowed) if allowed else None
        out.append((key, f"unknown key {show(key, 80)} for {registry.kind} {show(spec['type'], 80)}"
                         + (f" — did you mean '{hint}'?" if hint else "")
                         + f" (allowed: {', '.join(allowed) or 'none'})"))
    return out


def build_model(resolved: ResolvedConfig, input_shape=None, callbacks: bool = True, rows: int | None = None,
                pretrained: bool = True):
    """The compiled `Sequential` the config describes; a ConfigError lists every problem found.

    `input_shape` (from the data) is used when the config does not give `model.input_shape`; `rows` (the
    training rows) caps the batch the memory estimate assumes. With
    `callbacks`, the callbacks are checked too (evaluate and predict skip them: a run trained with
    `tensorboard` must still load where tensorboardX is not installed). `pretrained=False`: a `model` layer's
    trained run is not read (a run's own weights replace them; config/nested.py).
    """
    from nnctl.nn.callbacks import CALLBACKS
    from nnctl.nn.initializers import INITIALIZERS
    from nnctl.nn.layers import LAYERS, Input
    from nnctl.nn.losses import LOSSES
    from nnctl.nn.metrics import METRICS, resolve_metric
    from nnctl.nn.model import Sequential
    from nnctl.nn.multi import MultiModel
    from nnctl.nn.optimizers import OPTIMIZERS
    from nnctl.nn.regularizers import REGULARIZERS
    from nnctl.nn.schedules import SCHEDULES

    cfg, issues = resolved.config, []

    def attempt(path, spec, make):
        try:
            return make()
        except (NnctlError, TypeError) as err:
            issues.append(resolved.issue(_key_of(err, spec, path), _plain(err)))
            return None

    def arguments_ok(path, spec, registry) -> bool:
        found = _unknown_arguments(spec, registry)
        issues.extend(ConfigIssue(resolved.doc.key_source(path + (key,)), path + (key,), message)
                      for key, message in found)
        return not found

    layers = []
    for index, layer_spec in enumerate(cfg.model.layers):
        spec = {k: v for k, v in layer_spec.model_dump().items()
                if (v is not None or k.endswith("regularizer")) and k != "inputs"}
        path = ("model", "layers", index)
        if spec["type"] == "apply":  # a layer above, used again: config/graph.py wires it
            layers.append(None)
            continue
        if spec["type"] == "model":  # another config's model as a layer
            first = index == (1 if cfg.model.layers[0].type == "input" else 0)
            hint = (cfg.model.input_shape or input_shape) if first else None
            layers.append(attempt(path, spec, lambda spec=spec, hint=hint: nested_layer(resolved, spec, hint,
                                                                                       pretrained)))
            continue
        if spec["type"] == "input" and index > 0:
            issues.append(resolved.issue(path + ("type",), "an input layer can only be the first layer"))
            continue
        nested = [arguments_ok(path + (key,), value, INITIALIZERS if key.endswith("_initializer") else REGULARIZERS)
                  for key, value in spec.items() if key.endswith(("_initializer", "_regularizer"))]
        if all(nested):
            layers.append(attempt(path, spec, lambda spec=spec: LAYERS.get(dict(spec))))
    # A bare name is located at `loss` itself, a mapping's parts at their keys; by output, at each output's.
    given = cfg.loss if by_output(cfg.loss) else {None: cfg.loss}
    losses = {}
    for output, spec in given.items():
        path, loss_spec = ("loss",) + ((output,) if output is not None else ()), spec if isinstance(spec, dict) else {}
        losses[output] = attempt(path, loss_spec, lambda spec=spec: LOSSES.get(spec)) if arguments_ok(
            path, loss_spec, LOSSES) else None
    loss = losses if by_output(cfg.loss) else losses[None]
    for path, spec in metric_entries(cfg.metrics):  # names now, so they are reported with the others
        attempt(path, spec if isinstance(spec, dict) else {},
                lambda spec=spec: METRICS.canonical(_spec_dict(spec)["type"]))
    optimizer_spec = cfg.optimizer.model_dump()
    optimizer = attempt(("optimizer",), optimizer_spec, lambda: OPTIMIZERS.get(
        {k: v for k, v in optimizer_spec.items() if v is not None}))
    for index, callback in enumerate(cfg.callbacks if callbacks else []):
        path = ("callbacks", index)
        schedule = callback.get("schedule") if isinstance(callback, dict) else None
        if arguments_ok(path, callback, CALLBACKS) and arguments_ok(path + ("schedule",), schedule, SCHEDULES):
            attempt(path, callback if isinstance(callback, dict) else {},
                    lambda callback=callback: make_callback(callback))
    if issues:
        raise ConfigError(sorted(issues, key=in_file_order))

    shape, input_name = cfg.model.input_shape or input_shape, None
    if cfg.model.inputs:
        shape = tuple(next(iter(cfg.model.inputs.values())).shape)
    if isinstance(layers[0], Input):
        input_name = layers[0].name
        if cfg.model.input_shape and tuple(cfg.model.input_shape) != layers[0].shape:
            raise ConfigError([resolved.issue(("model", "layers", 0, "shape"), f"the input layer's shape "
                                              f"{list(layers[0].shape)} disagrees with model.input_shape "
                                              f"{cfg.model.input_shape}")])
        shape = layers.pop(0).shape
    if shape is None:
        raise ConfigError([resolved.issue(("model",), "the input shape is unknown: give `model.input_shape` "
                                                      "or data to read it from")])
    offset = 1 if cfg.model.layers[0].type == "input" else 0
    graph = is_graph(cfg.model)
    model = (graph_model(resolved, layers, shape, offset, input_name) if graph
             else Sequential(layers, input_shape=shape, seed=cfg.seed, name=cfg.name, device="cpu"))
    _check_memory(resolved, model, shape, min(cfg.batch_size, rows or cfg.batch_size), optimizer, offset)
    try:
        model.build()  # allocates the weights: the memory check above comes first
    except ShapeError as err:
        index = getattr(err, "layer_index", None)
        index = index + (1 if cfg.model.layers[0].type == "input" else 0) if index is not None else None
        raise ConfigError([resolved.issue(("model", "layers", index) if index is not None else ("model",),
                                          _plain(err))]) from None
    if isinstance(model, MultiModel):
        compile_outputs(resolved, model, optimizer, loss)
        model.config_warnings = []
        return model
    if by_output(cfg.loss) or by_output(cfg.metrics):
        key = "loss" if by_output(cfg.loss) else "metrics"
        raise ConfigError([resolved.issue((key,), f"`{key}` is given by output, but the model has one output: give "
                                                  f"it directly, e.g. `{key}: " + ("mse`" if key == "loss" else
                                                                                   "[accuracy]`"))])
    _check_output(resolved, model, loss)
    model.config_warnings = output_warnings(resolved, model, loss)
    metrics = [attempt(("metrics", i), spec if isinstance(spec, dict) else {}, lambda spec=spec: resolve_metric(
        spec, loss.name, model.units)) for i, spec in enumerate(cfg.metrics)]
    names = [m.name for m in metrics if m is not None]
    for index, metric in enumerate(metrics):
        if metric is not None and names.count(metric.name) > 1:
            issues.append(resolved.issue(("metrics", index), f"metric name '{metric.name}' is used twice; give one "
                                                             f"of them a distinct `name`"))
            break
    if issues:
        raise ConfigError(issues)
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics)
    return model


def _check_memory(resolved: ResolvedConfig, model, shape, batch_rows: int, optimizer, offset: int) -> None:
    """A model (or batch) too big for this machine is refused before any array is allocated."""
    footprint = estimate(model.layers, shape, batch_rows, getattr(optimizer, "slot_count", 3),
                         getattr(model, "sources", None), getattr(model, "input_shapes", None))
    available = available_memory()
    if footprint is None or available is None or footprint.total_bytes <= available:
        return
    # Blame the batch size only when a smaller batch would fit; else the layer with the most weights or outputs.
    where = ("batch_size",)
    if footprint.state_bytes + footprint.row_bytes > available:
        heavy = footprint.state_bytes >= footprint.row_bytes and footprint.biggest_layer is not None
        index = (footprint.biggest_layer if heavy else footprint.widest_layer) + offset
        spec = resolved.config.model.layers[index]
        where = ("model", "layers", index) + (("units",) if getattr(spec, "units", None) else ())
    raise ConfigError([resolved.issue(where, describe(footprint, available))])


def _check_output(resolved: ResolvedConfig, model, loss_object) -> None:
    """Loss and output combinations that train without error but cannot learn anything."""
    loss, units, head = loss_object.name, model.units, model.layers[-1]
    last = ("model", "layers", len(resolved.config.model.layers) - 1)
    if loss in ("categorical_crossentropy", "sparse_categorical_crossentropy") and units == 1:
        raise ConfigError([resolved.issue(last + ("units",), f"{loss} needs one output unit per class, the last layer "
                                          f"has 1: for two classes use binary_crossentropy with a sigmoid output")])
    if loss == "binary_crossentropy" and head.output_activation == "softmax" and units == 1:
        raise ConfigError([resolved.issue(last + ("activation",), "a 1-unit softmax output is always 1.0: use "
                                          "`sigmoid` with binary_crossentropy")])


def output_warnings(resolved: ResolvedConfig, model, loss_object) -> list[ConfigIssue]:
    """Loss and output combinations that run but learn badly: located warnings for `check` and `train`."""
    head = model.layers[-1]
    last = ("model", "layers", len(resolved.config.model.layers) - 1)
    if (loss_object.name == "binary_crossentropy" and not loss_object.from_logits and not head._custom()
            and getattr(head, "output_activation", None) in (None, "linear") and hasattr(head, "activation")):
        # Keras clips probabilities to [1e-7, 1 - 1e-7]: a linear output that leaves [0, 1] gets no gradient.
        return [resolved.issue(last + ("activation",), "binary_crossentropy expects probabilities but the last "
                               "layer's output is linear: outputs outside [0, 1] are clipped and stop learning; use "
                               "`activation: sigmoid`, or `loss: {type: binary_crossentropy, from_logits: true}`")]
    return []


def _plain(err: Exception) -> str:
    """An error's text without a trailing period, so it reads as one clause after the key path."""
    return str(err).rstrip(".")


# The argument of each callback that names a file or folder: a relative path, taken inside the run folder.
CALLBACK_FILES = {"csv_logger": "filename", "tensorboard": "log_dir", "model_checkpoint": "filepath"}


def make_callback(spec, folder=None):
    """The callback a config entry describes; its file or folder argument must be a relative path that stays
    inside the run folder and names none of the run's own files, and is placed inside `folder` when given
    (the callback then also checks, when it writes, that symbolic links do not lead out).

    Example:
        make_callback({"type": "csv_logger"}, Path("runs/imdb/20261123-101500"))  # writes history.csv there
    """
    from nnctl.nn.callbacks import CALLBACKS

    key = CALLBACK_FILES.get(CALLBACKS.canonical(_spec_dict(spec)["type"]))
    given = _spec_dict(spec).get(key)
    if key and isinstance(given, str):  # checked first: reported even where the callback's extra is missing
        _check_path(key, given)
    callback = CALLBACKS.get(dict(_spec_dict(spec)))
    if key:
        value = str(getattr(callback, key))
        _check_path(key, value)
        if folder is not None:
            setattr(callback, key, str(Path(folder) / value))
            callback.run_folder = Path(folder)
    return callback


def _check_path(key: str, value: str) -> None:
    from nnctl.nn.callbacks.paths import check_run_path

    problem = check_run_path(value, "folder" if key == "log_dir" else "file")
    if problem:
        raise ArgumentError(f"`{key}` {problem}")


def _check_templates(resolved: ResolvedConfig, available: list[str]) -> list[ConfigIssue]:
    """A model_checkpoint `filepath` naming a field this run never logs would fail after the first epoch."""
    from nnctl.nn.callbacks import CALLBACKS
    from nnctl.nn.callbacks.paths import check_template

    found = []
    for index, spec in enumerate(resolved.config.callbacks):
        given = _spec_dict(spec)
        try:
            kind = CALLBACKS.canonical(given["type"])
        except NnctlError:
            continue  # reported when building
        if kind != "model_checkpoint" or not isinstance(given.get("filepath"), str):
            continue
        try:
            problem = check_template(given["filepath"], available + ["lr", "epoch_time"])
        except NnctlError as err:
            problem = _plain(err)
        if problem:
            found.append(resolved.issue(("callbacks", index, "filepath"), problem))
    return found


def monitored_names(model, validation: bool) -> list[str]:
    """The keys of an epoch's logs that callbacks can monitor."""
    names = ["loss", *(f"{head.name}_loss" for head in getattr(model, "heads", [])),
             *(metric.name for metric in model.metrics)]
    return names + [f"val_{name}" for name in names] if validation else names


def check_data(resolved: ResolvedConfig, model, splits) -> None:
    """The data against the model: input shape, and targets against the loss and the output width."""
    import numpy as np

    issues, seen = [], set()
    last = ("model", "layers", len(resolved.config.model.layers) - 1)
    several = hasattr(model, "heads")
    if several:
        issues = data_issues(resolved, model, splits)
    for split in ("train", "validation", "test") if not several else ():
        pair = getattr(splits, split)
        if pair is None:
            continue
        x, y = pair
        if tuple(x.shape[1:]) != model.input_shape:
            where = ("model", "input_shape") if resolved.config.model.input_shape else ("data", "path")
            core = (f"the model takes inputs of shape {list(model.input_shape)}, x_{{split}} has rows of shape "
                    f"{list(x.shape[1:])}")
            if core not in seen:  # x_test is usually wrong in the same way as x_train
                seen.add(core)
                issues.append(resolved.issue(where, core.format(split=split)))
        y = np.asarray(y)
        if model.loss.sparse and y.ndim == 2 and y.shape[1] > 1:
            where, core = ("loss",), (f"{model.loss.name} expects integer class ids, but y_{{split}} is one-hot "
                                      f"(shape {list(y.shape[1:])} per sample): use categorical_crossentropy")
        else:
            try:
                model.prepare_targets(y)
                continue
            except NnctlError as err:
                where, core = last + ("units",), "y_{split}: " + _plain(err).replace("{", "{{").replace("}", "}}")
        if core not in seen:  # one line per problem, not one per split
            seen.add(core)
            issues.append(resolved.issue(where, core.format(split=split)))
    # A K-fold config's folds each have validation data, though the whole data set (checked here) has none.
    choice = resolved.config.data.validation
    validated = splits.validation is not None or (choice is not None and choice.kfold is not None)
    available = monitored_names(model, validated)
    issues += _check_monitors(resolved, available) + _check_templates(resolved, available)
    if issues:
        raise ConfigError(sorted(issues, key=in_file_order))


def _check_monitors(resolved: ResolvedConfig, available: list[str]) -> list[ConfigIssue]:
    """A callback watching a figure this run never logs would silently do nothing: an error instead."""
    found = []
    for index, spec in enumerate(resolved.config.callbacks):
        given = _spec_dict(spec)
        monitor = given.get("monitor", "val_loss")
        if not _monitors(given["type"]) or not isinstance(monitor, str) or monitor in available:
            continue
        hint = " (no validation data: set data.validation)" if monitor.startswith("val_") and \
            not any(name.startswith("val_") for name in available) else ""
        where = ("callbacks", index) + (("monitor",) if "monitor" in given else ("type",) if given is spec else ())
        close = did_you_mean(monitor, available)
        found.append(resolved.issue(where, f"{show(monitor)} is not logged by this run{hint}"
                                           f"{f' — did you mean {close!r}?' if close else ''} "
                                           f"(allowed: {', '.join(available)})"))
    return found


def _monitors(kind: str) -> bool:
    from nnctl.nn.callbacks import CALLBACKS

    try:
        return "monitor" in inspect.signature(CALLBACKS.lookup(kind)).parameters
    except NnctlError:
        return False
