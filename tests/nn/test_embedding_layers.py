"""Embedding: gradients (central differences), touched-row gradients across steps, Keras's counts and defaults,
id errors, determinism, and parity with torch.nn.Embedding (skipped without torch)."""

import numpy as np
import pytest

from nnctl.errors import ArgumentError, ShapeError
from nnctl.nn.layers.core import Dense, Flatten
from nnctl.nn.layers.embedding import Embedding
from nnctl.nn.model import Sequential
from tests.nn.test_gradients import check_model

RNG = np.random.default_rng(11)
IDS = np.array([[1, 4, 4, 0, 7], [7, 7, 2, 9, 1], [0, 0, 3, 4, 11], [5, 1, 1, 1, 8]])  # repeats; rows 6, 10 unused


def _imdb_model(seed=0, **embedding_args):
    model = Sequential([Embedding(10000, 8, **embedding_args), Flatten(), Dense(1, activation="sigmoid")],
                       input_shape=(20,), seed=seed)
    model.compile("rmsprop", "binary_crossentropy", ["accuracy"])
    return model


@pytest.mark.parametrize("regularizer", [None, "l2"])
def test_embedding_gradients(regularizer):
    # Untouched rows must read exactly zero; repeated ids must sum their gradients.
    check_model([Embedding(12, 3, embeddings_regularizer=regularizer), Flatten(), Dense(2, activation="tanh")],
                (5,), "mse", IDS, RNG.standard_normal((4, 2)))


@pytest.mark.parametrize("regularizer", [None, {"type": "l1_l2", "l1": 0.01, "l2": 0.01}])
def test_a_step_leaves_no_trace_of_the_previous_ones_rows(regularizer):
    def model():
        m = Sequential([Embedding(30, 4, embeddings_regularizer=regularizer), Flatten(), Dense(1)],
                       input_shape=(5,), seed=1)
        m.compile("sgd", "mse")
        return m
    first, second = RNG.integers(0, 15, (6, 5)), RNG.integers(15, 30, (6, 5))  # disjoint rows
    y = RNG.standard_normal(6)
    used = model()
    used.compute_gradients(first, y)
    _, grads = used.compute_gradients(second, y)
    _, fresh = model().compute_gradients(second, y)
    np.testing.assert_array_equal(grads["embedding/embeddings"], fresh["embedding/embeddings"])
    rows = used.layers[0].embeddings.rows  # what the optimizer may restrict its update to
    if regularizer is None:
        assert not grads["embedding/embeddings"][:15].any()
        assert sorted(rows) == sorted(np.unique(second)) and len(rows) == len(set(rows))
    else:  # the penalty's gradient reaches every row
        assert rows is None


def test_keras_parameter_counts_and_default_initializer():
    model = _imdb_model()
    summary = model.summary()
    assert [r["params"] for r in summary["rows"]] == [80_000, 0, 161]
    assert summary["total_params"] == summary["trainable_params"] == 80_161
    assert summary["rows"][0]["output_shape"] == (None, 20, 8)
    table = model.get_weights()["embedding/embeddings"]
    assert table.shape == (10000, 8) and table.dtype == np.float32
    assert -0.05 <= table.min() < -0.049 and 0.049 < table.max() <= 0.05  # Keras's uniform: ±0.05


def test_output_follows_the_model_dtype_and_any_input_rank():
    layer = Embedding(10, 3)
    model = Sequential([layer], input_shape=(2, 4), seed=0)
    model.compile("sgd", "mse")
    ids = RNG.integers(0, 10, (5, 2, 4))
    out = model.predict(ids)
    assert out.shape == (5, 2, 4, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out, model.get_weights()["embedding/embeddings"][ids])


def test_an_id_outside_the_vocabulary_names_the_layer_the_id_and_the_range():
    model = _imdb_model()
    x = RNG.integers(0, 10000, (64, 20))
    x[37, 3] = 10000
    with pytest.raises(ShapeError, match=r"'embedding'.*token id 10000.*\[0, 10000\)"):
        model.fit(x, np.zeros(64), epochs=1, batch_size=32)
    x[37, 3] = -2
    with pytest.raises(ShapeError, match=r"token id -2"):
        model.predict(x)


def test_mask_zero_records_the_padding_mask():
    layer = Embedding(12, 3, mask_zero=True)
    model = Sequential([layer, Flatten(), Dense(1)], input_shape=(5,), seed=0)
    model.compile("sgd", "mse")
    model.predict(IDS)
    np.testing.assert_array_equal(layer.mask, IDS != 0)
    plain = Embedding(12, 3)
    model = Sequential([plain], input_shape=(5,))
    model.compile("sgd", "mse")
    model.predict(IDS)
    assert plain.mask is None


def test_arguments_are_checked_and_round_trip():
    with pytest.raises(ArgumentError, match="`input_dim`"):
        Embedding(0, 8)
    with pytest.raises(ArgumentError, match="`output_dim`"):
        Embedding(10, 2.5)
    with pytest.raises(ArgumentError, match="`mask_zero`"):
        Embedding(10, 8, mask_zero="yes")
    with pytest.raises(Exception, match="no_such_init"):
        Embedding(10, 8, embeddings_initializer="no_such_init")
    config = Embedding(10, 8, mask_zero=True, embeddings_regularizer="l2", name="words").get_config()
    assert config == {"input_dim": 10, "output_dim": 8, "embeddings_initializer": "uniform",
                      "embeddings_regularizer": "l2", "mask_zero": True, "name": "words"}
    assert Embedding(**config).get_config() == config


def test_the_same_seed_gives_the_same_bytes():
    x, y = RNG.integers(0, 10000, (200, 20)), RNG.integers(0, 2, 200)
    weights = []
    for _ in range(2):
        model = _imdb_model(seed=5)
        model.fit(x, y, epochs=2, batch_size=32)
        weights.append(model.get_weights())
    for name in weights[0]:
        assert weights[0][name].tobytes() == weights[1][name].tobytes()


def test_a_frozen_embedding_keeps_its_table():
    model = _imdb_model(trainable=False)
    assert model.summary()["non_trainable_params"] == 80_000
    before = model.get_weights()["embedding/embeddings"]
    model.fit(RNG.integers(0, 10000, (64, 20)), RNG.integers(0, 2, 64), epochs=1, batch_size=32)
    after = model.get_weights()
    np.testing.assert_array_equal(after["embedding/embeddings"], before)
    assert not np.array_equal(after["dense/kernel"], _imdb_model(trainable=False).get_weights()["dense/kernel"])


def test_forward_and_weight_gradients_match_pytorch():
    torch = pytest.importorskip("torch")
    model = Sequential([Embedding(50, 6), Flatten(), Dense(3)], input_shape=(7,), seed=2)
    model.compile("sgd", "mse")
    ids = RNG.integers(0, 50, (16, 7))
    y = RNG.standard_normal((16, 3)).astype(np.float32)
    start = model.get_weights()
    embedding = torch.nn.Embedding(50, 6)
    linear = torch.nn.Linear(42, 3)
    with torch.no_grad():
        embedding.weight.copy_(torch.tensor(start["embedding/embeddings"]))
        linear.weight.copy_(torch.tensor(start["dense/kernel"].T))
        linear.bias.copy_(torch.tensor(start["dense/bias"]))
    out = linear(embedding(torch.tensor(ids)).reshape(16, -1))
    torch.nn.functional.mse_loss(out, torch.tensor(y)).backward()
    np.testing.assert_allclose(model.predict(ids), out.detach().numpy(), atol=1e-6)
    _, grads = model.compute_gradients(ids, y)
    np.testing.assert_allclose(grads["embedding/embeddings"], embedding.weight.grad.numpy(), atol=1e-6)
    np.testing.assert_allclose(grads["dense/kernel"], linear.weight.grad.numpy().T, atol=1e-6)


def test_rmsprop_training_matches_pytorch_step_for_step():
    torch = pytest.importorskip("torch")
    model = Sequential([Embedding(40, 4), Flatten(), Dense(1, activation="sigmoid")], input_shape=(6,), seed=4)
    model.compile("rmsprop", "binary_crossentropy")
    ids, y = RNG.integers(0, 40, (96, 6)), RNG.integers(0, 2, 96)
    start = model.get_weights()
    embedding, linear = torch.nn.Embedding(40, 4), torch.nn.Linear(24, 1)
    with torch.no_grad():
        embedding.weight.copy_(torch.tensor(start["embedding/embeddings"]))
        linear.weight.copy_(torch.tensor(start["dense/kernel"].T))
        linear.bias.copy_(torch.tensor(start["dense/bias"]))
    params = [embedding.weight, linear.weight, linear.bias]
    velocity = [torch.zeros_like(p) for p in params]
    inputs, targets = torch.tensor(ids), torch.tensor(y, dtype=torch.float32)
    for _ in range(3):
        for first in range(0, 96, 16):
            logits = linear(embedding(inputs[first:first + 16]).reshape(16, -1))[:, 0]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets[first:first + 16])
            for p in params:
                p.grad = None
            loss.backward()
            with torch.no_grad():  # Keras's RMSprop: untouched rows still decay their slot (g = 0)
                for p, v in zip(params, velocity):
                    v.mul_(0.9).add_(0.1 * p.grad * p.grad)
                    p.sub_(1e-3 * p.grad / torch.sqrt(v + 1e-7))
    model.fit(ids, y, epochs=3, batch_size=16, shuffle=False)
    trained = model.get_weights()
    np.testing.assert_allclose(trained["embedding/embeddings"], embedding.weight.detach().numpy(), atol=5e-7)
    np.testing.assert_allclose(trained["dense/kernel"], linear.weight.detach().numpy().T, atol=5e-7)
