"""`device: cuda` for the outputs beyond one row per sample, under the CUDA simulator: models with several inputs
and several outputs (their weighted losses, each output's loss and metrics in the logs, an output also read by
another layer), per-step outputs (a Dense or a recurrent layer's sequences, their loss under the Keras mask, fused
with a softmax or not), each agreeing with the same seed's CPU run; streamed datasets give the same bytes; the
book's support-ticket config checks and trains on cuda from the command line. Run by tests/engine/test_cuda_sim.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from click.testing import CliRunner

from nnctl.cli import main
from nnctl.nn.functional import Input, Model
from nnctl.nn.layers import GRU, LSTM, Concatenate, Dense, Dropout, Embedding, Flatten, Masking, SimpleRNN
from nnctl.nn.model import Sequential
from tests.engine.cuda_sim.agree import assert_runs_agree, fit_on_both

RNG = np.random.default_rng(23)
IDS = np.where(np.arange(6) < RNG.integers(0, 4, (16, 1)), 0, RNG.integers(1, 12, (16, 6))).astype(np.int32)
VALUES = RNG.standard_normal((16, 3)).astype(np.float32)
SEQUENCES = RNG.standard_normal((16, 6, 3)).astype(np.float32)
PADDED = np.where((np.arange(6) < RNG.integers(0, 4, (16, 1)))[:, :, None], 0, SEQUENCES).astype(np.float32)


def _two_inputs_two_outputs(device="cpu"):
    """Token ids (masked, into an LSTM) and values, joined; a sigmoid output and a softmax one (each fused with
    its loss), weighted 1 and 0.5, with metrics."""
    words, values = Input((6,), name="words"), Input((3,), name="values")
    h = LSTM(4)(Embedding(12, 3, mask_zero=True)(words))
    both = Concatenate()([h, Dense(4, activation="relu")(values)])
    flag = Dense(1, activation="sigmoid", name="flag")(both)
    kind = Dense(3, activation="softmax", name="kind")(Dense(4, activation="tanh")(both))
    model = Model([words, values], [flag, kind], seed=3, device=device)
    x = {"words": IDS, "values": VALUES}
    y = {"flag": (VALUES[:, :1] > 0).astype(np.float32), "kind": IDS[:, -1] % 3}
    compiled = dict(optimizer="adam", loss={"flag": "binary_crossentropy", "kind": "sparse_categorical_crossentropy"},
                    loss_weights={"flag": 1.0, "kind": 0.5}, metrics={"flag": ["accuracy"], "kind": ["accuracy"]})
    return model, x, y, compiled


def _per_step_output_read_again(device="cpu"):
    """A masked per-step output (its loss under the mask) that a second output reads too (its gradient is the sum
    of its own loss's and its reader's), weighted 0.3 and 1."""
    inputs = Input((6, 3), name="sequences")
    steps = Dense(2, name="steps")(LSTM(3, return_sequences=True)(Masking()(inputs)))
    total = Dense(1, name="total")(Flatten()(steps))
    model = Model(inputs, [steps, total], seed=3, device=device)
    y = [PADDED[:, :, :2] * 0.5, PADDED.sum((1, 2))[:, None]]
    return model, PADDED, y, dict(optimizer="rmsprop", loss="mse", loss_weights=[0.3, 1.0], metrics=[["mae"], []])


GRAPHS = {"two-inputs-two-outputs": _two_inputs_two_outputs, "per-step-output-read-again": _per_step_output_read_again}


def _fit(make, device, validation=True):
    model, x, y, compiled = make(device)
    model.compile(**compiled)
    history = model.fit(x, y, epochs=2 if validation else 1, batch_size=8,
                        validation_data=(x, y) if validation else None)
    return history, model.get_weights(), model.predict(x), model


@pytest.mark.parametrize("case", list(GRAPHS))
def test_several_inputs_and_outputs_on_the_cuda_path_agree_with_the_cpu(case, strict_device_arrays):
    gpu, cpu = _fit(GRAPHS[case], "cuda"), _fit(GRAPHS[case], "cpu")
    assert gpu[3]._cuda_paths and not cpu[3].__dict__.get("_cuda_paths")
    assert {"loss", "val_loss", *(f"{name}_loss" for name in gpu[3].output_names)} <= set(gpu[0])
    assert_runs_agree(gpu, cpu)
    evaluated = [model.evaluate(*GRAPHS[case]()[1:3]) for model in (gpu[3], cpu[3])]
    for key in evaluated[1]:
        np.testing.assert_allclose(evaluated[0][key], evaluated[1][key], rtol=2e-5, atol=1e-7, err_msg=key)


def test_several_outputs_streamed_give_the_bytes_of_the_dataset_copied_once(monkeypatch, strict_device_arrays):
    from nnctl.nn import cudadata

    whole = _fit(_two_inputs_two_outputs, "cuda", validation=False)
    monkeypatch.setattr(cudadata, "STREAM_BYTES", 0)
    streamed = _fit(_two_inputs_two_outputs, "cuda", validation=False)
    assert all("staging" in copies for path in streamed[3]._cuda_paths.values() for _, copies in path.data_copies)
    for key in ("loss", "flag_loss", "kind_loss", "flag_accuracy"):
        np.testing.assert_array_equal(streamed[0][key], whole[0][key], err_msg=key)
    for name in whole[1]:
        np.testing.assert_array_equal(streamed[1][name], whole[1][name], err_msg=name)


PER_STEP = {  # name: (x, y, layers, loss): a Sequential model whose output has a row per step
    "masked-gru-softmax-per-step": (IDS, IDS % 4, lambda: [Embedding(12, 3, mask_zero=True),
                                                            GRU(3, return_sequences=True),
                                                            Dense(4, activation="softmax")],
                                    "sparse_categorical_crossentropy"),
    "simple-rnn-sequences-out": (SEQUENCES, np.tanh(SEQUENCES[:, :, :2]),
                                 lambda: [Dense(3, activation="relu"), SimpleRNN(2, return_sequences=True)], "mse"),
    "dropout-last": (VALUES, VALUES[:, :2] * 2, lambda: [Dense(2), Dropout(0.0)], "mae"),
}


@pytest.mark.parametrize("case", list(PER_STEP))
def test_a_per_step_output_trains_on_the_cuda_path_as_on_the_cpu(case, strict_device_arrays):
    x, y, layers, loss = PER_STEP[case]
    fit_on_both(lambda device: Sequential(layers(), input_shape=x.shape[1:], seed=3, device=device), x, y,
                dict(optimizer="adam", loss=loss, metrics=["mae"] if loss == "mse" else None),
                validation=(x[:6], y[:6]), predict=x[:7])


TICKETS = (Path(__file__).parents[3] / "configs" / "tickets.yaml").read_text()


def test_the_ticket_config_checks_and_trains_on_cuda_and_its_run_evaluates_on_the_cpu(tmp_path):
    config = tmp_path / "tickets.yaml"
    small = (TICKETS.replace("samples: 3200, width: 10000, features: 100", "samples: 48, width: 80, features: 6")
             .replace("shape: [10000]", "shape: [80]").replace("shape: [100]", "shape: [6]")
             .replace("units: 64", "units: 5").replace("epochs: 10", "epochs: 2").replace("batch_size: 64",
                                                                                             "batch_size: 16"))
    histories = {}
    for device in ("cuda", "cpu"):
        config.write_text(small + f"\ndevice: {device}\n")
        if device == "cuda":
            result = CliRunner().invoke(main, ["check", str(config)])
            assert result.exit_code == 0 and "trains on cuda)" in result.output, result.output
        result = CliRunner().invoke(main, ["train", str(config), "--runs-dir", str(tmp_path / device), "-q"])
        assert result.exit_code == 0, result.output
        run = next((tmp_path / device / "tickets").glob("2*"))
        assert json.loads((run / "manifest.json").read_text())["device"] == device
        histories[device] = json.loads((run / "history.json").read_text())
    for key in ("loss", "priority_loss", "department_loss", "val_department_accuracy"):
        np.testing.assert_allclose(histories["cuda"][key], histories["cpu"][key], rtol=2e-5, err_msg=key)
    run = next((tmp_path / "cuda" / "tickets").glob("2*"))
    result = CliRunner().invoke(main, ["evaluate", str(run)])
    assert result.exit_code == 0 and "department_loss" in result.output, result.output


def test_the_loss_weighting_kernels_against_numpy():
    """The GPU's own kernels of the per-step and several-output losses: the mask's weights as nn/inputs.py's
    `masked_weights` gives them (bytes), an all-padding batch (weights 0, no division by 0), and a loss weight."""
    from nnctl.engine import cuda
    from nnctl.nn.inputs import masked_weights

    weight = RNG.random(30).astype(np.float32) + 0.5
    for mask in (RNG.random((5, 6)) < 0.6, np.zeros((5, 6), bool)):
        out = np.full(30, 7, np.float32)
        cuda.masked_loss_weights(weight, mask.reshape(-1).astype(np.uint8), out)
        assert out.tobytes() == masked_weights(weight, mask).tobytes()
    grad, scaled = RNG.standard_normal(30).astype(np.float32), np.zeros(30, np.float32)
    cuda.scale_values(grad, 0.3, scaled)
    assert scaled.tobytes() == (grad * np.float32(0.3)).tobytes()
