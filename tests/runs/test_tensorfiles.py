"""Weights and checkpoint files read back: damaged bytes, tensors that do not fit the model, checkpoint state."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import safetensors.numpy

from nnctl.nn import checkpoint
from nnctl.runs.records import RunFileError
from nnctl.runs.tensorfiles import check_checkpoint, check_tensors, nonfinite_tensors, read_checkpoint, read_tensors

SHAPES = {"dense/kernel": (3, 2), "dense/bias": (2,)}


def model_like(slot_size=8):
    """What the checks look at: parameters (name, shape), dtype and optimizer slots."""
    params = [SimpleNamespace(name=name, shape=shape) for name, shape in SHAPES.items()]
    return SimpleNamespace(store=SimpleNamespace(params=params, weights=params), dtype=np.float32,
                           optimizer=SimpleNamespace(slots=[np.zeros(slot_size, np.float32)]))


def weights(**changes):
    tensors = {name: np.ones(shape, np.float32) for name, shape in SHAPES.items()}
    tensors.update(changes)
    return {name: value for name, value in tensors.items() if value is not None}


def state(**changes):
    base = {"epochs_done": 1, "iterations": 4, "learning_rate": 0.01,
            "rng": np.random.default_rng(0).bit_generator.state, "history": {"loss": [float("nan")]},
            "epoch_indices": [0], "callbacks": [], "time": 1.0}
    base.update(changes)
    return {key: value for key, value in base.items() if value is not None}


def write_checkpoint(path, tensors=None, saved_state=None, fmt=checkpoint.FORMAT):
    tensors = tensors if tensors is not None else {**{f"weights/{k}": v for k, v in weights().items()},
                                                   "optimizer/slot_0": np.zeros(8, np.float32)}
    metadata = {"format": fmt, "state": saved_state if isinstance(saved_state, str) else json.dumps(
        saved_state if saved_state is not None else state())}
    path.write_bytes(safetensors.numpy.save(tensors, metadata=metadata))
    return path


def problem(call, *args) -> str:
    with pytest.raises(RunFileError) as caught:
        call(*args)
    return caught.value.problem


# ---- bytes that are not a safetensors file -------------------------------------------------------------------
def test_damaged_bytes(tmp_path):
    path = tmp_path / "weights.safetensors"
    path.write_bytes(safetensors.numpy.save(weights()))
    good = path.read_bytes()
    for data, expected in ((good[:len(good) // 2], "is a damaged safetensors file (invalid header length)"),
                           (b"", "is a damaged safetensors file (header too small)"),
                           (np.random.default_rng(0).bytes(200), "is a damaged safetensors file (header too large)")):
        path.write_bytes(data)
        assert problem(read_tensors, path).startswith(expected)


def test_a_dtype_numpy_cannot_hold(tmp_path):
    header = json.dumps({"x": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}}).encode()
    (tmp_path / "w.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 4)
    assert problem(read_tensors, tmp_path / "w.safetensors") == "is a damaged safetensors file ('BF16')"


# ---- tensors against the model -------------------------------------------------------------------------------
@pytest.mark.parametrize("tensors, expected", [
    (weights(**{"dense/bias": None}), "lacks the tensor(s) `dense/bias` that the run's model needs"),
    (weights(**{"dense/bias": np.ones(2, np.float64)}), "`dense/bias` is float64, the run's model needs float32"),
    (weights(**{"dense/kernel": np.ones((2, 3), np.float32)}), "`dense/kernel` has shape [2, 3], the run's model "
                                                               "needs [3, 2]"),
    (weights(extra=np.ones(1, np.float32)), "holds tensor(s) `extra` that the run's model does not have"),
])
def test_tensors_that_do_not_fit(tmp_path, tensors, expected):
    assert problem(check_tensors, tmp_path / "w", tensors, SHAPES, np.float32) == expected


def test_non_finite_tensors_are_named_or_refused(tmp_path):
    tensors = weights(**{"dense/bias": np.array([0.0, np.inf], np.float32)})
    check_tensors(tmp_path / "w", tensors, SHAPES, np.float32)  # allowed unless asked
    assert nonfinite_tensors(tensors) == ["dense/bias"]
    with pytest.raises(RunFileError, match="`dense/bias` holds non-finite values"):
        check_tensors(tmp_path / "w", tensors, SHAPES, np.float32, finite=True)


# ---- checkpoints ---------------------------------------------------------------------------------------------
def test_a_good_checkpoint_keeps_its_nan_history(tmp_path):
    tensors, saved = read_checkpoint(write_checkpoint(tmp_path / "last.safetensors"))
    assert saved["epochs_done"] == 1 and np.isnan(saved["history"]["loss"][0])
    check_checkpoint(tmp_path / "last.safetensors", tensors, model_like())


@pytest.mark.parametrize("saved_state, expected", [
    (state(epochs_done="1"), "`epochs_done` should be an integer, got \"1\""),
    (state(iterations=None, rng=None), "`iterations` is missing; `rng` is missing"),
    (state(learning_rate=-1), "`learning_rate` should be greater than 0, got -1"),
    (state(history={"loss": "x"}), "`history.loss` should be a list, got \"x\""),
    (state(callbacks=[{"type": "EarlyStopping"}]), "`callbacks[0].state` is missing"),
    ("[" * 100_000, "nests deeper than 64 levels"),
    ("[]", "holds a list, expected a JSON object (mapping)"),
])
def test_checkpoint_state_damage(tmp_path, saved_state, expected):
    path = write_checkpoint(tmp_path / "last.safetensors", saved_state=saved_state)
    with pytest.raises(RunFileError) as caught:
        read_checkpoint(path)
    assert str(caught.value) == f"{path} (metadata `state`): {expected}"


@pytest.mark.parametrize("saved_state, expected", [
    (state(epoch_indices=[0, 1]), "metadata `state`: 2 epoch index(es) for 1 epoch(s) done"),
    (state(history={"loss": [0.5, 0.4]}), "metadata `state`: `history.loss` has 2 value(s) for 1 epoch(s) done"),
    (state(rng={"bit_generator": "PCG64", "state": "x"}), "metadata `state`: `rng` is not a state of the run's "
                                                          "random generator (PCG64)"),
])
def test_checkpoint_state_that_does_not_add_up(tmp_path, saved_state, expected):
    path = write_checkpoint(tmp_path / "last.safetensors", saved_state=saved_state)
    assert problem(read_checkpoint, path) == expected


def test_not_a_checkpoint(tmp_path):
    path = write_checkpoint(tmp_path / "best.safetensors", fmt="nnctl")
    assert problem(read_checkpoint, path) == ("is not an nnctl checkpoint (format \"nnctl\", expected "
                                              "'nnctl-checkpoint-1')")
    (tmp_path / "w.safetensors").write_bytes(safetensors.numpy.save(weights(), metadata={"format": "nnctl"}))
    assert problem(read_checkpoint, tmp_path / "w.safetensors").startswith("is not an nnctl checkpoint")


@pytest.mark.parametrize("change, expected", [
    ({"optimizer/slot_0": np.zeros(7, np.float32)}, "`optimizer/slot_0` has shape [7], the run's optimizer needs [8]"),
    ({"optimizer/slot_0": None}, "lacks the tensor(s) `optimizer/slot_0` that the run's optimizer needs"),
    ({"weights/dense/bias": np.full(2, np.nan, np.float32)}, "`weights/dense/bias` holds non-finite values (NaN or "
                                                             "inf)"),
    ({"callbacks/0/best_weights/dense/bias": np.ones(5, np.float32)}, "`callbacks/0/best_weights/dense/bias` does "
                                                                       "not fit the run's model"),
    ({"stray": np.ones(1, np.float32)}, "holds tensor(s) `stray` that no checkpoint has"),
])
def test_checkpoint_tensors_against_the_model(tmp_path, change, expected):
    tensors = {**{f"weights/{k}": v for k, v in weights().items()}, "optimizer/slot_0": np.zeros(8, np.float32)}
    tensors.update(change)
    tensors = {key: value for key, value in tensors.items() if value is not None}
    assert problem(check_checkpoint, tmp_path / "last", tensors, model_like()) == expected


def test_a_callback_state_it_cannot_read(tmp_path):
    from nnctl.errors import NnctlError
    from nnctl.nn.callbacks.monitors import EarlyStopping

    saved = state(callbacks=[{"type": "EarlyStopping", "state": {"wait": "soon"}}])
    snapshot = checkpoint.load(write_checkpoint(tmp_path / "last.safetensors", saved_state=saved))
    with pytest.raises(NnctlError, match=r"last\.safetensors: metadata `state`: `callbacks\[0\]\.state` "
                                         r"\(EarlyStopping\) is damaged \(ValueError: invalid literal"):
        checkpoint.verify(snapshot, model_like(), [EarlyStopping()])
    with pytest.raises(NnctlError, match=r"taken with callbacks \['EarlyStopping'\], this run has \[\]"):
        checkpoint.verify(snapshot, model_like(), [])
