"""Recurrent layers through a Sequential: Keras's shapes, weight names and parameter counts, central-difference
gradients (masks, go_backwards, return_sequences, Bidirectional merges), masking semantics, dropout
determinism, thread-count independence, the derived config schema, and the orthogonal/identity initializers."""

import numpy as np
import pytest

from nnctl.config.schema import layer_spec
from nnctl.errors import ArgumentError, ShapeError
from nnctl.nn.initializers import INITIALIZERS
from nnctl.nn.layers import (GRU, LSTM, Bidirectional, Dense, Embedding, GlobalAveragePooling1D, Masking,
                             SimpleRNN)
from nnctl.nn.layers import rnn
from nnctl.nn.model import Sequential
from tests.nn.test_gradients import check_model

CELLS = [SimpleRNN, LSTM, GRU]
RNG = np.random.default_rng(17)


def _ids(n, steps, vocab, pad_front=0, pad_back=0):
    """int ids in [1, vocab) with zero padding in front and/or behind."""
    ids = RNG.integers(1, vocab, (n, steps))
    ids[:, :pad_front] = 0
    if pad_back:
        ids[:, steps - pad_back:] = 0
    return ids


# ---- shapes, names, counts -----------------------------------------------------------------------------------
@pytest.mark.parametrize("cls, per_layer", [(SimpleRNN, 2080), (LSTM, 8320), (GRU, 6336)])
def test_keras_parameter_counts_for_the_book_models(cls, per_layer):
    """Embedding(10000, 32) → <cell>(32) → Dense 1: Keras's summary gives 322,113 / 328,353 / 326,369."""
    model = Sequential([Embedding(10000, 32), cls(32), Dense(1, activation="sigmoid")], input_shape=(500,))
    model.build()
    assert model.layers[1].param_count() == per_layer
    assert model.summary()["total_params"] == 320000 + per_layer + 33


def test_weight_names_and_layouts_follow_keras():
    model = Sequential([LSTM(5, return_sequences=True), GRU(4, return_sequences=True), SimpleRNN(3),
                        ], input_shape=(7, 6))
    model.build()
    shapes = {p.name: p.shape for p in model.store.params}
    assert shapes == {"lstm/kernel": (6, 20), "lstm/recurrent_kernel": (5, 20), "lstm/bias": (20,),
                      "gru/kernel": (5, 12), "gru/recurrent_kernel": (4, 12), "gru/bias": (2, 12),
                      "simple_rnn/kernel": (4, 3), "simple_rnn/recurrent_kernel": (3, 3), "simple_rnn/bias": (3,)}


def test_bidirectional_names_counts_and_shapes():
    model = Sequential([Embedding(10000, 32), Bidirectional(LSTM(32)), Dense(1)], input_shape=(500,))
    model.build()
    assert model.summary()["total_params"] == 336705  # Keras: 320,000 + 2·8,320 + 65
    names = [p.name for p in model.store.params if p.name.startswith("bidirectional")]
    assert names == [f"bidirectional/{way}_lstm/{w}" for way in ("forward", "backward")
                     for w in ("kernel", "recurrent_kernel", "bias")]
    for mode, width in (("concat", 8), ("sum", 4), ("mul", 4), ("ave", 4)):
        layer = Bidirectional(GRU(4, return_sequences=True), merge_mode=mode)
        Sequential([layer], input_shape=(6, 3)).build()
        assert layer.output_shape == (6, width)


def test_lstm_forget_gate_bias_starts_at_one():
    model = Sequential([LSTM(3)], input_shape=(4, 2), seed=0)
    model.build()
    np.testing.assert_array_equal(model.layers[0].bias.value, [0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    model = Sequential([LSTM(3, unit_forget_bias=False)], input_shape=(4, 2), seed=0)
    model.build()
    assert not model.layers[0].bias.value.any()


def test_recurrent_kernel_is_orthogonal_by_default():
    model = Sequential([GRU(6)], input_shape=(4, 2), seed=0)
    model.build()
    u = model.layers[0].recurrent_kernel.value.astype(np.float64)  # (6, 18): orthonormal rows
    np.testing.assert_allclose(u @ u.T, np.eye(6), atol=1e-6)


@pytest.mark.parametrize("shape", [(5, 5), (3, 7), (7, 3), (2, 3, 4)])
def test_orthogonal_initializer(shape):
    w = INITIALIZERS.get({"type": "orthogonal", "gain": 2.0})(shape, np.random.default_rng(0)).astype(np.float64)
    flat = w.reshape(-1, shape[-1])
    gram = flat.T @ flat if flat.shape[0] >= flat.shape[1] else flat @ flat.T
    np.testing.assert_allclose(gram, 4.0 * np.eye(min(flat.shape)), atol=1e-5)
    with pytest.raises(ArgumentError):
        INITIALIZERS.get("orthogonal")((4,), np.random.default_rng(0))


def test_identity_initializer():
    w = INITIALIZERS.get({"type": "identity", "gain": 0.5})((3, 4), np.random.default_rng(0))
    np.testing.assert_array_equal(w, 0.5 * np.eye(3, 4))


def test_wrong_input_rank_and_bad_arguments_are_named():
    with pytest.raises(ShapeError, match="steps, features"):
        Sequential([LSTM(3)], input_shape=(4,)).build()
    with pytest.raises(ArgumentError, match="recurrent_dropout"):
        LSTM(3, recurrent_dropout=1.0)
    with pytest.raises(ArgumentError, match="reset_after"):
        GRU(3, reset_after=False)
    with pytest.raises(ArgumentError, match="activation"):
        SimpleRNN(3, activation="softmax")
    with pytest.raises(ArgumentError, match="go_backwards"):
        Bidirectional(LSTM(3, go_backwards=True))
    with pytest.raises(ArgumentError, match="recurrent layer"):
        Bidirectional(Dense(3))


def test_config_round_trips_through_the_derived_schema():
    for layer in (SimpleRNN(4, dropout=0.1), LSTM(3, return_sequences=True, unit_forget_bias=False),
                  GRU(2, go_backwards=True), Bidirectional(LSTM(3), merge_mode="sum"), Masking(-1.0)):
        config = layer.get_config()
        spec = layer_spec(layer.type_name, type(layer)).model_validate({"type": layer.type_name, **config})
        rebuilt = type(layer)(**{k: v for k, v in spec.model_dump().items() if k not in ("type", "inputs")})
        assert rebuilt.get_config() == config


def test_bidirectional_schema_checks_the_wrapped_layer():
    spec = layer_spec("bidirectional", Bidirectional)
    with pytest.raises(Exception, match="unitz"):
        spec.model_validate({"type": "bidirectional", "layer": {"type": "lstm", "unitz": 3}})
    with pytest.raises(Exception, match="recurrent layer"):
        spec.model_validate({"type": "bidirectional", "layer": {"type": "dense", "units": 3}})
    spec.model_validate({"type": "bidirectional", "layer": {"type": "LSTM", "units": 3}})


# ---- gradients -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", CELLS)
@pytest.mark.parametrize("sequences, backwards", [(False, False), (True, False), (False, True), (True, True)])
def test_gradients(cls, sequences, backwards):
    layers = [cls(3, return_sequences=sequences, go_backwards=backwards), Dense(2)]
    x = RNG.standard_normal((3, 5, 4))
    y = RNG.standard_normal((3, 5, 2) if sequences else (3, 2))
    check_model(layers, (5, 4), "mse", x, y)


@pytest.mark.parametrize("cls", CELLS)
def test_gradients_through_a_stack_with_a_mask(cls):
    """Embedding(mask_zero) → cell (sequences) → cell: masked steps pass no gradient and carry the state."""
    ids = _ids(4, 6, 9, pad_front=2)
    ids[1, 4:] = 0  # one post-padded row too
    layers = [Embedding(9, 3, mask_zero=True), cls(4, return_sequences=True), cls(3), Dense(1)]
    check_model(layers, (6,), "mse", ids, RNG.standard_normal((4, 1)))


@pytest.mark.parametrize("mode", ["concat", "sum", "mul", "ave"])
@pytest.mark.parametrize("sequences", [False, True])
def test_bidirectional_gradients(mode, sequences):
    layers = [Bidirectional(GRU(3, return_sequences=sequences), merge_mode=mode), Dense(2)]
    x = RNG.standard_normal((3, 4, 2))
    check_model(layers, (4, 2), "mse", x, RNG.standard_normal((3, 4, 2) if sequences else (3, 2)))


def test_masking_and_masked_average_pooling_gradients():
    x = RNG.standard_normal((3, 5, 2))
    x[0, 3:] = 0.0
    x[2, :2] = 0.0
    layers = [Masking(0.0), LSTM(3, return_sequences=True), GlobalAveragePooling1D(), Dense(1)]
    check_model(layers, (5, 2), "mse", x, RNG.standard_normal((3, 1)))


def test_masked_sequence_loss_gradients():
    """A per-step output with a mask: padded steps weigh nothing in the loss (Keras 3)."""
    ids = _ids(3, 5, 7, pad_back=2)
    layers = [Embedding(7, 2, mask_zero=True), SimpleRNN(3, return_sequences=True), Dense(2)]
    check_model(layers, (5,), "mse", ids, RNG.standard_normal((3, 5, 2)))


# ---- masking semantics ---------------------------------------------------------------------------------------
def _model(cell, **args):
    model = Sequential([Embedding(20, 4, mask_zero=True), cell(5, **args)], input_shape=(9,), seed=5)
    model.compile(loss="mse")
    return model


@pytest.mark.parametrize("cls", CELLS)
def test_pre_and_post_padding_give_the_same_final_state(cls):
    tokens = RNG.integers(1, 20, (4, 6))
    pre = np.zeros((4, 9), np.int64)
    post = np.zeros((4, 9), np.int64)
    pre[:, 3:], post[:, :6] = tokens, tokens
    model = _model(cls)
    np.testing.assert_allclose(model.predict(pre), model.predict(post), rtol=1e-6, atol=1e-7)
    # ... and the same as the real tokens alone, unpadded.
    alone = Sequential([Embedding(20, 4), cls(5)], input_shape=(6,), seed=5)
    alone.compile(loss="mse")
    alone.set_weights(model.get_weights())
    np.testing.assert_allclose(alone.predict(tokens), model.predict(post), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("cls", CELLS)
def test_masked_steps_repeat_the_last_output_as_keras(cls):
    ids = _ids(2, 9, 20, pad_back=3)
    ids[1, :2] = 0
    out = _model(cls, return_sequences=True).predict(ids)
    np.testing.assert_array_equal(out[0, 6:], np.repeat(out[0, 5:6], 3, axis=0))
    assert not out[1, :2].any()  # before any real step: the zero initial state


def test_bidirectional_gives_zeros_at_masked_steps():
    ids = _ids(2, 9, 20, pad_back=3)
    model = Sequential([Embedding(20, 4, mask_zero=True), Bidirectional(LSTM(3, return_sequences=True))],
                       input_shape=(9,), seed=1)
    model.compile(loss="mse")
    out = model.predict(ids)
    assert not out[:, 6:].any() and out[:, :6].all()


def test_bidirectional_is_a_forward_and_a_reversed_layer():
    x = RNG.standard_normal((3, 6, 2)).astype(np.float32)
    wrapped = Sequential([Bidirectional(GRU(4, return_sequences=True))], input_shape=(6, 2), seed=2)
    wrapped.compile(loss="mse")
    weights = wrapped.get_weights()
    ahead = Sequential([GRU(4, return_sequences=True)], input_shape=(6, 2))
    back = Sequential([GRU(4, return_sequences=True, go_backwards=True)], input_shape=(6, 2))
    for model, way in ((ahead, "forward"), (back, "backward")):
        model.compile(loss="mse")
        model.set_weights({f"gru/{w}": weights[f"bidirectional/{way}_gru/{w}"]
                           for w in ("kernel", "recurrent_kernel", "bias")})
    out = wrapped.predict(x)
    np.testing.assert_array_equal(out[..., :4], ahead.predict(x))
    np.testing.assert_array_equal(out[..., 4:], back.predict(x)[:, ::-1])


# ---- training: determinism, threads, dropout ----------------------------------------------------------------
def _train(cls, seed=3, **args):
    ids = np.random.default_rng(0).integers(0, 30, (40, 12))
    y = (ids.sum(axis=1) % 2).astype(np.float32)
    model = Sequential([Embedding(30, 6, mask_zero=True), cls(7, **args), Dense(1, activation="sigmoid")],
                       input_shape=(12,), seed=seed)
    model.compile(optimizer="rmsprop", loss="binary_crossentropy")
    history = model.fit(ids, y, epochs=2, batch_size=16)
    return model, history


def _bidirectional(units, **args):
    """Bidirectional(LSTM(units, **args)): its two directions share one chunk-pool call."""
    return Bidirectional(LSTM(units, **args))


@pytest.mark.parametrize("cls", CELLS + [_bidirectional])
def test_training_bytes_do_not_depend_on_the_thread_count(cls, monkeypatch):
    monkeypatch.setattr(rnn, "POOL_MIN_MACS", 0)
    results = []
    for threads in ("1", "2"):
        monkeypatch.setenv("NNCTL_THREADS", threads)
        model, history = _train(cls, dropout=0.2, recurrent_dropout=0.3)
        results.append((model.store.values.tobytes(), history["loss"]))
    assert results[0] == results[1]


def test_dropout_masks_come_from_the_run_generator():
    first, _ = _train(LSTM, dropout=0.3, recurrent_dropout=0.3)
    again, _ = _train(LSTM, dropout=0.3, recurrent_dropout=0.3)
    other, _ = _train(LSTM, seed=4, dropout=0.3, recurrent_dropout=0.3)
    plain, _ = _train(LSTM)
    assert first.store.values.tobytes() == again.store.values.tobytes()
    assert first.store.values.tobytes() != other.store.values.tobytes()
    assert first.store.values.tobytes() != plain.store.values.tobytes()


def test_dropout_is_off_in_inference():
    model, _ = _train(GRU, dropout=0.5, recurrent_dropout=0.5)
    ids = np.random.default_rng(1).integers(0, 30, (5, 12))
    np.testing.assert_array_equal(model.predict(ids), model.predict(ids))


@pytest.mark.parametrize("cls", CELLS)
@pytest.mark.parametrize("dropout, recurrent_dropout", [(0.3, 0.0), (0.0, 0.4), (0.3, 0.4)])
def test_gradients_under_dropout_masks(cls, dropout, recurrent_dropout):
    """With the generator's state restored before every pass, each pass draws the same masks (per gate with
    recurrent dropout, as Keras 3), so central differences check the masked forward and backward."""
    from tests.nn.test_gradients import numeric_gradients

    model = Sequential([cls(3, dropout=dropout, recurrent_dropout=recurrent_dropout, return_sequences=True),
                        cls(2, dropout=dropout, recurrent_dropout=recurrent_dropout), Dense(2)],
                       input_shape=(4, 3), seed=3, dtype="float64")
    model.compile(optimizer="sgd", loss="mse")
    model.store.values += np.random.default_rng(1).normal(0, 0.1, model.store.values.size)
    x, y = RNG.standard_normal((5, 4, 3)), RNG.standard_normal((5, 2))
    state = model.rng.bit_generator.state
    original = model.compute_gradients

    def same_masks(*args, **kwargs):
        model.rng.bit_generator.state = state
        return original(*args, **kwargs)

    model.compute_gradients = same_masks
    model.compute_gradients(x, y)
    analytic = model.store.grads.copy()
    numeric = numeric_gradients(model, x, y)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7)
    dropped = model.layers[0].in_mask if dropout else model.layers[0].rec_mask
    assert dropped is not None and (dropped == 0).any()
    if dropout and recurrent_dropout and cls is not SimpleRNN:  # one input mask per gate
        assert model.layers[0].in_mask.shape[0] == cls.gates
