"""`nnctl export RUN --format onnx`: a trained run's model as an ONNX graph (opset 17), checked against
`nnctl predict` by onnxruntime.

The graph takes the model's inputs (token ids as int32) and gives its outputs after their activations, as
`predict` does. The run's arithmetic preprocessing (impute, standardize, rescale, and the reshapes after
them) goes into the graph as ops, so the graph reads raw features; what is not arithmetic (multi-hot, padding,
tokenizing) stays outside, written beside the model as JSON (`<model>.preprocessing.json`). The `onnx` and
`onnxruntime` packages come with the extra `nnctl[onnx]`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nnctl.errors import NnctlError
from nnctl.export.onnx_layers import CONVERTERS, NotExportable, merge
from nnctl.export.onnx_recurrent import RECURRENT

OPSET = 17
ARITHMETIC = ("impute", "standardize", "rescale", "flatten", "reshape")


def _require():
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise NnctlError("exporting to ONNX needs the onnx package: pip install 'nnctl[onnx]'") from None


class Graph:
    """The nodes and constants of the graph being written; `op` returns its output's name."""

    def __init__(self):
        self.nodes, self.initializers, self.count = [], [], 0

    def fresh(self, stem: str) -> str:
        self.count += 1
        return f"{stem}_{self.count}"

    def const(self, array) -> str:
        from onnx import numpy_helper

        name = self.fresh("const")
        array = np.asarray(array)
        if array.dtype == np.float64:
            array = array.astype(np.float32)
        self.initializers.append(numpy_helper.from_array(array.copy(order="C"), name))  # (0-d stays 0-d)
        return name

    def op(self, op_type: str, inputs: list, outputs: int = 1, **attrs):
        """The node's output name (a list of `outputs` names when it has several)."""
        from onnx import helper

        names = [self.fresh(op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, **attrs))
        return names[0] if outputs == 1 else names


def split_transforms(transforms) -> tuple[list, list]:
    """(outside, inside): the run's x transforms left to the caller, and the arithmetic tail the graph does."""
    xs = [t for t in transforms if t.target == "x"]
    tail = len(xs)
    while tail > 0 and xs[tail - 1].type_name in ARITHMETIC:
        tail -= 1
    return xs[:tail], xs[tail:]


def _preprocess(g, x, transforms):
    for t in transforms:
        kind, options = t.type_name, t.options
        if kind == "impute":
            x = g.op("Where", [g.op("IsNaN", [x]), g.const(np.asarray(t.values, np.float32)), x])
        elif kind == "standardize":
            x = g.op("Div", [g.op("Sub", [x, g.const(np.asarray(t.mean, np.float32))]),
                             g.const(np.asarray(t.std, np.float32))])
        elif kind == "rescale":
            x = g.op("Add", [g.op("Mul", [x, g.const(np.float32(options["scale"]))]),
                             g.const(np.float32(options.get("offset", 0.0)))])
        elif kind == "flatten":
            x = g.op("Flatten", [x], axis=1)
        else:  # reshape
            x = g.op("Reshape", [x, g.const(np.array([0] + list(options["shape"]), np.int64))])
    return x


def _layer(g, layer, inputs: list) -> str:
    from nnctl.nn.functional import NestedModel

    if isinstance(layer, NestedModel):
        return _walk(g, layer.model, inputs)[0]
    if hasattr(layer, "export_onnx"):  # a plugin's own export: export_onnx(graph, x) → its output's name
        return layer.export_onnx(g, inputs if getattr(layer, "multi_input", False) else inputs[0])
    if layer._custom():
        raise NotExportable(f"layer '{layer.name}' ({type(layer).__name__}) is a custom layer: its `call` has no "
                            f"ONNX export (give the class an `export_onnx(graph, x)` method to provide one)")
    if getattr(layer, "multi_input", False):
        return merge(g, layer, inputs)
    convert = CONVERTERS.get(layer.type_name) or RECURRENT.get(layer.type_name)
    if convert is None:
        raise NotExportable(f"layer '{layer.name}' ({type(layer).__name__}) has no ONNX export yet "
                            f"(exported: {', '.join(sorted({**CONVERTERS, **RECURRENT}))} and the merge layers)")
    return convert(g, layer, inputs[0])


def _walk(g, model, inputs: list) -> list:
    """The output names of `model` (a stack or a graph) reading the tensors named `inputs`."""
    if not hasattr(model, "sources"):
        out = inputs[0]
        for layer in model.layers:
            out = _layer(g, layer, [out])
        return [out]
    outs = []
    for index, layer in enumerate(model.layers):
        outs.append(_layer(g, layer, [inputs[-1 - j] if j < 0 else outs[j] for j in model.sources[index]]))
    nodes = getattr(model, "output_nodes", [len(model.layers) - 1])
    return [outs[j] for j in nodes]


def _input_types(model):
    """(name, shape, ONNX element type) per model input."""
    from onnx import TensorProto

    names = getattr(model, "input_names", None) or [getattr(getattr(model, "graph_input", None), "name", "input")]
    shapes = getattr(model, "input_shapes", None) or [model.input_shape]
    found = []
    for k, (name, shape) in enumerate(zip(names, shapes)):
        readers = ([model.layers[i] for i, src in enumerate(model.sources) if -1 - k in src]
                   if hasattr(model, "sources") else model.layers[:1])
        typed = any(getattr(layer, "input_dtype", None) is not None for layer in readers)
        found.append((name, shape, TensorProto.INT32 if typed else TensorProto.FLOAT))
    return found


def build_onnx(model, transforms=(), name: str = "nnctl", raw_shape=None):
    """(the ONNX ModelProto of a built `model` with the arithmetic tail of `transforms` in front, the transforms
    left outside). `raw_shape`: the per-sample shape before those transforms, when they reshape."""
    _require()
    from onnx import TensorProto, checker, helper

    g = Graph()
    outside, inside = split_transforms(list(transforms))
    entries = _input_types(model)
    if inside and len(entries) > 1:
        raise NotExportable("preprocessing for several inputs is not exported")
    declared, tensors = [], []
    reshaping = any(t.type_name in ("flatten", "reshape") for t in inside)
    if reshaping and raw_shape is None:
        raise NnctlError("the run's preprocessing reshapes its inputs: give the raw per-sample shape")
    for input_name, shape, elem in entries:
        declared.append(helper.make_tensor_value_info(input_name, elem, ["batch", *(raw_shape if reshaping
                                                                                    else shape)]))
        tensors.append(_preprocess(g, input_name, inside) if inside else input_name)
    outputs = _walk(g, model, tensors)
    output_names = getattr(model, "output_names", None) or ["output"]
    for out, out_name in zip(outputs, output_names):
        g.nodes.append(helper.make_node("Identity", [out], [out_name]))
    shapes = [h.shape for h in model.heads] if hasattr(model, "heads") else [model.output_shape]
    graph = helper.make_graph(g.nodes, name, declared,
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", *shape])
                               for n, shape in zip(output_names, shapes)], g.initializers)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="nnctl")
    proto.ir_version = 8  # what onnxruntime 1.14+ reads
    checker.check_model(proto)
    return proto, outside


def export_run(loaded, output=None) -> tuple[Path, Path | None]:
    """Writes the run's model to `output` (default: model.onnx in the run folder) and, when some preprocessing
    stays outside the graph, `<output stem>.preprocessing.json` beside it; returns both paths."""
    from nnctl.runs.rundir import atomic_write_bytes

    raw_shape = None
    if any(t.type_name in ("flatten", "reshape") for t in split_transforms(list(loaded.transforms))[1]):
        from nnctl.data.files import load_source  # the data's own per-sample shape, before the reshapes

        source = load_source(loaded.resolved)
        raw_shape = tuple(np.shape(source.x_test if source.x_test is not None else source.x)[1:])
    proto, outside = build_onnx(loaded.model, loaded.transforms, loaded.resolved.config.name, raw_shape)
    path = Path(output) if output else loaded.run.path / "model.onnx"
    if path.suffix.lower() != ".onnx":
        raise NnctlError(f"cannot export to '{path.name}': the file must end in .onnx")
    if not path.parent.is_dir():
        raise NnctlError(f"{path}: cannot write: the folder {path.parent} does not exist")
    try:
        atomic_write_bytes(path, proto.SerializeToString())
        beside = None
        if outside:
            beside = path.with_name(f"{path.stem}.preprocessing.json")
            note = ("apply these transforms (nnctl/data/transforms.py) to raw inputs, in order, before the graph; "
                    "the rest of the run's preprocessing is in the graph")
            atomic_write_bytes(beside, json.dumps({"note": note, "transforms": [t.state() for t in outside]},
                                                  indent=2).encode())
    except OSError as error:
        raise NnctlError(f"{path}: cannot write ({error.strerror or error})") from None
    return path, beside


def check_run(loaded, path: Path, rows: int = 256) -> dict:
    """Runs the exported model in onnxruntime on the run's test (else validation) inputs and compares with
    nnctl's predictions: {"rows", "max_abs", "max_rel", "split"}."""
    try:
        import onnxruntime
    except ImportError:
        raise NnctlError("--check needs onnxruntime: pip install 'nnctl[onnx]'") from None
    from nnctl.data.files import load_source
    from nnctl.data.transforms import apply_all
    from nnctl.named import NamedArrays

    source = load_source(loaded.resolved)
    split = "test" if source.x_test is not None else "train"
    raw = source.x_test if source.x_test is not None else source.x
    raw = raw.take(np.arange(min(rows, len(raw)))) if hasattr(raw, "take") and not isinstance(raw, np.ndarray) \
        else raw[:rows]
    outside, _ = split_transforms(list(loaded.transforms))
    fed, _ = apply_all(outside, raw)
    model = loaded.model
    expected = model.predict(apply_all(loaded.transforms, raw)[0], batch_size=64)
    expected = expected if isinstance(expected, list) else [expected]
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {}
    for item, (name, _shape, elem) in zip(session.get_inputs(), _input_types(model)):
        value = fed[name] if isinstance(fed, NamedArrays) else fed
        value = value.to_dense() if hasattr(value, "to_dense") else np.asarray(value)
        feeds[item.name] = value.astype(np.int32 if elem == 6 else np.float32)
    got = session.run(None, feeds)
    worst_abs = max(float(np.max(np.abs(a - b))) for a, b in zip(got, expected))
    worst_rel = max(float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-3))) for a, b in zip(got, expected))
    return {"rows": int(len(expected[0])), "max_abs": worst_abs, "max_rel": worst_rel, "split": split}
