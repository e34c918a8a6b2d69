"""A config's graph: layers that name their `inputs` (and a `model.outputs`) become a functional `Model`.

A layer without `inputs` reads the layer above it, so a plain stack is still a `Sequential`. Names are the
layers' own or Keras's automatic ones (dense, dense_1, … in file order); the model input is called `input`
(or the input layer's `name`). Every problem is a located `ConfigIssue`: an unknown or later name (a layer
reads only layers above it, so a graph has no cycles), a wrong number of inputs, shapes that cannot merge,
a layer whose output nothing reads.
"""

from __future__ import annotations

from nnctl.config.resolve import ResolvedConfig, in_file_order
from nnctl.config.yamlfile import ConfigError
from nnctl.errors import NnctlError, show

INPUT_NAME = "input"


def is_graph(model_config) -> bool:
    named = model_config.outputs is not None or model_config.inputs is not None
    return named or any(spec.inputs is not None or spec.type == "apply" for spec in model_config.layers)


def graph_model(resolved: ResolvedConfig, layers, shape, offset: int, input_name: str | None):
    """The functional `Model` of `layers` (the config's layers from index `offset` on) reading one input of
    `shape`, or the named `model.inputs`; raises ConfigError listing every problem found."""
    from nnctl.nn.functional import Input, Model, _nodes_between
    from nnctl.nn.layers.base import name_layers

    cfg, issues = resolved.config, []
    specs = cfg.model.layers[offset:]
    name_layers(layers)  # now, so that `inputs` can name unnamed layers (Sequential.build keeps them)
    named = cfg.model.inputs or {input_name or INPUT_NAME: {"shape": shape}}
    model_inputs = [Input(tuple(getattr(spec, "shape", None) or spec["shape"]), name=name)
                    for name, spec in named.items()]
    tensors, where, owners, failed = {source.name: source for source in model_inputs}, {}, {}, set()
    previous = model_inputs[0] if len(model_inputs) == 1 else None
    for index, (layer, spec) in enumerate(zip(layers, specs)):
        path = ("model", "layers", index + offset)
        if layer is None:  # {apply: NAME}: the layer named NAME above, called again on this entry's inputs
            layer = owners.get(spec.apply)
            if layer is None:
                issues.append(resolved.issue(path + ("apply",), f"no layer above is named {show(spec.apply, 80)} "
                                             f"(layers: {', '.join(owners) or 'none'})"))
                previous = None
                continue
        else:
            owners[layer.name] = layer
        name = spec.name if spec.type == "apply" else layer.name
        if name is not None and name in tensors:
            issues.append(resolved.issue(path + ("name",), f"the name '{name}' is already taken by "
                                         f"{'the model input' if name in named else 'an earlier layer'}"))
            continue
        names = None if spec.inputs is None else [spec.inputs] if isinstance(spec.inputs, str) else spec.inputs
        if names is None and previous is None and index == 0:
            issues.append(resolved.issue(path, f"the model has several inputs ({', '.join(named)}): the first "
                                               f"layer names the ones it reads in `inputs`"))
            continue
        sources, known = [previous], True
        if names is not None:
            sources = []
            for j, wanted in enumerate(names):
                if wanted in failed:  # reported at that layer already
                    known = False
                elif wanted not in tensors:
                    issues.append(resolved.issue(path + ("inputs",) + ((j,) if not isinstance(spec.inputs, str)
                                                                       else ()), _unknown(wanted, specs, layers,
                                                                                          index, list(tensors))))
                    known = False
                sources.append(tensors.get(wanted))
        previous = None
        failed.add(name)  # until it is wired below
        if not known or any(s is None for s in sources):  # reported already, here or above
            continue
        multi = getattr(layer, "multi_input", False)
        if not multi and len(sources) > 1:
            issues.append(resolved.issue(path + ("inputs",), f"{layer.type_name} '{layer.name}' takes one input, "
                                         f"got {len(sources)}: merge them first (add, concatenate, …)"))
            continue
        try:
            previous = layer(sources if multi else sources[0])
        except NnctlError as err:
            issues.append(resolved.issue(path + (("inputs",) if spec.inputs is not None else ()),
                                         f"{layer.type_name} '{layer.name}': {err}"))
            continue
        failed.discard(name)
        if name is not None:
            tensors[name] = previous
        where[id(previous)] = (path, layer, name)
    if issues:
        raise ConfigError(sorted(issues, key=in_file_order))
    if cfg.model.outputs:
        outputs, problems = [], []
        for k, output_name in enumerate(cfg.model.outputs):
            if output_name not in tensors or output_name in named:
                problems.append(resolved.issue(("model", "outputs", k), f"no layer is named {show(output_name, 80)}; "
                                               f"the layers are: {', '.join(n for n in tensors if n not in named)}"))
            elif output_name in cfg.model.outputs[:k]:
                problems.append(resolved.issue(("model", "outputs", k), f"'{output_name}' is listed twice"))
            else:
                outputs.append(tensors[output_name])
        if problems:
            raise ConfigError(problems)
        output_name = ", ".join(cfg.model.outputs)
    else:
        outputs, output_name = [previous], "the last layer"
    used = {id(node) for node in _nodes_between(model_inputs, outputs, check_inputs=False)}
    unused = [resolved.issue(path, f"the output of {layer.type_name} '{name or layer.name}' is not used: no layer "
                             f"reads it and it is not the model's output ({output_name})")
              for key, (path, layer, name) in where.items() if key not in used]
    read = {id(t) for node in _nodes_between(model_inputs, outputs, check_inputs=False) for t in node.inputs}
    unused += [resolved.issue(("model", "inputs", source.name), f"input '{source.name}' is not read by any layer "
                              f"the outputs depend on") for source in model_inputs if id(source) not in read]
    if unused:
        raise ConfigError(sorted(unused, key=in_file_order))
    several = len(model_inputs) > 1 or len(outputs) > 1
    return Model(model_inputs if several else model_inputs[0], outputs if several else outputs[0], seed=cfg.seed,
                 name=cfg.name, device="cpu")


def _unknown(name, specs, layers, index, known) -> str:
    later = [layer.name if layer is not None else spec.name for layer, spec in zip(layers[index:], specs[index:])]
    if name in later:
        return (f"'{name}' is this layer or one below it: a layer reads only the model input and the layers "
                f"above it (so the graph has no cycles)")
    return f"no layer or input above is named {show(name, 80)} (known: {', '.join(known)})"
