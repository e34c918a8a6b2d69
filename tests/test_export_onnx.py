"""`nnctl export --format onnx`: every exported layer family run in onnxruntime against nnctl's own predict
(≤ 1e-4 relative), the preprocessing in the graph, the refusals, and the command line. Skipped without the
`onnx` extra."""

from __future__ import annotations

import json

import numpy as np
import pytest

onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from nnctl.export.onnx import build_onnx  # noqa: E402
from nnctl.export.onnx_layers import NotExportable  # noqa: E402
from nnctl.nn.functional import Input, Model  # noqa: E402
from nnctl.nn.layers import LAYERS  # noqa: E402
from nnctl.nn.model import Sequential  # noqa: E402
from tests.conftest import invoke, run_path  # noqa: E402

RNG = np.random.default_rng(3)


def L(kind, **kwargs):  # noqa: N802 (a layer by its config name)
    return LAYERS.get({"type": kind, **kwargs})


def _run_onnx(model, inputs: dict, transforms=(), raw_shape=None):
    proto, _ = build_onnx(model, transforms, raw_shape=raw_shape)
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, inputs)


def _close(model, x, name="input"):
    expected = model.predict(x, batch_size=16)
    got = _run_onnx(model, {name: x})[0]
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * scale)


def _perturb_batch_norms(model):
    for layer in model.layers:
        if layer.type_name == "batch_normalization":
            layer.moving_mean.value[...] = RNG.normal(size=layer.moving_mean.value.shape)
            layer.moving_variance.value[...] = RNG.uniform(0.5, 2.0, layer.moving_variance.value.shape)
            if layer.gamma is not None:
                layer.gamma.value[...] = RNG.uniform(0.5, 1.5, layer.gamma.value.shape)


CASES = {
    "dense-activations": ([L("dense", units=8, activation="relu"), L("dense", units=6, activation="elu"),
                           L("dense", units=6, activation="gelu"), L("dense", units=5, activation="leaky_relu"),
                           L("dense", units=4, activation="softplus"), L("dense", units=3, activation="softmax")],
                          (7,)),
    "conv2d-pool-bn-flatten": ([L("conv2d", filters=4, kernel_size=3, activation="relu"),
                                L("batch_normalization"), L("max_pooling2d", pool_size=2),
                                L("conv2d", filters=3, kernel_size=2, padding="same", strides=2),
                                L("average_pooling2d", pool_size=2, padding="same"), L("flatten"),
                                L("dropout", rate=0.5), L("dense", units=2, activation="sigmoid")], (11, 10, 2)),
    "conv1d-causal-dilated-global": ([L("conv1d", filters=4, kernel_size=3, padding="causal", dilation_rate=2),
                                      L("layer_normalization"), L("conv1d", filters=3, kernel_size=2),
                                      L("max_pooling1d", pool_size=2, padding="same"),
                                      L("global_average_pooling1d"), L("dense", units=2)], (9, 3)),
    "global-max-2d-reshape": ([L("reshape", target_shape=[4, 3, 2]), L("conv2d", filters=2, kernel_size=1),
                               L("global_max_pooling2d"), L("activation", activation="tanh")], (24,)),
    "same-padding-odd-totals": ([L("conv2d", filters=2, kernel_size=2, padding="same"),
                                 L("average_pooling2d", pool_size=2, padding="same"),
                                 L("max_pooling2d", pool_size=2, strides=1, padding="same"), L("flatten")], (5, 5, 2)),
    "simple-rnn-sequences": ([L("simple_rnn", units=4, return_sequences=True),
                              L("simple_rnn", units=3, activation="relu", go_backwards=True)], (6, 3)),
    "lstm-backwards-sequences": ([L("lstm", units=4, go_backwards=True, return_sequences=True),
                                  L("lstm", units=3, use_bias=False)], (5, 3)),
    "gru": ([L("gru", units=4, return_sequences=True), L("gru", units=3, go_backwards=True)], (5, 2)),
    "bidirectional-merges": ([L("bidirectional", layer={"type": "lstm", "units": 3, "return_sequences": True}),
                              L("bidirectional", layer={"type": "gru", "units": 2, "return_sequences": True},
                                merge_mode="sum"),
                              L("bidirectional", layer={"type": "simple_rnn", "units": 2}, merge_mode="mul")],
                             (5, 3)),
    "spatial-dropout-bn-axis": ([L("spatial_dropout1d", rate=0.3), L("batch_normalization", axis=1),
                                 L("flatten")], (5, 3)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_each_layer_family_matches_nnctl(name):
    layers, shape = CASES[name]
    model = Sequential(layers, input_shape=shape, seed=1)
    model.build()
    _perturb_batch_norms(model)
    model.compile("sgd", "mse")
    _close(model, RNG.normal(size=(13,) + shape).astype(np.float32))


def test_embedding_merges_and_several_outputs():
    words, extra = Input((6,), name="words"), Input((4,), name="extra")
    pooled = L("global_average_pooling1d")(L("embedding", input_dim=20, output_dim=5)(words))
    joined = L("concatenate")([pooled, L("dense", units=5)(extra)])
    mixed = L("add")([L("multiply")([joined, joined]), L("average")([joined, joined])])
    low = L("subtract")([L("maximum")([mixed, joined]), L("minimum")([mixed, joined])])
    model = Model([words, extra], [L("dense", units=1, activation="sigmoid", name="score")(low),
                                   L("dense", units=3, activation="softmax", name="kind")(joined)], seed=2)
    model.compile("sgd", {"score": "mse", "kind": "categorical_crossentropy"})
    x = {"words": RNG.integers(0, 20, (9, 6)).astype(np.int32), "extra": RNG.normal(size=(9, 4)).astype(np.float32)}
    expected = model.predict(x)
    got = _run_onnx(model, x)
    for mine, theirs in zip(got, expected):
        np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("shapes, axes, normalize", [(((5,), (5,)), 1, True), (((3, 4), (4,)), [2, 1], False),
                                                     (((3, 4), (5, 4)), [2, 2], True), (((3, 4), (3, 2)), 1, False)])
def test_dot_in_every_rank_and_axis(shapes, axes, normalize):
    a, b = Input(shapes[0], name="a"), Input(shapes[1], name="b")
    model = Model([a, b], L("dot", axes=axes, normalize=normalize)([a, b]), seed=0)
    model.compile("sgd", "mse")
    x = {"a": RNG.normal(size=(6,) + shapes[0]).astype(np.float32),
         "b": RNG.normal(size=(6,) + shapes[1]).astype(np.float32)}
    np.testing.assert_allclose(_run_onnx(model, x)[0], model.predict(x)[0], rtol=1e-4, atol=1e-6)


def test_a_nested_model_is_inlined():
    inner = Sequential([L("dense", units=4, activation="relu")], input_shape=(3,), seed=0, name="base")
    outer = Sequential([inner, L("dense", units=1)], input_shape=(3,), seed=1)
    outer.compile("sgd", "mse")
    _close(outer, RNG.normal(size=(5, 3)).astype(np.float32))


def test_preprocessing_goes_into_the_graph():
    from nnctl.data.transforms import apply_all, build_transforms, fit_apply

    raw = RNG.normal(3.0, 2.0, size=(40, 12)).astype(np.float32)
    raw[3, 4] = np.nan
    transforms = build_transforms([{"type": "impute"}, {"type": "standardize"},
                                   {"type": "rescale", "scale": 0.5, "offset": 1.0},
                                   {"type": "reshape", "shape": [4, 3]}])
    x, _ = fit_apply(transforms, raw, np.zeros(40))
    model = Sequential([L("flatten"), L("dense", units=2)], input_shape=(4, 3), seed=0)
    model.compile("sgd", "mse")
    got = _run_onnx(model, {"input": raw}, transforms, raw_shape=(12,))[0]
    np.testing.assert_allclose(got, model.predict(apply_all(transforms, raw)[0]), rtol=1e-4, atol=1e-5)


def test_what_cannot_be_exported_is_named():
    from nnctl import ops
    from nnctl.nn.layers import Layer

    class Doubler(Layer):
        def call(self, inputs):
            return ops.multiply(inputs, 2.0)

    model = Sequential([Doubler(), L("dense", units=1)], input_shape=(3,), seed=0)
    model.compile("sgd", "mse")
    with pytest.raises(NotExportable, match="'doubler' .*custom layer"):
        build_onnx(model)

    class ExportedDoubler(Doubler):
        def export_onnx(self, graph, x):  # a plugin may provide its own export
            return graph.op("Mul", [x, graph.const(np.float32(2.0))])

    provided = Sequential([ExportedDoubler(), L("dense", units=1)], input_shape=(3,), seed=0)
    provided.compile("sgd", "mse")
    _close(provided, RNG.normal(size=(4, 3)).astype(np.float32))
    masked = Sequential([L("embedding", input_dim=5, output_dim=2, mask_zero=True), L("lstm", units=2)],
                        input_shape=(4,), seed=0)
    masked.compile("sgd", "mse")
    with pytest.raises(NotExportable, match="mask_zero"):
        build_onnx(masked)
    odd = Sequential([L("simple_rnn", units=2, activation="linear")], input_shape=(4, 3), seed=0)
    odd.compile("sgd", "mse")
    with pytest.raises(NotExportable, match="activation 'linear'"):
        build_onnx(odd)


def test_the_command_exports_checks_and_writes_the_preprocessing_beside(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "text.yaml").write_text("""\
name: text
seed: 1
data:
  dataset: {type: synthetic, kind: text, samples: 200, width: 100, length: 12, classes: 2}
  transforms: [multi_hot]
model:
  layers:
    - {type: dense, units: 8, activation: relu}
    - {type: dense, units: 1, activation: sigmoid}
loss: binary_crossentropy
epochs: 1
""")
    run = run_path(invoke("train", tmp_path / "text.yaml").output)
    result = invoke("export", run, "-o", tmp_path / "text.onnx", "--check")
    assert result.exit_code == 0, result.output
    assert "text.preprocessing.json" in result.output
    difference = float(result.output.split("largest difference ")[1].split()[0])
    assert difference < 1e-5
    beside = json.loads((tmp_path / "text.preprocessing.json").read_text())
    assert [t["type"] for t in beside["transforms"]] == ["multi_hot"]
    assert invoke("export", run, "-o", tmp_path / "x.txt").exit_code == 2
