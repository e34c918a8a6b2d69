"""nnctl.config.schema: the JSON Schema that `nnctl schema` prints covers every key of `Config`."""

from __future__ import annotations

import json

from click.testing import CliRunner

from nnctl.cli import main
from nnctl.config.schema import LAYER_SPECS, OPTIMIZER_SPECS, Config, json_schema


def test_nnctl_schema_prints_valid_json_with_every_top_level_key():
    result = CliRunner().invoke(main, ["schema"])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.stdout)
    assert schema == json_schema()
    assert set(Config.model_fields) <= set(schema["properties"])
    assert schema["additionalProperties"] is False
    assert {"data", "model", "loss"} <= set(schema["required"])


def test_every_layer_and_optimizer_has_a_definition():
    definitions = json.dumps(json_schema()["$defs"])
    for name in list(LAYER_SPECS) + list(OPTIMIZER_SPECS):
        assert f'"const": "{name}"' in definitions


def test_value_types_carry_their_json_types():
    defs = json_schema()["$defs"]
    units = defs["DenseSpec"]["properties"]["units"]
    assert units["type"] == "integer" and units["exclusiveMinimum"] == 0
    assert defs["DenseSpec"]["properties"]["use_bias"]["type"] == "boolean"
