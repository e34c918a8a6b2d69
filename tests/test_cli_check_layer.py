"""`nnctl check-layer FILE.py:Class`: a user's layer through the gradient check and the config round trip,
as a real file on disk, through click's CliRunner."""

from tests.conftest import invoke

LAYERS = '''
from nnctl import ops
from nnctl.nn.layers import Layer


class SimpleDense(Layer):
    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.W = self.add_weight(shape=(input_shape[-1], self.units), initializer="random_normal")
        self.b = self.add_weight(shape=(self.units,), initializer="zeros")

    def call(self, inputs):
        return ops.tanh(ops.matmul(inputs, self.W) + self.b)

    def get_config(self):
        return {"units": self.units, **self.base_config()}


class CutsTheGradient(SimpleDense):
    def call(self, inputs):
        return ops.stop_gradient(ops.matmul(inputs, self.W)) + self.b


class ForgetsItsConfig(SimpleDense):
    def get_config(self):
        return {"units": self.units + 1}


NOT_A_LAYER = 3
'''


def _file(tmp_path):
    path = tmp_path / "my_layers.py"
    path.write_text(LAYERS)
    return path


def test_a_correct_layer_passes(tmp_path):
    result = invoke("check-layer", f"{_file(tmp_path)}:SimpleDense", "--input-shape", "3,5", "--arg", "units=4")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 2 and all(line.startswith("ok") for line in lines)


def test_a_wrong_gradient_and_a_wrong_config_are_named(tmp_path):
    path = _file(tmp_path)
    wrong = invoke("check-layer", f"{path}:CutsTheGradient", "--input-shape", "5", "--arg", "units=2")
    assert wrong.exit_code == 1 and wrong.output.startswith("FAIL gradients") and "dense/kernel" in wrong.output
    forgets = invoke("check-layer", f"{path}:ForgetsItsConfig", "--input-shape", "5", "--arg", "units=2")
    assert forgets.exit_code == 1 and "FAIL config round trip" in forgets.output


def test_bad_command_lines_are_one_error(tmp_path):
    path = _file(tmp_path)
    for args, message in [((f"{path}:NOT_A_LAYER", "--input-shape", "5"), "is not a Layer class"),
                          ((f"{tmp_path}/none.py:X", "--input-shape", "5"), "no such file"),
                          ((f"{path}:SimpleDense", "--input-shape", "five"), "--input-shape"),
                          ((f"{path}:SimpleDense", "--input-shape", "5"), "cannot build or run it"),
                          ((f"{path}:SimpleDense", "--input-shape", "5", "--arg", "units"), "KEY=VALUE")]:
        result = invoke("check-layer", *args)
        assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.output, args
