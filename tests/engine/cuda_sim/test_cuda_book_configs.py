"""Each shipped config's model, built from its YAML as `nnctl train` builds it, trains on `device: cuda` as on
the CPU: every layer on the device (nothing run by its CPU code each step), and history, weights and predictions
agreeing with the same seed's CPU run. The data are a few random rows of the config's input shape and loss (the
real datasets are not for unit tests), two optimizer steps and a validation pass: the architectures, optimizers
and losses of the book's runs at their real sizes (500-step sequences, 28 × 28 images, 10,000-wide inputs), not
their fidelity over epochs (bench/gpu_book.py). On a GPU only (bench/gpu_check.sh): at these sizes the simulator,
a Python thread per GPU thread, takes many minutes a config."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests.engine.cuda_sim.agree import assert_runs_agree

CONFIGS = sorted(path for path in (Path(__file__).parents[3] / "configs").glob("*.yaml")
                 if path.stem not in ("boston_kfold", "tickets"))  # boston's model; tickets has its own CLI test
ROWS = 6  # two steps of 3 and a validation pass over the first 3
OVERRIDES = {"smoke": ["model.input_shape=[1000]"]}  # its data (synthetic multi-hot) would give it


def _data(model, loss: str, rng):
    """(x, y) of ROWS random rows for the model's input and loss: token ids (padded in front) for an Embedding
    first, 0/1 rows for a 10,000-wide input (multi-hot), values in [0, 1) else."""
    first, shape = model.layers[0], tuple(model.input_shape)
    if getattr(first, "input_dtype", None) is not None:  # an Embedding: integer ids
        x = rng.integers(1, first.input_dim, (ROWS,) + shape).astype(np.int32)
        x[:, : shape[0] // 3] = 0
    elif shape[-1] >= 10000:
        x = (rng.random((ROWS,) + shape) < 0.01).astype(np.float32)
    else:
        x = rng.random((ROWS,) + shape).astype(np.float32)
    units = model.output_units
    if loss == "binary_crossentropy":
        y = rng.integers(0, 2, (ROWS, units)).astype(np.float32)
    elif loss == "sparse_categorical_crossentropy":
        y = rng.integers(0, units, ROWS).astype(np.int32)
    elif loss == "categorical_crossentropy":
        y = np.eye(units, dtype=np.float32)[rng.integers(0, units, ROWS)]
    else:
        y = rng.standard_normal((ROWS, units)).astype(np.float32)
    return x, y


@pytest.mark.skipif(os.environ.get("NUMBA_ENABLE_CUDASIM") == "1",
                    reason="book-size models, minutes under the simulator: needs a real GPU (NNCTL_CUDA_TESTS=gpu)")
@pytest.mark.parametrize("path", CONFIGS, ids=[path.stem for path in CONFIGS])
def test_a_book_config_trains_on_cuda_with_every_layer_on_the_device_as_on_the_cpu(path, strict_device_arrays):
    from nnctl.config.build import build_model
    from nnctl.config.device import place
    from nnctl.config.resolve import load_config
    from nnctl.nn.cudaops_host import on_the_host

    runs = []
    for device in ("cpu", "cuda"):
        resolved = load_config(path, [f"device={device}", *OVERRIDES.get(path.stem, [])])
        model = build_model(resolved, callbacks=False)
        assert place(resolved, model) == device == model.device
        loss = resolved.doc.data["loss"]
        x, y = _data(model, loss, np.random.default_rng(5))
        history = model.fit(x, y, epochs=1, batch_size=3, validation_data=(x[:3], y[:3]))
        runs.append((history, model.get_weights(), model.predict(x), model))
    assert runs[1][3]._cuda_paths and on_the_host(runs[1][3]) == []
    assert_runs_agree(runs[1], runs[0])
