"""model.save / nnctl.load_model (nnctl/saving.py): one safetensors file with the weights and, in its metadata,
the architecture and compile arguments; stacks, graphs with shared layers, custom layers, and bad files."""

import numpy as np
import pytest

import nnctl
from nnctl import ops
from nnctl.errors import ArgumentError
from nnctl.nn.layers import Add, Dense, Dropout, Layer
from nnctl.runs.untrusted import RunFileError

RNG = np.random.default_rng(6)
X = RNG.standard_normal((64, 6)).astype(np.float32)
Y = (X[:, 0] > 0).astype(np.float32)


def _trained(model):
    model.compile({"type": "rmsprop", "learning_rate": 0.01}, "binary_crossentropy", ["accuracy"])
    model.fit(X, Y, epochs=2, batch_size=16, verbose=0)
    return model


def test_a_stack_round_trips(tmp_path):
    model = _trained(nnctl.Sequential([Dense(8, activation="relu"), Dropout(0.2), Dense(1, activation="sigmoid")],
                                      input_shape=(6,), seed=3, name="stack"))
    model.save(tmp_path / "m.safetensors")
    loaded = nnctl.load_model(tmp_path / "m.safetensors")
    assert type(loaded) is nnctl.Sequential and loaded.name == "stack"
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.evaluate(X, Y) == model.evaluate(X, Y)
    assert loaded.summary(print_table=False) == model.summary(print_table=False)
    assert not nnctl.load_model(tmp_path / "m.safetensors", compile=False).compiled


def test_a_graph_with_a_shared_layer_round_trips(tmp_path):
    inputs = nnctl.Input((6,), name="features")
    shared = Dense(6, activation="tanh", name="shared")
    outputs = Dense(1, activation="sigmoid")(Add()([shared(inputs), shared(shared(inputs))]))
    model = _trained(nnctl.Model(inputs, outputs, seed=1))
    model.save(tmp_path / "g.safetensors")
    loaded = nnctl.load_model(tmp_path / "g.safetensors")
    assert type(loaded) is nnctl.Model and loaded.first_use == model.first_use and loaded.sources == model.sources
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.summary(print_table=False)["rows"][0]["connected_to"] == ["features", "features", "shared"]


class Scale(Layer):
    def __init__(self, factor, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def build(self, input_shape):
        self.gain = self.add_weight(shape=input_shape[-1:], initializer="ones")

    def call(self, inputs):
        return inputs * self.gain * self.factor

    def get_config(self):
        return {"factor": self.factor, **self.base_config()}


def test_custom_layers_load_through_custom_objects(tmp_path):
    model = _trained(nnctl.Sequential([Scale(0.5), Dense(1, activation="sigmoid")], input_shape=(6,), seed=0))
    model.save(tmp_path / "c.safetensors")
    with pytest.raises(ArgumentError, match=r"class 'Scale'.*custom_objects=\{'Scale': Scale\}"):
        nnctl.load_model(tmp_path / "c.safetensors")
    loaded = nnctl.load_model(tmp_path / "c.safetensors", custom_objects={"Scale": Scale})
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert ops.convert_to_numpy(loaded.get_weights()["scale/variable"]).shape == (6,)


def test_what_cannot_be_saved_or_loaded_is_named(tmp_path):
    from nnctl.nn.optimizers import OPTIMIZERS

    model = nnctl.Sequential([Dense(1)], input_shape=(6,), seed=0)
    model.compile(OPTIMIZERS.get("sgd"), "mse")
    with pytest.raises(ArgumentError, match="not plain data"):
        model.save(tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()
    weights_only = tmp_path / "weights.safetensors"
    import safetensors.numpy
    weights_only.write_bytes(safetensors.numpy.save({"dense/kernel": np.zeros((6, 1), np.float32)}))
    with pytest.raises(RunFileError, match="is not a saved nnctl model"):
        nnctl.load_model(weights_only)
    (tmp_path / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(RunFileError, match="damaged model file"):
        nnctl.load_model(tmp_path / "junk.safetensors")
