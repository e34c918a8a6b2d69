"""The Dot merge and merges of masked inputs on the CUDA path, under the CUDA simulator: graphs trained on the CUDA
path agree with the same seed on the CPU (history, weights, predictions) — Dot over rows and over a sequence's axes,
with and without normalize (a zero vector's clamped norm included), and the masks of every merge kind (AND of the
element-wise merges, Concatenate's OR along the features and join along the steps, an unmasked input beside a masked
one, Dot dropping them) read by recurrent layers and the masked mean; and the merge kernels against NumPy. Run by
tests/engine/test_cuda_sim.py."""

from __future__ import annotations

import numpy as np
import pytest

from nnctl.nn.functional import Input, Model
from nnctl.nn.layers import (GRU, LSTM, Add, Average, Concatenate, Conv1D, Dense, Dot, Embedding, Flatten,
                              GlobalAveragePooling1D, Masking, Maximum, Multiply, Reshape, Subtract)
from nnctl.nn.layers.merge import L2_EPSILON, _l2_normalize, _l2_normalize_backward
from tests.engine.cuda_sim.agree import fit_on_both

# Small: the simulator runs each GPU thread as an OS thread (a batch of 8, two or three steps an epoch).
RNG = np.random.default_rng(23)
X = RNG.standard_normal((20, 6)).astype(np.float32)
X[[2, 9, 15]] = 0.0  # rows whose bias-free projection is a zero vector: normalize's clamped norm
SEQUENCES = RNG.standard_normal((14, 6, 3)).astype(np.float32)
# Sequences whose first 0 to 3 steps are all zeros: Masking masks them.
SEQUENCES_PADDED = np.where((np.arange(6) < RNG.integers(0, 4, (14, 1)))[:, :, None], 0, SEQUENCES).astype(np.float32)
# Padded on the left as pad_sequences pads (id 0: a masked step), 0 to 4 steps of padding, and a few 0s inside.
IDS_PADDED = np.where(np.arange(6) < RNG.integers(0, 5, (16, 1)), 0, RNG.integers(0, 12, (16, 6))).astype(np.int32)


def _dot_rows():
    """Dot of two Dense branches along their features, plain and as a cosine (one branch bias-free, so the zero
    rows of X give it a zero vector)."""
    inputs = Input((6,))
    a, b = Dense(4, activation="tanh")(inputs), Dense(4)(inputs)
    plain = Dot(axes=-1)([a, b])
    cosine = Dot(axes=1, normalize=True)([Dense(3, use_bias=False)(inputs), Dense(3, activation="relu")(inputs)])
    return inputs, Dense(1)(Concatenate()([plain, cosine, b]))


def _dot_sequences():
    """Dot over a sequence's axes: steps·steps (axes 1), features·features (axes 2, normalized), a sequence by a
    vector (axes (2, 1)) and steps by a reshaped sequence's last axis (axes (1, 2))."""
    inputs = Input((6, 3))
    a, b = Conv1D(3, 1)(inputs), LSTM(3, return_sequences=True)(inputs)
    steps = Dot(axes=1)([a, b])  # (3, 3)
    features = Dot(axes=(2, 2), normalize=True)([a, b])  # (6, 6)
    by_vector = Dot(axes=(2, 1))([b, Dense(3)(Flatten()(inputs))])  # (6,)
    crossed = Dot(axes=(1, 2), normalize=True)([a, Reshape((3, 6))(b)])  # (3, 3)
    joined = Concatenate()([Flatten()(steps), Flatten()(features), by_vector, Flatten()(crossed)])
    return inputs, Dense(1)(joined)


def _masked_embeddings_added():
    """Two (and three) mask_zero Embedding branches added (the AND of their masks) into an LSTM and a GRU."""
    inputs = Input((6,))
    first, second = Embedding(12, 3, mask_zero=True)(inputs), Embedding(12, 3, mask_zero=True)(inputs)
    pair = LSTM(3)(Add()([first, second]))
    three = GRU(2)(Average()([first, second, LSTM(3, return_sequences=True)(first)]))
    return inputs, Dense(1, activation="sigmoid")(Concatenate()([pair, three]))


def _masked_with_unmasked():
    """A masked branch merged with an unmasked one (the one mask passes), read by a backward GRU and the masked
    mean; the unmasked branch subtracted from itself plus a masked one."""
    inputs = Input((6,))
    masked, plain = Embedding(12, 3, mask_zero=True)(inputs), Embedding(12, 3)(inputs)
    backwards = GRU(2, go_backwards=True)(Multiply()([masked, plain]))
    mean = GlobalAveragePooling1D()(Subtract()([plain, masked]))
    return inputs, Dense(1, activation="sigmoid")(Concatenate()([backwards, mean]))


def _masks_joined_and_ored():
    """Concatenate along the steps, a masked input beside an unmasked one either way round (masks [M, 1] and
    [1, M]); those two ANDed by Maximum ([M, M]) into an LSTM, and ORed by Concatenate along the features (two
    masks, all true) into the masked mean."""
    inputs = Input((6,))
    masked, plain = Embedding(12, 3, mask_zero=True)(inputs), Embedding(12, 3)(inputs)
    first = Concatenate(axis=1)([masked, plain])
    second = Concatenate(axis=1)([Dense(3)(plain), LSTM(3, return_sequences=True)(masked)])
    both = LSTM(2)(Maximum()([first, second]))
    either = GlobalAveragePooling1D()(Concatenate(axis=-1)([first, second]))
    return inputs, Dense(1, activation="sigmoid")(Concatenate()([both, either]))


def _masking_beside_conv():
    """A masked LSTM's sequences concatenated with an unmasked Conv1D's: along the features (all true: the masked
    mean averages every step) and along the steps (the padded steps of the LSTM's half left out of the mean);
    Dot of two masked sequences drops the mask."""
    inputs = Input((6, 3))
    masking = Masking()(inputs)
    recurrent, conv = LSTM(2, return_sequences=True)(masking), Conv1D(2, 2, padding="same")(inputs)
    features = GlobalAveragePooling1D()(Concatenate()([recurrent, conv]))
    steps = GlobalAveragePooling1D()(Concatenate(axis=1)([recurrent, conv]))
    dotted = Flatten()(Dot(axes=1)([recurrent, Dense(2)(masking)]))
    return inputs, Dense(1)(Concatenate()([features, steps, dotted]))


GRAPHS = {  # name: (x, target of x, the graph's (inputs, outputs), optimizer, loss)
    "dot-rows-plain-and-normalized": (X, lambda x: x[:, :1] * x[:, 1:2], _dot_rows, "adam", "mse"),
    "dot-over-sequence-axes": (SEQUENCES, lambda x: x[:, -1, :1] * x[:, 0, 1:2], _dot_sequences, "rmsprop", "mse"),
    "masked-embeddings-added-into-recurrent": (IDS_PADDED, lambda x: (x[:, -1:] > 5).astype(np.float32),
                                               _masked_embeddings_added, "rmsprop", "binary_crossentropy"),
    "masked-with-unmasked": (IDS_PADDED, lambda x: (x[:, :1] < x[:, -1:]).astype(np.float32), _masked_with_unmasked,
                             "adam", "binary_crossentropy"),
    "masks-joined-in-time-and-ored": (IDS_PADDED, lambda x: ((x > 0) & (x < 5)).sum(1, keepdims=True) >= 2,
                                      _masks_joined_and_ored, "adam", "binary_crossentropy"),
    "masking-beside-conv-and-dot": (SEQUENCES_PADDED, lambda x: x[:, -1, :1] + x[:, -2, 1:2], _masking_beside_conv,
                                    "adam", "mse"),
}


@pytest.mark.parametrize("case", list(GRAPHS))
def test_a_merge_graph_on_the_cuda_path_agrees_with_the_cpu(case, strict_device_arrays):
    x, target, graph, optimizer, loss = GRAPHS[case]
    y = target(x).astype(np.float32)
    fit_on_both(lambda device: Model(*graph(), seed=3, device=device), x, y, dict(optimizer=optimizer, loss=loss),
                validation=(x[:6], y[:6]), predict=x[:7])


def _f32(*shape):
    return RNG.uniform(-2.0, 2.0, shape).astype(np.float32)


def test_the_strided_product_against_numpy():
    """A sample's (rows, depth)·(depth, cols) through strides: (4, 3) by the transpose of a (2, 3), into the
    transpose of a (4, 2)."""
    from nnctl.engine import cuda

    a, b, out = _f32(5, 12), _f32(5, 6), np.zeros((5, 8), np.float32)
    cuda.strided_matmul(a, (3, 1), b, (1, 3), out, (1, 4), 4, 2, 3)
    want = np.matmul(a.reshape(5, 4, 3), b.reshape(5, 2, 3).transpose(0, 2, 1))
    np.testing.assert_allclose(out.reshape(5, 2, 4), want.transpose(0, 2, 1), rtol=1e-6, atol=1e-6)


def test_the_l2_normalization_against_the_cpu_layer():
    """Along the first axis of (4, 3) samples (vectors strided by 1, elements by 3), a zero vector clamped; then
    its gradient, in place."""
    from nnctl.engine import cuda

    x = _f32(5, 4, 3)
    x[1, :, 2] = 0.0
    flat, y = x.reshape(5, 12), np.zeros((5, 12), np.float32)
    inverse, squares = np.zeros((5, 3), np.float32), np.zeros((5, 3), np.float32)
    cuda.l2_normalize(flat, (1, 3), 3, 4, L2_EPSILON, y, inverse, squares)
    want, want_inverse, unclamped = _l2_normalize(x, 1)
    np.testing.assert_allclose(y.reshape(5, 4, 3), want, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(inverse, want_inverse[:, 0], rtol=1e-6)
    assert squares[1, 2] == 0 and not unclamped[1, 0, 2]
    grad = _f32(5, 4, 3)
    dx = grad.reshape(5, 12).copy()
    cuda.l2_normalize_backward(dx, flat, inverse, squares, (1, 3), 3, 4, L2_EPSILON, dx)
    np.testing.assert_allclose(dx.reshape(5, 4, 3), _l2_normalize_backward(grad, x, want_inverse, unclamped, 1),
                               rtol=1e-5, atol=1e-6)


def test_masks_combine_as_and_and_or():
    from nnctl.engine import cuda

    a, b = (RNG.random(20) < 0.5).astype(np.uint8), (RNG.random(20) < 0.5).astype(np.uint8)
    both, either = np.zeros(20, np.uint8), a.copy()
    cuda.combine_masks(a, b, True, both)
    cuda.combine_masks(either, b, False, either)
    np.testing.assert_array_equal(both, a & b)
    np.testing.assert_array_equal(either, a | b)
