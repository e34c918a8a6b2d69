"""Config transforms against plain NumPy references: fitted on training data only, reapplied from their JSON state."""

import json

import numpy as np
import pytest

from nnctl.data.sequences import Sequences
from nnctl.data.transforms import (TRANSFORMS, MultiHot, OneHot, Standardize, apply_all, build_transforms,
                                   fit_apply, load_transforms)
from nnctl.errors import NnctlError


def random_sequences(rng, rows, vocab, longest=12):
    """Rows of random tokens 0..vocab-1, some empty, with repeats."""
    return [rng.integers(0, vocab, rng.integers(0, longest + 1)).tolist() for _ in range(rows)]


def dense_multi_hot(rows, width):
    """The book's vectorize_sequences, with tokens ≥ width dropped."""
    out = np.zeros((len(rows), width), np.float32)
    for r, row in enumerate(rows):
        for token in row:
            if token < width:
                out[r, token] = 1.0
    return out


def keras_pad(rows, maxlen, padding="pre", truncating="pre", value=0):
    """keras.utils.pad_sequences, written out row by row."""
    out = np.full((len(rows), maxlen), value, np.int32)
    for r, row in enumerate(rows):
        if not row:
            continue
        kept = row[-maxlen:] if truncating == "pre" else row[:maxlen]
        if padding == "pre":
            out[r, maxlen - len(kept):] = kept
        else:
            out[r, :len(kept)] = kept
    return out


def one(spec):
    return build_transforms([spec])


# ---- multi_hot ---------------------------------------------------------------------------------------------
def test_multi_hot_is_a_sparse_copy_of_the_dense_reference():
    rows = random_sequences(np.random.default_rng(0), 40, vocab=30)
    (transform,) = one({"type": "multi_hot", "width": 30})
    x, _ = fit_apply([transform], Sequences.from_lists(rows), None)
    assert hasattr(x, "indptr") and x.shape == (40, 30)
    np.testing.assert_array_equal(x.to_dense(), dense_multi_hot(rows, 30))
    assert np.all(x.values == 1.0) and x.nnz == int(dense_multi_hot(rows, 30).sum())
    for r in range(40):  # sorted, distinct column indexes per row
        columns = x.indices[x.indptr[r]:x.indptr[r + 1]]
        assert columns.tolist() == sorted(set(rows[r]))


def test_multi_hot_width_defaults_to_the_training_data_and_drops_larger_validation_tokens():
    train = [[1, 4, 4], [7], []]
    validation = [[2, 9, 12], [7, 8]]
    (transform,) = one({"type": "multi_hot"})
    x, _ = fit_apply([transform], Sequences.from_lists(train), None)
    assert transform.width == 8 and x.shape == (3, 8)  # max token 7 + 1
    np.testing.assert_array_equal(x.to_dense(), dense_multi_hot(train, 8))
    held, _ = apply_all([transform], Sequences.from_lists(validation))
    np.testing.assert_array_equal(held.to_dense(), dense_multi_hot(validation, 8))


def test_multi_hot_given_width_wins_over_the_data():
    rows = [[1, 4, 25], [0, 3]]
    (transform,) = one({"type": "multi_hot", "width": 5})
    x, _ = fit_apply([transform], Sequences.from_lists(rows), None)
    assert transform.width == 5
    np.testing.assert_array_equal(x.to_dense(), dense_multi_hot(rows, 5))
    (wide,) = one({"type": "multi_hot", "width": 40})
    assert fit_apply([wide], Sequences.from_lists(rows), None)[0].shape == (2, 40)


def test_sequence_transforms_refuse_dense_arrays():
    for spec in ({"type": "multi_hot"}, {"type": "pad_sequences", "maxlen": 3}):
        with pytest.raises(NnctlError, match=rf"transform '{spec['type']}' needs word-index sequences.*\(4, 2\)"):
            fit_apply(one(spec), np.zeros((4, 2)), None)


# ---- pad_sequences -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("padding", ["pre", "post"])
@pytest.mark.parametrize("truncating", ["pre", "post"])
@pytest.mark.parametrize("maxlen, value", [(5, 0), (1, 0), (15, 3)])
def test_pad_sequences_matches_keras(padding, truncating, maxlen, value):
    rows = random_sequences(np.random.default_rng(maxlen), 25, vocab=50, longest=10) + [[], [7] * 12]
    (transform,) = one({"type": "pad_sequences", "maxlen": maxlen, "padding": padding, "truncating": truncating,
                        "value": value})
    x, _ = fit_apply([transform], Sequences.from_lists(rows), None)
    assert x.shape == (len(rows), maxlen) and np.issubdtype(x.dtype, np.integer)
    np.testing.assert_array_equal(x, keras_pad(rows, maxlen, padding, truncating, value))


def test_pad_sequences_spelled_out():
    rows = Sequences.from_lists([[1, 2, 3, 4], [5]])
    pre, _ = fit_apply(one({"type": "pad_sequences", "maxlen": 3}), rows, None)
    post, _ = fit_apply(one({"type": "pad_sequences", "maxlen": 3, "padding": "post", "truncating": "post"}), rows,
                        None)
    assert pre.tolist() == [[2, 3, 4], [0, 0, 5]]
    assert post.tolist() == [[1, 2, 3], [5, 0, 0]]


# ---- one_hot -----------------------------------------------------------------------------------------------
def test_one_hot_is_to_categorical_with_classes_from_the_training_labels():
    y_train, y_val = np.array([0, 3, 1, 2, 3, 0]), np.array([2, 0, 3])
    (transform,) = one({"type": "one_hot"})
    _, y = fit_apply([transform], np.zeros((6, 1)), y_train)
    assert transform.classes == 4 and y.dtype == np.float32
    np.testing.assert_array_equal(y, np.eye(4, dtype=np.float32)[y_train])
    _, held = apply_all([transform], np.zeros((3, 1)), y_val)
    np.testing.assert_array_equal(held, np.eye(4, dtype=np.float32)[y_val])
    # float labels (as .npz/.csv files often hold them) are fine when they are whole numbers
    _, from_floats = apply_all([transform], np.zeros((3, 1)), y_val.astype(np.float32))
    np.testing.assert_array_equal(from_floats, held)


def test_one_hot_given_classes_wins_over_the_data():
    (transform,) = one({"type": "one_hot", "classes": 6})
    _, y = fit_apply([transform], np.zeros((2, 1)), np.array([0, 1]))
    np.testing.assert_array_equal(y, np.eye(6, dtype=np.float32)[[0, 1]])


def test_one_hot_validation_label_beyond_the_training_classes_is_a_clear_error():
    (transform,) = one({"type": "one_hot"})
    fit_apply([transform], np.zeros((3, 1)), np.array([0, 1, 2]))
    with pytest.raises(NnctlError, match=r"one_hot: labels must be integers in \[0, 2\], got values in \[0, 5\]"):
        apply_all([transform], np.zeros((2, 1)), np.array([0, 5]))
    for bad in ([-1], [0.5]):
        with pytest.raises(NnctlError, match="one_hot: labels must be integers"):
            apply_all([transform], np.zeros((1, 1)), np.array(bad))


# ---- standardize -------------------------------------------------------------------------------------------
def test_standardize_uses_the_training_statistics_for_every_split():
    rng = np.random.default_rng(1)
    x_train = rng.normal(5.0, 2.0, size=(50, 4))
    x_val = rng.normal(-100.0, 50.0, size=(20, 4))
    x_test = rng.normal(1e3, 1e-2, size=(10, 4))
    (transform,) = one({"type": "standardize"})
    out, _ = fit_apply([transform], x_train, None)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    np.testing.assert_allclose(transform.mean, mean)
    np.testing.assert_allclose(transform.std, std)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, (x_train - mean) / std, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=0), 1, rtol=1e-5)
    for held in (x_val, x_test):
        result, _ = apply_all([transform], held)
        np.testing.assert_allclose(result, (held - mean) / std, rtol=1e-5)
        # not standardized with its own statistics: far from zero mean / unit spread
        assert np.all(np.abs(result.mean(axis=0)) > 10)


def test_standardize_leaves_a_constant_feature_at_zero():
    x = np.column_stack([np.arange(6.0), np.full(6, 7.5)])
    (transform,) = one({"type": "standardize"})
    out, _ = fit_apply([transform], x, None)
    assert transform.std[1] == 1.0 and np.all(np.isfinite(out))
    np.testing.assert_array_equal(out[:, 1], 0.0)
    np.testing.assert_allclose(out[:, 0], (x[:, 0] - 2.5) / x[:, 0].std(), rtol=1e-6)
    np.testing.assert_array_equal(apply_all([transform], np.array([[0.0, 9.5]]))[0][:, 1], [2.0])


# ---- rescale, flatten, reshape ---------------------------------------------------------------------------
def test_rescale():
    x = np.arange(12, dtype=np.uint8).reshape(3, 4)
    out, _ = fit_apply(one({"type": "rescale", "scale": 1 / 255}), x, None)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, x / 255.0, rtol=1e-6)
    shifted, _ = fit_apply(one({"type": "rescale", "scale": 2.0, "offset": -1.0}), x, None)
    np.testing.assert_allclose(shifted, x * 2.0 - 1.0)


def test_flatten():
    x = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    out, _ = fit_apply(one({"type": "flatten"}), x, None)
    np.testing.assert_array_equal(out, x.reshape(2, 60))


def test_reshape_and_its_error():
    x = np.arange(24).reshape(2, 12)
    out, _ = fit_apply(one({"type": "reshape", "shape": [3, 4]}), x, None)
    np.testing.assert_array_equal(out, x.reshape(2, 3, 4))
    with pytest.raises(NnctlError, match=r"reshape: cannot reshape samples of shape \[12\] to \[5, 2\]"):
        fit_apply(one({"type": "reshape", "shape": [5, 2]}), x, None)


# ---- state, order --------------------------------------------------------------------------------------------
def _sequences(rng):
    return Sequences.from_lists(random_sequences(rng, 15, vocab=20))


# (spec, training data, data it is reapplied to); y transforms get labels
ROUND_TRIP = [
    ({"type": "multi_hot"}, _sequences, _sequences),
    ({"type": "multi_hot", "width": 12}, _sequences, _sequences),
    ({"type": "pad_sequences", "maxlen": 6, "padding": "post", "value": 1}, _sequences, _sequences),
    ({"type": "one_hot"}, lambda rng: rng.integers(0, 5, 30), lambda rng: rng.integers(0, 4, 9)),
    ({"type": "standardize"}, lambda rng: rng.normal(3, 2, (30, 4)), lambda rng: rng.normal(0, 9, (9, 4))),
    ({"type": "rescale", "scale": 0.5, "offset": 2.0}, lambda rng: rng.normal(size=(5, 3)),
     lambda rng: rng.normal(size=(4, 3))),
    ({"type": "flatten"}, lambda rng: rng.normal(size=(5, 2, 3)), lambda rng: rng.normal(size=(4, 2, 3))),
    ({"type": "reshape", "shape": [2, 3]}, lambda rng: rng.normal(size=(5, 6)), lambda rng: rng.normal(size=(4, 6))),
    ({"type": "impute"}, lambda rng: _holes(rng, (30, 4)), lambda rng: _holes(rng, (9, 4))),
    ({"type": "impute", "strategy": "median"}, lambda rng: _holes(rng, (30, 4)), lambda rng: _holes(rng, (9, 4))),
    ({"type": "impute", "strategy": "constant", "fill_value": -1.0}, lambda rng: _holes(rng, (5, 2)),
     lambda rng: _holes(rng, (4, 2))),
]


def _holes(rng, shape):
    """Normal values with about a fifth missing (NaN), as a CSV read with an `impute` transform holds them."""
    x = rng.normal(size=shape)
    x[rng.random(shape) < 0.2] = np.nan
    return x


def test_the_round_trip_list_covers_every_transform():
    assert {spec["type"] for spec, _, _ in ROUND_TRIP} == set(TRANSFORMS)


@pytest.mark.parametrize("spec, train, later", ROUND_TRIP, ids=[str(case[0]) for case in ROUND_TRIP])
def test_state_through_json_reproduces_identical_outputs(spec, train, later):
    rng = np.random.default_rng(3)
    train_data, later_data = train(rng), later(rng)
    transforms = build_transforms([spec])
    on_y = transforms[0].target == "y"
    fit_apply(transforms, None if on_y else train_data, train_data if on_y else None)
    text = json.dumps([t.state() for t in transforms])  # plain JSON: no NumPy scalars or arrays
    reloaded = load_transforms(json.loads(text))
    assert [t.state() for t in reloaded] == json.loads(text)
    if on_y:
        expected, got = apply_all(transforms, None, later_data)[1], apply_all(reloaded, None, later_data)[1]
    else:
        expected, got = apply_all(transforms, later_data)[0], apply_all(reloaded, later_data)[0]
    if hasattr(expected, "indptr"):
        expected, got = expected.to_dense(), got.to_dense()
    assert got.dtype == expected.dtype and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def test_fit_apply_fits_each_step_on_the_previous_steps_output():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(30, 2, 3)) * 4 + 1
    transforms = build_transforms([{"type": "rescale", "scale": 10.0, "offset": 5.0}, {"type": "flatten"},
                                   {"type": "standardize"}])
    out, _ = fit_apply(transforms, x, None)
    scaled = (x * 10.0 + 5.0).reshape(30, 6)
    np.testing.assert_allclose(transforms[2].mean, scaled.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(transforms[2].std, scaled.std(axis=0), rtol=1e-5)
    np.testing.assert_allclose(out, (scaled - scaled.mean(0)) / scaled.std(0), rtol=1e-4, atol=1e-5)
    # the other order gives another result: standardize first, then the rescale moves it off zero mean
    other, _ = fit_apply(build_transforms([{"type": "flatten"}, {"type": "standardize"},
                                           {"type": "rescale", "scale": 10.0, "offset": 5.0}]), x, None)
    np.testing.assert_allclose(other.mean(axis=0), 5.0, atol=1e-4)
    later = rng.normal(size=(7, 2, 3))
    again, _ = apply_all(transforms, later)
    np.testing.assert_allclose(again, ((later * 10 + 5).reshape(7, 6) - scaled.mean(0)) / scaled.std(0), rtol=1e-4,
                               atol=1e-5)


def test_x_and_y_transforms_each_see_their_own_data():
    x, y = np.arange(12.0).reshape(4, 3), np.array([2, 0, 1, 2])
    transforms = build_transforms([{"type": "one_hot"}, {"type": "standardize"}])
    x_out, y_out = fit_apply(transforms, x, y)
    assert isinstance(transforms[0], OneHot) and isinstance(transforms[1], Standardize)
    np.testing.assert_array_equal(y_out, np.eye(3, dtype=np.float32)[y])
    np.testing.assert_allclose(x_out, (x - x.mean(0)) / x.std(0), rtol=1e-6)
    # apply_all without y leaves y alone (predict); with y it transforms both (evaluate)
    x_only, none = apply_all(transforms, x)
    assert none is None
    np.testing.assert_array_equal(x_only, x_out)
    np.testing.assert_array_equal(apply_all(transforms, x, y)[1], y_out)


def test_build_transforms_drops_unset_options():
    (transform,) = build_transforms([{"type": "multi_hot", "width": None}])
    assert isinstance(transform, MultiHot) and transform.options == {}
