"""The layer schema derived from the layer classes: every registered layer's keys, types and defaults follow
from its annotated `__init__`, and a new layer needs no spec class of its own."""

from __future__ import annotations

import inspect

import pytest
from pydantic import ValidationError

from nnctl.config.schema import LAYER_SPECS, layer_spec
from nnctl.config.yamlfile import ConfigError
from nnctl.nn.layers import LAYERS
from nnctl.nn.layers.arguments import Width
from nnctl.nn.layers.base import Layer
from tests.conftest import TINY_CONFIG, invoke, write_npz


@pytest.mark.parametrize("name", sorted(LAYERS.entries))
def test_every_argument_of_every_layer_is_an_annotated_key_with_its_default(name):
    cls, spec = LAYERS.entries[name], LAYER_SPECS[name]
    parameters = [p for p in inspect.signature(cls.__init__).parameters.values()
                  if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    for parameter in parameters:
        assert parameter.annotation is not inspect.Parameter.empty, f"{name}: `{parameter.name}` has no annotation"
        field = spec.model_fields[parameter.name]
        if parameter.default is inspect.Parameter.empty:
            assert field.is_required()
        elif parameter.name not in ("name", "trainable"):
            default = parameter.default
            assert field.default == (list(default) if isinstance(default, tuple) else default)
    assert {"type", "name", "trainable"} <= set(spec.model_fields)
    assert set(spec.model_fields) == {"type", "name", "trainable", "inputs"} | {p.name for p in parameters}


@pytest.mark.parametrize("name", sorted(LAYERS.entries))
def test_a_layer_built_from_its_validated_spec_reports_the_same_config(name):
    """What the schema accepts, the class accepts: the class's own get_config() validates against the spec."""
    cls = LAYERS.entries[name]
    required = {p.name: p for p in inspect.signature(cls.__init__).parameters.values()
                if p.default is inspect.Parameter.empty and p.name != "self"
                and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    examples = {"units": 3, "filters": 2, "kernel_size": 3, "rate": 0.5, "activation": "relu", "shape": [4],
                "target_shape": [2, 2], "input_dim": 10, "output_dim": 4,
                "layer": {"type": "lstm", "units": 3}, "axes": 1}
    missing = set(required) - set(examples)
    assert not missing, f"add an example value for {missing}"
    layer = cls(**{key: examples[key] for key in required})
    config = {k: v for k, v in layer.get_config().items() if v is not None}
    config = {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}
    LAYER_SPECS[name].model_validate({"type": name, **config})


def test_a_new_layer_class_is_its_own_schema():
    class Scale(Layer):
        """Multiplies by a learned gain."""

        def __init__(self, size: Width, mode: str = "fixed", **kwargs):
            super().__init__(**kwargs)

    spec = layer_spec("scale", Scale)
    assert spec.model_validate({"type": "scale", "size": 3}).mode == "fixed"
    with pytest.raises(ValidationError, match="positive integer"):
        spec.model_validate({"type": "scale", "size": 0})
    with pytest.raises(ValidationError, match="Extra inputs"):
        spec.model_validate({"type": "scale", "size": 3, "sise": 3})
    assert spec.__doc__ == "Multiplies by a learned gain."


def test_trainable_is_a_key_of_every_layer_and_freezes_it(tmp_path):
    write_npz(tmp_path / "tiny.npz")
    config = tmp_path / "c.yaml"
    config.write_text(TINY_CONFIG.replace("activation: relu}", "activation: relu, trainable: false}"),
                      encoding="utf-8")
    assert "trainable: false" in config.read_text()
    result = invoke("summary", config)
    assert result.exit_code == 0, result.output
    assert "Non-trainable params" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY_CONFIG.replace("activation: relu}", "activation: relu, trainable: no}"), encoding="utf-8")
    result = invoke("check", bad)
    assert result.exit_code == 2 and "trainable: expected true or false" in result.stderr


def test_binary_crossentropy_on_a_linear_output_is_a_located_warning(tmp_path):
    write_npz(tmp_path / "tiny.npz")
    config = tmp_path / "c.yaml"
    text = TINY_CONFIG.replace("activation: sigmoid", "activation: linear")
    assert text != TINY_CONFIG
    config.write_text(text, encoding="utf-8")
    result = invoke("check", config)
    assert result.exit_code == 0, result.output
    line = next(line for line in text.splitlines() if "activation: linear" in line)
    row = text.splitlines().index(line) + 1
    assert f"c.yaml:{row}:" in result.stderr and "warning:" in result.stderr
    assert "sigmoid" in result.stderr and "from_logits: true" in result.stderr
    logits = tmp_path / "logits.yaml"
    logits.write_text(text.replace("loss: binary_crossentropy",
                                   "loss: {type: binary_crossentropy, from_logits: true}"), encoding="utf-8")
    result = invoke("check", logits)
    assert result.exit_code == 0 and "warning" not in result.stderr, result.stderr
    plain = tmp_path / "plain.yaml"
    plain.write_text(TINY_CONFIG, encoding="utf-8")
    assert "warning" not in invoke("check", plain).stderr


def test_unknown_layer_keys_get_a_suggestion_from_the_derived_schema(tmp_path):
    write_npz(tmp_path / "tiny.npz")
    config = tmp_path / "c.yaml"
    config.write_text(TINY_CONFIG.replace("units: 1,", "unitz: 1,"), encoding="utf-8")
    result = invoke("check", config)
    assert result.exit_code == 2
    assert "unitz" in result.stderr and "units" in result.stderr
    with pytest.raises(ConfigError):
        from nnctl.config.check import check_config
        check_config(config)
