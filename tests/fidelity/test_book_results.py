"""The book's results on the real Keras data, as means over seeds fixed in advance (never one lucky seed).

Single runs spread widely (Reuters test accuracy 0.773–0.793 over seeds 0–6, IMDB 0.861–0.888), so a mean
over three seeds still moves by ±0.005; seven keep the check about the recipe, not the draw.

Slow, and skipped unless NNCTL_DATA_DIR points at the Keras dataset files (CI sets it).
"""

import os
from pathlib import Path

import numpy as np
import pytest

from nnctl.config import load_config
from nnctl.train.kfold import train_kfold
from nnctl.train.session import train

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SEEDS = tuple(range(7))

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not os.environ.get("NNCTL_DATA_DIR"),
                                                   reason="set NNCTL_DATA_DIR to a folder with the Keras dataset files")]


def _test_metric(config, metric, tmp_path, seed):
    result = train(load_config(CONFIGS / config, [f"seed={seed}"]), tmp_path / "runs")
    assert result.status == "completed", result.error
    return result.run.read_json("metrics.json")["test"][metric]


@pytest.mark.parametrize("config, metric, bound", [
    ("imdb_final.yaml", "accuracy", 0.880),
    ("reuters.yaml", "accuracy", 0.780),
    ("mnist.yaml", "accuracy", 0.975),
    ("boston.yaml", "mae", 2.70),
])
def test_mean_over_seeds_reaches_the_book(config, metric, bound, tmp_path):
    values = [_test_metric(config, metric, tmp_path, seed) for seed in SEEDS]
    mean = float(np.mean(values))
    print(f"{config}: test {metric} {', '.join(f'{v:.4f}' for v in values)} → mean {mean:.4f}")
    assert (mean <= bound) if metric == "mae" else (mean >= bound), values


# Issue #16's recipes. The bars sit under a faithful PyTorch port's means (bench/torch_book.py): MNIST convnet
# test accuracy 0.9894 [0.9872–0.9907], IMDB Embedding best validation accuracy 0.758 [0.755–0.762], IMDB
# Conv1D 0.844. The convnet recipes cost one to three minutes a seed on two cores: they are marked `long`
# (python -m pytest --run-long -m long tests/fidelity), and the Conv1D one runs three seeds, not seven.
BOOK_LAYERS = [
    pytest.param("mnist_convnet.yaml", "test", 0.988, SEEDS, marks=pytest.mark.long),
    ("imdb_embedding.yaml", "best_val", 0.750, SEEDS),
    pytest.param("imdb_conv1d.yaml", "best_val", 0.83, SEEDS[:3], marks=pytest.mark.long),
    # Issue #17's (a faithful PyTorch port here: LSTM 0.885 [0.884–0.886], SimpleRNN 0.865); two to three
    # minutes a seed.
    pytest.param("imdb_lstm.yaml", "best_val", 0.875, SEEDS[:3], marks=pytest.mark.long),
    pytest.param("imdb_simple_rnn.yaml", "best_val", 0.84, SEEDS[:3], marks=pytest.mark.long),
]


@pytest.mark.parametrize("config, figure, bound, seeds", BOOK_LAYERS)
def test_layer_recipes_reach_the_book_over_seeds(config, figure, bound, seeds, tmp_path):
    values = []
    for seed in seeds:
        result = train(load_config(CONFIGS / config, [f"seed={seed}"]), tmp_path / "runs")
        assert result.status == "completed", result.error
        values.append(result.run.read_json("metrics.json")["test"]["accuracy"] if figure == "test"
                      else max(result.run.read_json("history.json")["val_accuracy"]))
    mean = float(np.mean(values))
    print(f"{config}: {figure} accuracy {', '.join(f'{v:.4f}' for v in values)} → mean {mean:.4f} "
          f"[{min(values):.4f}–{max(values):.4f}]")
    assert mean >= bound, values


def test_boston_kfold_curve_bottoms_like_the_book(tmp_path):
    result = train_kfold(load_config(CONFIGS / "boston_kfold.yaml"), tmp_path / "runs")
    assert result.status == "completed", result.error
    best = result.summary["best"]["val_mae"]
    print(f"boston_kfold: best mean val_mae {best['mean']:.4f} at epoch {best['epoch']}")
    assert best["mean"] <= 2.6
