"""GpuArray (nnctl/engine/cuda/ndarray.py, ndfuncs.py) against NumPy under the CUDA simulator: NumPy's dtype rules on
float32 data, random shapes, broadcasts, axes, strided views, index arrays and matmul batches (hypothesis), long
reductions in chunks, add.at's repeats into strided views, what raises, the pool, and an op with an nnctl.ops
Tensor on its right left to the tape. Run by tests/engine/test_cuda_sim.py."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnctl import ops

RNG = np.random.default_rng(43)


def _gpu(array):
    from nnctl.engine.cuda.ndfuncs import as_gpu

    return as_gpu(np.asarray(array))


def _host(value):
    from nnctl.engine.cuda.ndarray import GpuArray

    assert isinstance(value, GpuArray), type(value)
    return value.copy_to_host()


A32 = RNG.standard_normal((3, 4)).astype(np.float32)
EXPRESSIONS = {  # NumPy's dtype rules on float32 data: Python numbers are weak, comparisons are bool, ...
    "scalar-times": lambda a: a * 2.0 + 1,
    "numpy-float64-scalar": lambda a: a * np.float64(0.5),
    "compare": lambda a: a > 0.1,
    "bool-and": lambda a: (a > 0) & (a < 1),
    "not": lambda a: ~(a > 0),
    "bool-times-float": lambda a: a * (a > 0),
    "sum-of-bools": lambda a: (a > 0).sum(axis=0),
    "int-cast": lambda a: (a * 3).astype(np.int32),
    "where-scalar": lambda a: np.where(a > 0, a, 1),
    "mean-keepdims": lambda a: a.mean(axis=1, keepdims=True),
    "argmin": lambda a: np.argmin(a, axis=0),
    "argmax-flat": lambda a: np.argmax(a),
    "max-all": lambda a: np.max(a),
    "take-negative": lambda a: np.take(a, np.array([-1, 0, -1]), axis=1),
    "negative-step": lambda a: a[::-1, 1::2],
    "setitem": lambda a: _set(a),
    "divide-by-zero": lambda a: a / (a > 5) + np.log(a * 0) - np.sqrt(-a * a - 1),
    "logaddexp": lambda a: np.logaddexp(a, -a),
    "squeeze-expand": lambda a: np.squeeze(np.expand_dims(a, (0, 2)), 0),
    "index-array": lambda a: a[:, np.array([[3, 0], [0, 1]])],
    "index-list-after-ellipsis": lambda a: a[None, ..., [2, -1]],
    "index-array-first-then-int": lambda a: a[np.array([2, 2, 0]), 1],
    "index-add-at": lambda a: _add_at(a, (slice(None), np.array([1, 3, 1])), a[:, :3]),
    "index-add-at-after-none": lambda a: _add_at(a[None], (None, 0, ..., np.array([[0], [0]])), 2.0),
    "two-index-arrays": lambda a: a[np.array([0, 2, 2]), np.array([[1], [-1]])],
    "index-arrays-apart": lambda a: a[None][np.array([0, 0]), :, np.array([1, 3])],
    "int-and-array": lambda a: a[1, [0, 3, 0]],
    "device-mask": lambda a: a[a > 0.2],
    "row-mask": lambda a: a[np.array([True, False, True])] * 2,
    "add-at-two-arrays": lambda a: _add_at(a, (np.array([0, 0, 2]), np.array([1, 1, 3])), a[0, :3]),
    "add-at-mask": lambda a: _add_at(a, a > 0, 2.0),
}


def _add_at(a, key, values):
    a = a.copy()
    np.add.at(a, key, values)
    return a


def _set(a):
    a = a.copy()
    a[1, :] = 7.5
    a[:, ::3] = a[:, 1:2]
    return a


@pytest.mark.parametrize("name", list(EXPRESSIONS))
def test_gpu_arrays_give_what_numpy_gives_dtype_included(name):
    with np.errstate(all="ignore"):
        want = np.asarray(EXPRESSIONS[name](A32.copy()))
    got = _host(EXPRESSIONS[name](_gpu(A32)))
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_a_gpu_array_on_the_left_of_a_tensor_leaves_the_op_to_the_tape():
    weight = ops.Tensor(_gpu(A32))
    with ops.GradientTape() as tape:
        out = _gpu(np.full((3, 4), 2.0, np.float32)) * weight + _gpu(A32) > weight
        total = ops.sum(_gpu(np.ones((3, 4), np.float32)) * weight)
    assert isinstance(out, ops.Tensor)
    np.testing.assert_array_equal(_host(tape.gradient(total, weight)), np.ones((3, 4), np.float32))


def test_reductions_over_long_rows_go_in_chunks_and_gathers_add_repeats_in_order():
    from nnctl.engine.cuda import elementwise

    wide = RNG.standard_normal((2, 3 * elementwise.CHUNK + 5))
    np.testing.assert_allclose(_host(_gpu(wide).sum(axis=1)), wide.sum(axis=1), rtol=1e-13)
    np.testing.assert_allclose(_host(np.max(_gpu(wide))), wide.max())
    np.testing.assert_allclose(_host(np.prod(_gpu(wide[:, :3000] * 0 + 1.0001), axis=1)),
                               np.prod(wide[:, :3000] * 0 + 1.0001, axis=1), rtol=1e-12)
    rows, values = np.array([3, 0, 3, 3]), RNG.standard_normal((4, 5))
    target, device = np.zeros((4, 5)), np.zeros_like(_gpu(np.zeros((4, 5))))
    np.add.at(target, rows, values)
    np.add.at(device, rows, _gpu(values))
    np.testing.assert_array_equal(_host(device), target)
    moved = np.zeros_like(_gpu(np.zeros((5, 4))))
    np.add.at(np.moveaxis(moved, 1, 0), rows, _gpu(values))  # into a strided view
    np.testing.assert_array_equal(_host(moved), target.T)


def test_what_gpu_arrays_do_not_do_is_a_type_error_and_bad_indices_an_index_error():
    from nnctl.engine.cuda.ndarray import NotOnDevice

    a = _gpu(A32)
    for attempt in (lambda: a[True], lambda: float(a.sum()), lambda: np.asarray(a), lambda: bool(a[0, 0] > 0),
                    lambda: np.sort(a), lambda: np.cumsum(a, axis=0)):
        with pytest.raises(TypeError):
            attempt()
    with pytest.raises(NotOnDevice):
        _gpu(A32.astype(np.float16))
    for attempt in (lambda: np.take(a, np.array([4]), axis=1), lambda: a[np.array([0]), np.array([-5])],
                    lambda: a[np.array([0.5])]):
        with pytest.raises(IndexError):
            attempt()
    with pytest.raises(ValueError):
        a.reshape(5, 3)


def test_freed_arrays_are_reused_by_size():
    from nnctl.engine.cuda import ndarray

    first = ndarray.GpuArray.empty((7, 3))
    base = first.base
    del first
    assert ndarray.GpuArray.empty((21,)).base is base


def test_the_device_view_of_a_copy_keeps_the_copy_out_of_the_pool():
    """`device()` of a strided array hands out its copy's storage: the copy stays in use while that view lives,
    so a second copy of the same size (matmul's other operand) cannot take it."""
    a, b = (RNG.standard_normal((4, 8)).astype(np.float32) for _ in range(2))
    first, second = _gpu(a)[:, ::2].device(), _gpu(b)[:, ::2].device()
    np.testing.assert_array_equal(first.copy_to_host(), a[:, ::2])
    np.testing.assert_array_equal(second.copy_to_host(), b[:, ::2])
    np.testing.assert_allclose(_host(np.matmul(_gpu(a)[:, ::2], _gpu(b)[:, ::2])), a[:, ::2] @ b[:, ::2], rtol=1e-5)


def test_an_array_freed_in_a_reference_cycle_goes_back_to_the_pool_unfreed(monkeypatch):
    """The garbage collector runs a cycle's weak-reference callbacks (Numba frees device memory in one) before
    its `__del__` methods (a block's return to the pool): the pool's arrays are held apart, so none is freed."""
    import gc
    import weakref

    from nnctl.engine.cuda import ndarray

    freed = []

    class DeviceArray:  # as Numba's: an object the collector tracks, whose finalizer frees its memory
        def __init__(self, size, dtype):
            self.dtype, self.shape = np.dtype(dtype), (size,)
            weakref.finalize(self, freed.append, size)

    monkeypatch.setattr(ndarray.cuda, "device_array", DeviceArray)
    key = (np.dtype(np.float32).str, 12345)
    monkeypatch.setitem(ndarray._POOL, key, [])
    cycle = {"array": ndarray.GpuArray.empty((5, 2469))}
    cycle["itself"] = cycle
    del cycle
    gc.collect()
    assert len(ndarray._POOL[key]) == 1 and freed == []


@st.composite
def _arrays(draw, max_dims=4):
    """A float32 array of 1–4 axes of 1–4, as a strided view when drawn so: transposed and/or sliced by steps."""
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=max_dims)))
    seed = draw(st.integers(0, 2**31))
    data = np.random.default_rng(seed).uniform(-2, 2, tuple(2 * s for s in shape)).astype(np.float32)
    steps = tuple(slice(None, None, draw(st.sampled_from([2, -2]))) for _ in shape)
    view = data[steps]
    order = draw(st.permutations(range(len(shape))))
    return np.transpose(view, order)


def _view(array):
    """The device twin of a host view: the same strides over a device copy of its base."""
    base = array
    while base.base is not None:
        base = base.base
    offset = (array.__array_interface__["data"][0] - base.__array_interface__["data"][0]) // array.itemsize
    from nnctl.engine.cuda.ndarray import GpuArray

    return GpuArray(_gpu(base).base, array.shape, [s // array.itemsize for s in array.strides], offset)


def _equal(got, want):
    got = _host(got)
    assert got.dtype == np.asarray(want).dtype and got.shape == np.shape(want)
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(_arrays(), st.data())
def test_element_wise_ops_reductions_and_views_on_strided_arrays_match_numpy(a, data):
    """Binary ops with a broadcast operand, reductions over any axes with keepdims, and views, on strided inputs."""
    device = _view(a)
    kept = tuple(size if data.draw(st.booleans()) else 1 for size in a.shape)
    b = RNG.uniform(0.5, 2, kept[data.draw(st.integers(0, a.ndim - 1)):]).astype(np.float32)
    for function in (np.add, np.subtract, np.multiply, np.true_divide, np.maximum, np.greater):
        _equal(function(device, _gpu(b)), function(a, b))
        _equal(function(_gpu(b), device), function(b, a))
    axes = tuple(sorted(data.draw(st.sets(st.integers(0, a.ndim - 1), min_size=1))))
    keepdims = data.draw(st.booleans())
    for name in ("sum", "max", "min", "mean", "prod"):
        _equal(getattr(np, name)(device, axis=axes, keepdims=keepdims),
               getattr(np, name)(a, axis=axes, keepdims=keepdims))
    axis = data.draw(st.integers(-a.ndim, a.ndim - 1))
    _equal(np.argmax(device, axis=axis), np.argmax(a, axis=axis))
    _equal(np.concatenate([device, device[..., :1]], axis=-1), np.concatenate([a, a[..., :1]], axis=-1))
    _equal(np.swapaxes(device, 0, -1)[::-1].reshape(-1), np.swapaxes(a, 0, -1)[::-1].reshape(-1))
    _equal(np.where(device > 0, device, -device), np.abs(a))


@settings(max_examples=25, deadline=None)
@given(_arrays(), st.data())
def test_index_arrays_take_and_add_at_on_strided_arrays_match_numpy(a, data):
    device = _view(a)
    axis = data.draw(st.integers(0, a.ndim - 1))
    size = a.shape[axis]
    indices = np.array(data.draw(st.lists(st.integers(-size, size - 1), min_size=1, max_size=5)))
    _equal(np.take(device, indices, axis=axis), np.take(a, indices, axis=axis))
    key = (slice(None),) * axis + (indices,)
    _equal(device[key], a[key])
    keys = [key]
    if a.ndim >= 2:  # a second index array, beside the first or apart from it
        other = data.draw(st.sampled_from([x for x in range(a.ndim) if x != axis]))
        second = np.array(data.draw(st.lists(st.integers(-a.shape[other], a.shape[other] - 1),
                                             min_size=indices.size, max_size=indices.size)))
        both = [slice(None)] * a.ndim
        both[axis], both[other] = indices, second
        keys.append(tuple(both))
        _equal(device[keys[1]], a[keys[1]])
    for key in keys:
        want, got = np.zeros_like(a), np.zeros_like(device)
        values = RNG.standard_normal(a[key].shape).astype(np.float32)
        np.add.at(want, key, values)
        np.add.at(got, key, _gpu(values))
        _equal(got, want)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(1, 3), max_size=2), st.integers(1, 4), st.integers(1, 4), st.integers(1, 4),
       st.booleans(), st.booleans())
def test_matmul_over_batches_and_transposed_operands_matches_numpy(batch, m, k, n, transpose_a, broadcast_b):
    a = RNG.standard_normal(tuple(batch) + ((k, m) if transpose_a else (m, k))).astype(np.float32)
    b = RNG.standard_normal(((1,) * len(batch) if broadcast_b else tuple(batch)) + (k, n)).astype(np.float32)
    a_view = np.swapaxes(a, -1, -2) if transpose_a else a
    _equal(np.matmul(np.swapaxes(_gpu(a), -1, -2) if transpose_a else _gpu(a), _gpu(b)), np.matmul(a_view, b))
    _equal(np.matmul(_gpu(b[..., :1, :]), np.swapaxes(_gpu(b), -1, -2)), np.matmul(b[..., :1, :], np.swapaxes(b, -1,
                                                                                                             -2)))
    vector = RNG.standard_normal(k).astype(np.float32)  # a vector on either side of a stack
    _equal(np.matmul(_gpu(vector), _gpu(b)), np.matmul(vector, b))
    _equal(np.matmul(_gpu(a_view.copy()), _gpu(vector)), np.matmul(a_view, vector))
