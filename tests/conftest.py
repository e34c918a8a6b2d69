"""Shared fixtures: tiny generated `.npz` data sets and the config that trains on them, in a temp folder."""

from __future__ import annotations

import numpy as np
import pytest

# 240 rows of 10 features, a 10-8-1 binary classifier: trains in well under a second.
TINY_CONFIG = """\
name: tiny
seed: 1
data:
  path: tiny.npz
  validation: {split: 0.2}
model:
  layers:
    - {type: dense, units: 8, activation: relu}
    - {type: dense, units: 1, activation: sigmoid}
loss: binary_crossentropy
optimizer: {type: rmsprop, learning_rate: 0.01}
metrics: [accuracy]
epochs: 3
batch_size: 16
"""


def write_npz(path, rows: int = 240, features: int = 10, test_rows: int = 60, labels: str = "binary",
              classes: int = 2, seed: int = 0):
    """A learnable data set: `labels` is "binary" (0/1 floats), "sparse" (ids 0..classes-1) or "onehot"."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows + test_rows, features)).astype(np.float32)
    if labels == "binary":
        y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.float32)
    else:
        ids = np.argmax(x[:, :classes], axis=1) if features >= classes else rng.integers(0, classes, len(x))
        y = np.eye(classes, dtype=np.float32)[ids] if labels == "onehot" else ids.astype(np.int64)
    arrays = {"x_train": x[:rows], "y_train": y[:rows]}
    if test_rows:
        arrays.update(x_test=x[rows:], y_test=y[rows:])
    np.savez(path, **arrays)
    return path


@pytest.fixture(scope="session")
def make_npz():
    """`make_npz(path, **options)` writes a tiny data set (see `write_npz`) and returns its path."""
    return write_npz


@pytest.fixture(scope="session")
def tiny_config_text():
    """TINY_CONFIG: trains on a `tiny.npz` beside the config file."""
    return TINY_CONFIG


@pytest.fixture
def tiny_config(tmp_path):
    """`tmp_path/tiny.yaml` (TINY_CONFIG) beside `tmp_path/tiny.npz`."""
    write_npz(tmp_path / "tiny.npz")
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_CONFIG, encoding="utf-8")
    return path
