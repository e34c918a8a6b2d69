"""NumPy's functions on GpuArrays (nnctl/engine/cuda/ndarray.py): the ufuncs `nnctl.ops` uses, reductions, matmul
(cuBLAS), where, take and add.at, concatenate and split, and the views. Each gives what NumPy gives, dtype
included (found by running the function on 0-d stand-ins); a call NumPy would accept and this does not raises
`NotOnDevice`."""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from nnctl.engine.cuda import elementwise as ew
from nnctl.engine.cuda.launch import grid1, on
from nnctl.engine.cuda.ndarray import GpuArray, NotOnDevice, check_dtype, padded_shape

UNARY = {np.negative: ew.NEGATIVE, np.exp: ew.EXP, np.log: ew.LOG, np.sqrt: ew.SQRT, np.square: ew.SQUARE,
         np.absolute: ew.ABS, np.sign: ew.SIGN, np.tanh: ew.TANH, np.log1p: ew.LOG1P, np.expm1: ew.EXPM1,
         np.logical_not: ew.NOT, np.positive: ew.COPY}
BINARY = {np.add: ew.ADD, np.subtract: ew.SUBTRACT, np.multiply: ew.MULTIPLY, np.true_divide: ew.DIVIDE,
          np.power: ew.POWER, np.maximum: ew.MAXIMUM, np.minimum: ew.MINIMUM, np.greater: ew.GREATER,
          np.greater_equal: ew.GREATER_EQUAL, np.less: ew.LESS, np.less_equal: ew.LESS_EQUAL, np.equal: ew.EQUAL,
          np.not_equal: ew.NOT_EQUAL, np.logical_and: ew.AND, np.logical_or: ew.OR, np.bitwise_and: ew.AND,
          np.bitwise_or: ew.OR, np.logaddexp: ew.LOGADDEXP}
_SCALARS: dict = {}  # (dtype, value) → a 0-d GpuArray: a Python number is uploaded once, not each op


def as_gpu(x, dtype=None) -> GpuArray:
    """x (a GpuArray, a host array or a number) on the device."""
    if isinstance(x, GpuArray):
        return x if dtype is None else x.astype(dtype, copy=False)
    host = np.asarray(x, dtype)
    if host.ndim == 0:
        key = (host.dtype.str, host.item())
        if key not in _SCALARS:
            if len(_SCALARS) > 256:
                _SCALARS.clear()
            _SCALARS[key] = GpuArray(cuda.to_device(host.reshape(1)), ())
        return _SCALARS[key]
    check_dtype(host.dtype)
    return GpuArray(cuda.to_device(np.ascontiguousarray(host).reshape(-1)), host.shape)


def _stand_in(x):
    """What NumPy's promotion sees of an operand: a Python number stays one (it is "weak": float32 · 2.0 is
    float32), an array becomes a 0-d array of its dtype."""
    if isinstance(x, (bool, int, float)) or isinstance(x, np.generic):
        return x
    return np.zeros((), x.dtype if isinstance(x, GpuArray) else np.asarray(x).dtype)


def result_dtype(function, *operands, **kwargs):
    with np.errstate(all="ignore"):
        return check_dtype(np.asarray(function(*map(_stand_in, operands), **kwargs)).dtype)


def map_one(code, x: GpuArray, dtype, out: GpuArray | None = None) -> GpuArray:
    out = GpuArray.empty(x.shape, dtype) if out is None else out
    if out.size:
        base, at, strides = x.layout(out.shape)
        out_base, out_at, out_strides = out.layout()
        ew.unary[on(*grid1(out.size))](code, base, at, strides, out_base, out_at, out_strides, padded_shape(out.shape),
                                       out.size)
    return out


def map_two(code, a, b, dtype, out: GpuArray | None = None) -> GpuArray:
    a, b = as_gpu(a), as_gpu(b)
    shape = np.broadcast_shapes(a.shape, b.shape)
    out = GpuArray.empty(shape, dtype) if out is None else out
    if out.size:
        ew.binary[on(*grid1(out.size))](code, *a.layout(shape), *b.layout(shape), *out.layout(), padded_shape(shape),
                                        out.size)
    return out


def assign(view: GpuArray, value) -> None:
    """view[...] = value (broadcast), in place."""
    map_one(ew.COPY, as_gpu(value), view.dtype, out=view)


def ufunc(function, method, inputs, kwargs):
    if kwargs.get("out") is not None or kwargs.get("where", True) is not True:
        raise NotOnDevice(f"np.{function.__name__} with `out` or `where` on the GPU")
    if method == "at" and function is np.add:
        return add_at(*inputs)
    if method != "__call__":
        raise NotOnDevice(f"np.{function.__name__}.{method} on the GPU")
    if function is np.matmul:
        return matmul(*inputs)
    dtype = kwargs.get("dtype")
    result = result_dtype(function, *inputs) if dtype is None else check_dtype(dtype)
    if function in UNARY:
        return map_one(UNARY[function], as_gpu(inputs[0]), result)
    if function in BINARY:
        return map_two(BINARY[function], *inputs, result)
    raise NotOnDevice(f"np.{function.__name__} on the GPU")


# ---- reductions --------------------------------------------------------------------------------------------
def _axes(axis, ndim) -> tuple:
    return tuple(range(ndim)) if axis is None else tuple(sorted({a % ndim for a in np.atleast_1d(axis)}))


def _rows(x: GpuArray, axes) -> tuple:
    """x with `axes` moved last, contiguous, as (rows, cols); and the kept axes' shape."""
    kept = [a for a in range(x.ndim) if a not in axes]
    moved = x.transpose(kept + list(axes))
    moved = moved.contiguous()
    cols = math.prod(x.shape[a] for a in axes)
    return moved, cols, [x.shape[a] for a in kept]


def _keep(out: GpuArray, x: GpuArray, axes, keepdims):
    shape = [1 if a in axes else size for a, size in enumerate(x.shape)] if keepdims else \
        [size for a, size in enumerate(x.shape) if a not in axes]
    return out.reshape(shape)


def reduce(code, numpy_function, x, axis=None, keepdims=False, dtype=None):
    x = as_gpu(x)
    result = check_dtype(dtype) if dtype is not None else result_dtype(numpy_function, x)
    axes = _axes(axis, x.ndim)
    moved, cols, kept = _rows(x, axes)
    rows = math.prod(kept)
    if cols == 0:
        if code != ew.SUM:
            raise ValueError("zero-size array to reduction operation which has no identity")
        return _keep(GpuArray.full(kept, 0, result), x, axes, keepdims)
    source, at, width = moved.base, moved.offset, cols
    while True:  # chunks of CHUNK columns, then their (float64) partials, each in order, by the same code
        chunks = -(-width // ew.CHUNK)
        out = GpuArray.empty((rows, chunks), result if chunks == 1 else np.float64)
        ew.reduce_rows[on(*grid1(rows * chunks))](code, source, at, rows, width, ew.CHUNK, out.base)
        if chunks == 1:
            return _keep(out, x, axes, keepdims)
        source, at, width = out.base, 0, chunks


def mean(x, axis=None, keepdims=False, dtype=None):
    x = as_gpu(x)
    count = math.prod(x.shape[a] for a in _axes(axis, x.ndim))
    total = reduce(ew.SUM, np.sum, x, axis, keepdims, np.float64)
    return map_two(ew.DIVIDE, total, float(count), result_dtype(np.mean, x) if dtype is None else dtype)


def arg_reduce(code, numpy_function, x, axis=None):
    x = as_gpu(x)
    if axis is None:
        x, axis = x.reshape(-1), 0
    moved, cols, kept = _rows(x, (axis % x.ndim,))
    out = GpuArray.empty(kept, np.int64)
    ew.arg_rows[on(*grid1(max(1, out.size)))](code, moved.base, moved.offset, out.size, cols, out.base)
    return out


# ---- products, selection, gathers ----------------------------------------------------------------------
def matmul(a, b):
    from nnctl.engine.cuda import blas

    a, b = as_gpu(a), as_gpu(b)
    dtype = check_dtype(np.result_type(a.dtype, b.dtype))
    if dtype.kind != "f":
        raise NotOnDevice("matmul of integer arrays on the GPU")
    a, b = a.astype(dtype, copy=False), b.astype(dtype, copy=False)
    a2 = a.expand_dims(0) if a.ndim == 1 else a
    b2 = b.expand_dims(1) if b.ndim == 1 else b
    if b2.ndim == 2 and a2.ndim > 2:  # a stack times one matrix: one GEMM over all the stack's rows
        flat = matmul(a2.reshape(-1, a2.shape[-1]), b2).reshape(a2.shape[:-1] + b2.shape[1:])
        return flat[..., 0] if b.ndim == 1 else flat
    batch = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
    (m, k), n = a2.shape[-2:], b2.shape[-1]
    if b2.shape[-2] != k:
        raise ValueError(f"matmul: mismatch in its core dimension ({a.shape} @ {b.shape})")
    out = GpuArray.empty(batch + (m, n), dtype)
    for index in np.ndindex(*batch):
        first = a2.broadcast_to(batch + a2.shape[-2:])[index]
        second = b2.broadcast_to(batch + b2.shape[-2:])[index]
        target = out[index].device()
        if first.size and second.size:
            if first.transpose().is_contiguous and not first.is_contiguous and second.is_contiguous:
                blas.gemm_tn(first.transpose().device(), second.device(), target)
            elif second.transpose().is_contiguous and not second.is_contiguous and first.is_contiguous:
                blas.gemm_nt(first.device(), second.transpose().device(), target)
            else:
                blas.gemm(first.device(), second.device(), target)
        else:
            ew.fill[on(*grid1(target.size))](target.reshape(target.size), 0)
    if a.ndim == 1:
        out = out.squeeze(-2)
    return out.squeeze(-1) if b.ndim == 1 else out


def where(condition, a=None, b=None):
    if a is None or b is None:
        raise NotOnDevice("np.where with one argument on the GPU")
    dtype = result_dtype(np.where, True, a, b)
    condition, a, b = as_gpu(condition, np.bool_), as_gpu(a), as_gpu(b)
    shape = np.broadcast_shapes(condition.shape, a.shape, b.shape)
    out = GpuArray.empty(shape, dtype)
    if out.size:
        ew.select[on(*grid1(out.size))](*condition.layout(shape), *a.layout(shape), *b.layout(shape), *out.layout(),
                                        padded_shape(shape), out.size)
    return out


def _host_indices(indices, size) -> np.ndarray:
    """Integer indices on the host, negatives wrapped, checked against `size` as NumPy checks them."""
    host = indices.copy_to_host() if isinstance(indices, GpuArray) else np.asarray(indices)
    if host.dtype.kind not in "iu":
        raise NotOnDevice("take/add.at on the GPU need integer indices")
    if host.size and (host.min() < -size or host.max() >= size):
        raise IndexError(f"index out of bounds for axis with size {size}")
    return np.ascontiguousarray(np.where(host < 0, host + size, host), np.int64)


def take(x, indices, axis=None):
    x = as_gpu(x)
    if axis is None:
        x, axis = x.reshape(-1), 0
    axis %= x.ndim
    rows = _host_indices(indices, x.shape[axis])
    moved = x.transpose([axis] + [a for a in range(x.ndim) if a != axis])
    moved = moved.contiguous()
    width = math.prod(moved.shape[1:])
    out = GpuArray.empty((rows.size,) + moved.shape[1:], x.dtype)
    if out.size:
        ew.gather_rows[on(*grid1(out.size))](moved.base, moved.offset, width, cuda.to_device(rows.reshape(-1)),
                                             out.base)
    out = out.reshape(rows.shape + moved.shape[1:])
    order = list(range(rows.ndim, rows.ndim + axis)) + list(range(rows.ndim)) + \
        list(range(rows.ndim + axis, out.ndim))
    return out.transpose(order)


def add_at(target, indices, values) -> None:
    """np.add.at(target, indices, values) in place: a basic index (slices and integers, which cannot repeat) as an
    in-place add; NumPy's advanced indexing (integer arrays, masks: ndindex.py) by `add_rows`."""
    parts = indices if isinstance(indices, tuple) else (indices,)
    if any(isinstance(k, (np.ndarray, list, GpuArray)) for k in parts):
        from nnctl.engine.cuda import ndindex

        ndindex.add_at(target, indices, values)
        return
    view = target[indices]
    map_two(ew.ADD, view, values, view.dtype, out=view)


def add_rows(target, rows, values) -> None:
    """target[rows[i]] += values[i] along the first axis, for each i in order (repeats add up); rows: host ints,
    checked."""
    rows = _host_indices(rows, target.shape[0])
    width = math.prod(target.shape[1:])
    values = as_gpu(values).broadcast_to(rows.shape + target.shape[1:]).astype(target.dtype, copy=False)
    work = target.contiguous()
    if rows.size and width:
        ew.scatter_add_rows[on(*grid1(width))](cuda.to_device(rows.reshape(-1)), values.flat(), width, work.flat())
    if work is not target:
        assign(target, work)


def concatenate(arrays, axis=0, **kwargs):
    arrays = [as_gpu(a) for a in arrays]
    axis %= arrays[0].ndim
    shape = list(arrays[0].shape)
    shape[axis] = sum(a.shape[axis] for a in arrays)
    out, start = GpuArray.empty(shape, np.result_type(*(a.dtype for a in arrays))), 0
    for part in arrays:
        cut = (slice(None),) * axis + (slice(start, start + part.shape[axis]),)
        assign(out[cut], part)
        start += part.shape[axis]
    return out


def split(x, indices_or_sections, axis=0):
    size = x.shape[axis % x.ndim]
    if isinstance(indices_or_sections, (int, np.integer)):
        if size % indices_or_sections:
            raise ValueError("array split does not result in an equal division")
        indices_or_sections = range(size // indices_or_sections, size, size // indices_or_sections)
    cuts = [0, *(int(c) for c in indices_or_sections), size]
    lead = (slice(None),) * (axis % x.ndim)
    return [x[lead + (slice(lo, hi),)] for lo, hi in zip(cuts, cuts[1:])]


def clip(x, a_min=None, a_max=None, **kwargs):
    out = as_gpu(x)
    if a_min is not None:
        out = np.maximum(out, a_min)
    if a_max is not None:
        out = np.minimum(out, a_max)
    return out


def _like(value):
    def like(x, dtype=None, **kwargs):
        return GpuArray.full(x.shape, value, x.dtype if dtype is None else dtype)
    return like


def _swapaxes(x, axis1, axis2):
    order = list(range(x.ndim))
    order[axis1], order[axis2] = order[axis2], order[axis1]
    return x.transpose(order)


def _moveaxis(x, source, destination):
    source = [a % x.ndim for a in np.atleast_1d(source)]
    destination = [a % x.ndim for a in np.atleast_1d(destination)]
    order = [a for a in range(x.ndim) if a not in source]
    for dest, src in sorted(zip(destination, source)):
        order.insert(dest, src)
    return x.transpose(order)


FUNCTIONS = {
    np.sum: lambda x, axis=None, dtype=None, keepdims=False, **k: reduce(ew.SUM, np.sum, x, axis, keepdims, dtype),
    np.prod: lambda x, axis=None, dtype=None, keepdims=False, **k: reduce(ew.PROD, np.prod, x, axis, keepdims,
                                                                         dtype),
    np.max: lambda x, axis=None, keepdims=False, **k: reduce(ew.MAX, np.max, x, axis, keepdims),
    np.amax: lambda x, axis=None, keepdims=False, **k: reduce(ew.MAX, np.max, x, axis, keepdims),
    np.min: lambda x, axis=None, keepdims=False, **k: reduce(ew.MIN, np.min, x, axis, keepdims),
    np.amin: lambda x, axis=None, keepdims=False, **k: reduce(ew.MIN, np.min, x, axis, keepdims),
    np.mean: lambda x, axis=None, dtype=None, keepdims=False, **k: mean(x, axis, keepdims, dtype),
    np.argmax: lambda x, axis=None, **k: arg_reduce(ew.ARGMAX, np.argmax, x, axis),
    np.argmin: lambda x, axis=None, **k: arg_reduce(ew.ARGMIN, np.argmin, x, axis),
    np.where: where, np.take: take, np.concatenate: concatenate, np.split: split, np.clip: clip,
    np.matmul: matmul, np.dot: matmul,
    np.ones_like: _like(1), np.zeros_like: _like(0), np.empty_like: _like(0),
    np.broadcast_to: lambda x, shape, **k: x.broadcast_to(shape),
    np.expand_dims: lambda x, axis: x.expand_dims(axis),
    np.squeeze: lambda x, axis=None: x.squeeze(axis),
    np.transpose: lambda x, axes=None: x.transpose(axes),
    np.swapaxes: _swapaxes, np.moveaxis: _moveaxis,
    np.reshape: lambda x, shape=None, **k: x.reshape(shape if shape is not None else k["newshape"]),
    np.ravel: lambda x, **k: x.reshape(-1),
    np.copy: lambda x, **k: x.copy(),
    np.shape: lambda x: x.shape, np.ndim: lambda x: x.ndim, np.size: lambda x, axis=None: (
        x.size if axis is None else x.shape[axis]),
}
