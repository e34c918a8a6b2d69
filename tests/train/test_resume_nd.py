"""Exact resume for N-d models through the real command line: a convnet with BatchNormalization (whose moving
statistics are non-trainable weights) and SpatialDropout2D, and a text model with Embedding, Conv1D and
LayerNormalization — stopped, resumed, and compared byte for byte with an uninterrupted run."""

import numpy as np
import pytest

from nnctl.runs.rundir import RunDirectory
from tests.conftest import invoke, run_path

IMAGES = """\
name: nd
seed: 11
data:
  path: images.npz
  validation: {split: 0.25}
model:
  layers:
    - {type: conv2d, filters: 4, kernel_size: 3, padding: same, activation: relu}
    - {type: batch_normalization}
    - {type: spatial_dropout2d, rate: 0.25}
    - {type: max_pooling2d, pool_size: 2}
    - {type: flatten}
    - {type: dense, units: 3, activation: softmax}
loss: sparse_categorical_crossentropy
optimizer: {type: adam, learning_rate: 0.01}
metrics: [accuracy]
epochs: 4
batch_size: 16
"""

# Both 3×3 conv + 2×2 pooling pairs of nnctl/engine/cpu/conv3x3.py: one channel in registers, then Winograd
# (16 channels, 'same', its 3 × 3 output cropped to the 2 × 2 its pooling reads)
CONVNET = IMAGES.replace("""    - {type: conv2d, filters: 4, kernel_size: 3, padding: same, activation: relu}
    - {type: batch_normalization}
    - {type: spatial_dropout2d, rate: 0.25}
    - {type: max_pooling2d, pool_size: 2}
""", """    - {type: conv2d, filters: 16, kernel_size: 3, activation: relu}
    - {type: max_pooling2d, pool_size: 2}
    - {type: conv2d, filters: 8, kernel_size: 3, padding: same, activation: relu}
    - {type: max_pooling2d, pool_size: 2}
""")

TEXT = """\
name: nd
seed: 12
data:
  path: text.npz
  validation: {split: 0.25, shuffle: false}
model:
  layers:
    - {type: embedding, input_dim: 30, output_dim: 6}
    - {type: conv1d, filters: 5, kernel_size: 3, padding: causal, activation: relu}
    - {type: layer_normalization}
    - {type: global_max_pooling1d}
    - {type: dense, units: 1, activation: sigmoid}
loss: binary_crossentropy
optimizer: rmsprop
metrics: [accuracy]
epochs: 4
batch_size: 16
"""


def _write_data(folder):
    rng = np.random.default_rng(0)
    x = rng.random((120, 8, 8, 1)).astype(np.float32)
    labels = (x[:, :4].mean(axis=(1, 2, 3)) * 6).astype(np.int64) % 3
    np.savez(folder / "images.npz", x_train=x[:96], y_train=labels[:96], x_test=x[96:], y_test=labels[96:])
    ids = rng.integers(0, 30, (120, 10)).astype(np.int32)
    y = (ids[:, -1] < 15).astype(np.float32)
    np.savez(folder / "text.npz", x_train=ids[:96], y_train=y[:96], x_test=ids[96:], y_test=y[96:])


def _train(*args):
    result = invoke("train", *args)
    assert result.exit_code == 0, result.output + result.stderr
    return result


@pytest.mark.parametrize("text", [IMAGES, CONVNET, TEXT], ids=["convnet-batchnorm-spatialdropout",
                                                            "conv3x3-pooled-pairs", "embedding-conv1d-layernorm"])
def test_a_resumed_nd_run_equals_an_uninterrupted_one(tmp_path, text):
    _write_data(tmp_path)
    config = tmp_path / "nd.yaml"
    config.write_text(text, encoding="utf-8")
    whole = RunDirectory(run_path(_train(config, "--runs-dir", tmp_path / "a", "-q").stdout))
    part = RunDirectory(run_path(_train(config, "--runs-dir", tmp_path / "b", "--set", "epochs=2", "-q").stdout))
    _train("--resume", part.path, "--set", "epochs=4", "-q")
    assert (part.path / "weights.safetensors").read_bytes() == (whole.path / "weights.safetensors").read_bytes()
    history = {k: v for k, v in whole.read_json("history.json").items() if k != "epoch_time"}
    assert {k: v for k, v in part.read_json("history.json").items() if k != "epoch_time"} == history
    assert history["loss"][0] != history["loss"][-1]
    weights = whole.load_weights()
    if text is IMAGES:
        # The moving statistics are saved under Keras's names and have moved away from their initial values.
        assert not np.allclose(weights["batch_normalization/moving_mean"], 0)
        assert not np.allclose(weights["batch_normalization/moving_variance"], 1)
    # evaluate and predict read the run back with its non-trainable weights.
    result = invoke("evaluate", whole.path)
    assert result.exit_code == 0, result.output + result.stderr
