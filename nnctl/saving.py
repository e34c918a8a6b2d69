"""`model.save(path)` and `nnctl.load_model(path)`: one safetensors file holding the weights (in the run's
`weights.safetensors` layout) and, in its metadata, the architecture and the compile arguments as JSON —
no pickle, as a run's files. Keras's `.keras` is a zip with the same three parts; the optimizer's state is not
saved (a run's checkpoint keeps it: `nnctl train --resume`).

A layer class the library does not know (a custom layer) is found in `custom_objects` by its class name, as
Keras does; it must return its `__init__` arguments from `get_config()`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nnctl.errors import ArgumentError, NnctlError

FORMAT = "nnctl-model-1"


def save_model(model, path) -> None:
    """Writes `model` (built; compiled or not) to the safetensors file `path`."""
    import safetensors.numpy

    from nnctl.runs.rundir import atomic_write_bytes, canonical_safetensors

    model.build()
    owners = model._owners()
    spec = {"class": "Model" if hasattr(model, "sources") else "Sequential", "name": model.name,
            "input_shape": list(model.input_shape), "dtype": str(model.dtype), "seed": model.seed,
            "layers": [{"type": layer.type_name, "class": type(layer).__name__, "config": layer.get_config()}
                       for layer in owners]}
    if hasattr(model, "sources"):
        index = {id(layer): i for i, layer in enumerate(owners)}
        spec["graph"] = {"input": model.graph_input.name,
                         "nodes": [{"layer": index[id(model.layers[first])], "sources": sources}
                                   for first, sources in zip(model.first_use, model.sources)]}
        if hasattr(model, "heads"):  # several inputs (source -1 - k is input k) or outputs (by node)
            spec["graph"]["inputs"] = [{"name": name, "shape": list(shape)}
                                       for name, shape in zip(model.input_names, model.input_shapes)]
            spec["graph"]["outputs"] = list(model.output_nodes)
    config = getattr(model, "compile_config", None)
    if config is not None:
        spec["compile"] = config
    try:
        text = json.dumps(spec, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ArgumentError(f"cannot save this model: its configuration is not plain data ({err}); give "
                            f"layers, the optimizer, the loss and metrics as names or mappings") from None
    tensors = {name: np.ascontiguousarray(value) for name, value in model.get_weights().items()}
    data = safetensors.numpy.save(tensors, metadata={"format": FORMAT, "model": text})
    atomic_write_bytes(Path(path), canonical_safetensors(data))


def load_model(path, custom_objects: dict | None = None, compile: bool = True):  # noqa: A002 (Keras's name)
    """The model saved at `path` (an `nnctl.Sequential` or `nnctl.Model`), its weights restored and, when it
    was compiled and `compile`, compiled again with the same arguments."""
    from nnctl import api
    from nnctl.nn.functional import Input
    from nnctl.runs.tensorfiles import check_tensors, model_shapes, read_tensors
    from nnctl.runs.untrusted import RunFileError

    tensors, metadata = read_tensors(path, "model file")
    if metadata.get("format") != FORMAT:
        raise RunFileError(path, f"is not a saved nnctl model (format {metadata.get('format')!r}, expected "
                                 f"{FORMAT!r}); a run's weights load with nnctl.load_run")
    try:
        spec = json.loads(metadata["model"])
        layers = [_layer(entry, custom_objects or {}) for entry in spec["layers"]]
        options = {"seed": spec["seed"], "name": spec["name"], "dtype": spec["dtype"]}
        if spec["class"] == "Sequential":
            model = api.Sequential(layers, input_shape=spec["input_shape"], **options)
        else:
            graph = spec["graph"]
            sources = [Input(entry["shape"], name=entry["name"]) for entry in graph.get("inputs", [])] or [
                Input(spec["input_shape"], name=graph["input"])]
            outputs = []
            for node in graph["nodes"]:
                layer = layers[node["layer"]]
                inputs = [sources[-1 - j] if j < 0 else outputs[j] for j in node["sources"]]
                outputs.append(layer(inputs if getattr(layer, "multi_input", False) else inputs[0]))
            if "outputs" in graph:
                model = api.Model(sources, [outputs[j] for j in graph["outputs"]], **options)
            else:
                model = api.Model(sources[0], outputs[-1], **options)
    except NnctlError:
        raise
    except (KeyError, TypeError, IndexError, ValueError) as err:
        raise RunFileError(path, f"holds a model description nnctl cannot read ({type(err).__name__}: {err})") from None
    if compile and "compile" in spec:
        model.compile(**spec["compile"])
    model.build()
    check_tensors(path, tensors, model_shapes(model), model.dtype, whose="the saved model")
    for param in model.store.weights:
        param.value[...] = tensors[param.name]
    return model


def _layer(entry, custom_objects):
    from nnctl.nn.layers import LAYERS

    cls = custom_objects.get(entry["class"])
    if cls is None:
        try:
            cls = LAYERS.lookup(entry["type"])
        except NnctlError:
            raise ArgumentError(f"the saved model has a layer of class {entry['class']!r} that nnctl does not know: "
                                f"pass custom_objects={{{entry['class']!r}: {entry['class']}}}") from None
    return cls(**entry["config"])
