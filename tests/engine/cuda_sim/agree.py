"""The CUDA path's runs against the CPU's, for the simulator tests that train a model on both: `fit_on_both` trains
it on each, `assert_runs_agree` compares them; and two forms of the CUDA path against each other (`same`,
`assert_same_runs`: the same bytes under the simulator)."""

from __future__ import annotations

import os

import numpy as np

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


def same(mine, theirs, label) -> None:
    """The same bytes under the simulator; on a GPU, where cuBLAS and the compiler choose, to float32 rounding."""
    if SIMULATED:
        assert np.asarray(mine).tobytes() == np.asarray(theirs).tobytes(), label
    else:
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-7, err_msg=label)


def assert_same_runs(mine, theirs) -> None:
    """mine, theirs: (history, weights by name, optimizer slots, predictions) of two forms of one run."""
    for key in theirs[0]:
        if key != "epoch_time":
            same(mine[0][key], theirs[0][key], key)
    for name in theirs[1]:
        same(mine[1][name], theirs[1][name], name)
    for index, (slot, other) in enumerate(zip(mine[2], theirs[2])):
        same(slot, other, f"slot {index}")
    same(mine[3], theirs[3], "predictions")


def assert_runs_agree(gpu, cpu) -> None:
    """gpu, cpu: (history, weights by name, outputs (an array or a list of them)) of the same seed's runs. The
    histories agree to 2e-5 (every key but the epoch times), the weights and the outputs to 1e-4."""
    assert set(gpu[0]) == set(cpu[0])
    for key in cpu[0]:
        if key != "epoch_time":
            np.testing.assert_allclose(gpu[0][key], cpu[0][key], rtol=2e-5, atol=1e-7, err_msg=key)
    assert set(gpu[1]) == set(cpu[1])
    for name in cpu[1]:
        np.testing.assert_allclose(gpu[1][name], cpu[1][name], rtol=1e-4, atol=2e-6, err_msg=name)
    many = isinstance(cpu[2], list)
    for mine, theirs in zip(gpu[2] if many else [gpu[2]], cpu[2] if many else [cpu[2]]):
        np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=2e-6)


def fit_on_both(build, x, y, compiled: dict, epochs=1, validation=None, predict=None) -> list:
    """[CPU run, CUDA run], each (history, weights, predictions of `predict` (default x), model): `build(device)`
    makes the same-seed model, compiled with `compiled`, fitted a batch of 8; the runs asserted to agree (and the
    second to have taken the CUDA path)."""
    runs = []
    for device in ("cpu", "cuda"):
        model = build(device)
        model.compile(**compiled)
        history = model.fit(x, y, epochs=epochs, batch_size=8, validation_data=validation)
        runs.append((history, model.get_weights(), model.predict(x if predict is None else predict), model))
    assert runs[1][3]._cuda_paths
    assert_runs_agree(runs[1], runs[0])
    return runs
