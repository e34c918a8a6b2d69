"""Row-sparse optimizer steps for Embedding tables: the same training as dense steps (bytes for SGD, float32
rounding for RMSprop's lazily applied decay), and dense steps wherever a lazy one would not be exact."""

import numpy as np
import pytest

from nnctl.engine import reference
from nnctl.nn.layers import Dense, Embedding, Flatten
from nnctl.nn.model import Sequential


def _data(rows=96, vocab=300, length=6, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.zipf(1.5, (rows, length)) % vocab  # a few frequent ids, many rare: rows skip many steps
    return ids.astype(np.int32), (ids[:, 0] % 2).astype(np.float32)


def _train(optimizer, sparse: bool, regularizer=None, epochs=3):
    embedding = Embedding(300, 4, embeddings_regularizer=regularizer)
    model = Sequential([embedding, Flatten(), Dense(1, activation="sigmoid")], input_shape=(6,), seed=4)
    model.compile(optimizer, "binary_crossentropy")
    if not sparse:  # the same model, stepped densely: rebuild the store with the flag off
        embedding.embeddings.row_sparse = False
        model.store.row_params = []
    model.fit(*_data(), epochs=epochs, batch_size=16)
    return model


def test_lazy_rmsprop_matches_the_dense_update_and_settles_its_slots_each_epoch():
    lazy, dense = _train("rmsprop", True), _train("rmsprop", False)
    assert lazy.store.row_params and not dense.store.row_params
    for name, value in dense.get_weights().items():
        np.testing.assert_allclose(lazy.get_weights()[name], value, rtol=2e-5, atol=1e-7)
    # After the epoch-end flush every accumulator equals the dense one (float32 rounding of ρ^k).
    np.testing.assert_allclose(lazy.optimizer.slots[0], dense.optimizer.slots[0][_order(lazy, dense)],
                               rtol=2e-5, atol=1e-12)
    clocks = lazy.optimizer._row_clocks["embedding/embeddings"]
    assert (clocks == lazy.optimizer.iterations - 1).all()


def _order(lazy, dense):
    """Indexes that lay the dense model's flat buffer out in the lazy model's order (tables go last there)."""
    spans = {p.name: dense.store.slice_of(p) for p in dense.store.params}
    return np.concatenate([np.arange(spans[p.name].start, spans[p.name].stop) for p in lazy.store.params])


def test_lazy_sgd_is_byte_identical_to_the_dense_update():
    lazy, dense = _train("sgd", True), _train("sgd", False)
    for name, value in dense.get_weights().items():
        np.testing.assert_array_equal(lazy.get_weights()[name], value)


@pytest.mark.parametrize("optimizer", ["adam", {"type": "sgd", "momentum": 0.9},
                                       {"type": "rmsprop", "momentum": 0.5}, {"type": "rmsprop", "clipnorm": 1.0},
                                       {"type": "rmsprop", "weight_decay": 0.01}])
def test_optimizers_that_move_unused_rows_step_the_whole_table(optimizer):
    lazy, dense = _train(optimizer, True), _train(optimizer, False)
    assert lazy.optimizer._rows_kernel() is None
    for name, value in dense.get_weights().items():
        np.testing.assert_array_equal(lazy.get_weights()[name], value)


def test_a_regularized_table_has_gradient_everywhere_and_steps_densely():
    lazy, dense = _train("rmsprop", True, "l2"), _train("rmsprop", False, "l2")
    for name, value in dense.get_weights().items():
        np.testing.assert_allclose(lazy.get_weights()[name], value, rtol=1e-6, atol=1e-8)


def test_rows_step_kernel_against_a_dense_oracle():
    rng = np.random.default_rng(1)
    from nnctl.engine.backend import get_backend

    backend = get_backend("cpu")
    hp = np.array([0.01, 0.0, 0.9, 0.0, 1e-7, 0.0, 0.0, 0.0])
    params = rng.standard_normal((8, 3)).astype(np.float32)
    slot = rng.random((8, 3)).astype(np.float32)
    want_p, want_s = params.copy(), slot.copy()
    last = np.full(8, -1, np.int64)
    for step, rows in enumerate([[1, 4], [4], [0, 7, 1], [4, 2]]):
        grads = np.zeros_like(params)
        grads[rows] = rng.standard_normal((len(rows), 3))
        # The oracle: one dense RMSprop step over the whole table (reference.optimizer_step).
        offsets = np.array([0, params.size])
        flat_p, flat_s = want_p.reshape(-1), want_s.reshape(-1)
        reference.optimizer_step(4, hp, step, offsets, flat_p, grads.reshape(-1).copy(), flat_s,
                                 np.zeros(1, np.float32), np.zeros(1, np.float32), 0, 0.0)
        backend.rmsprop_rows_step(hp, step, np.array(rows, np.int32), last, params, grads, slot)
    backend.rows_flush(hp, 4, last, slot, 1)
    np.testing.assert_allclose(params, want_p, rtol=1e-6)
    np.testing.assert_allclose(slot, want_s, rtol=1e-6)
