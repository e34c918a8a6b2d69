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
    return model_config.outputs is not None or any(spec.inputs is not None or spec.type == "apply"
                                                   for spec in model_config.layers)


def graph_model(resolved: ResolvedConfig, layers, shape, offset: int, input_name: str | None):
    """The functional `Model` of `layers` (the config's layers from index `offset` on) reading one input of
    `shape`; raises ConfigError listing every problem found."""
    from nnctl.nn.functional import Input, Model, _nodes_between
    from nnctl.nn.layers.base import name_layers

    cfg, issues = resolved.config, []
    specs = cfg.model.layers[offset:]
    name_layers(layers)  # now, so that `inputs` can name unnamed layers (Sequential.build keeps them)
    source = Input(shape, name=input_name or INPUT_NAME)
    tensors, where, owners, failed = {source.name: source}, {}, {}, set()
    previous = source
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
                                         f"{'the model input' if name == source.name else 'an earlier layer'}"))
            continue
        names = None if spec.inputs is None else [spec.inputs] if isinstance(spec.inputs, str) else spec.inputs
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
        output_name = cfg.model.outputs[0]
        if output_name not in tensors or output_name == source.name:
            raise ConfigError([resolved.issue(("model", "outputs", 0), f"no layer is named {show(output_name, 80)}; "
                                              f"the layers are: {', '.join(list(tensors)[1:])}")])
        output = tensors[output_name]
    else:
        output, output_name = previous, "the last layer"
    used = {id(node) for node in _nodes_between(source, output)}
    unused = [resolved.issue(path, f"the output of {layer.type_name} '{name or layer.name}' is not used: no layer "
                             f"reads it and it is not the model's output ({output_name})")
              for key, (path, layer, name) in where.items() if key not in used]
    if unused:
        raise ConfigError(sorted(unused, key=in_file_order))
    return Model(source, output, seed=cfg.seed, name=cfg.name, device="cpu")


def _unknown(name, specs, layers, index, known) -> str:
    later = [layer.name if layer is not None else spec.name for layer, spec in zip(layers[index:], specs[index:])]
    if name in later:
        return (f"'{name}' is this layer or one below it: a layer reads only the model input and the layers "
                f"above it (so the graph has no cycles)")
    return f"no layer or input above is named {show(name, 80)} (known: {', '.join(known)})"
