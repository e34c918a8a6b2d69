"""`GpuArray`: a strided N-d view of a 1-D device array that NumPy's own functions accept (through the
`__array_ufunc__` and `__array_function__` protocols), so `nnctl.ops` and its tape — and with them users' custom
layers written as `build` + `call` — run on the GPU unchanged: `np.exp(x)`, `g * b`, `x.sum(axis=0)`,
`np.matmul(a, b)` on GpuArrays launch kernels (nnctl/engine/cuda/elementwise.py) or cuBLAS GEMMs and give
GpuArrays; NumPy's advanced indexing is ndindex.py's. What it does not do (a conversion to a host value such as
`float(x)` or `np.asarray(x)`, a NumPy function it does not implement) raises a TypeError (`NotOnDevice`, or
NumPy's own), and the layer then runs by its CPU code (nn/cudaops_tape.py).

Views (transpose, broadcast_to, expand_dims, basic slicing, split) only change shape, strides and offset. New
arrays come from a pool of freed device arrays of the same size: a step allocates the same arrays each time, and
a cudaMalloc per op would cost more than the op. Reusing a freed array is safe because every kernel and copy goes
to the default stream in order.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from nnctl.engine.cuda import elementwise as ew
from nnctl.engine.cuda.launch import grid1, on

DTYPES = tuple(np.dtype(t) for t in (np.bool_, np.uint8, np.int32, np.int64, np.float32, np.float64))


class NotOnDevice(TypeError):
    """What a GpuArray cannot do on the device (the caller runs the computation on the host instead)."""


_POOL: dict = {}  # (dtype, size) → freed 1-D device arrays
_POOL_DEPTH = 16
# Every array a block holds, by the block's id. A block in a reference cycle (the tape makes them) is freed by
# the garbage collector, which runs weak-reference callbacks before `__del__`: an array reachable only through
# the block would have its memory freed by Numba's finalizer and then be put back in the pool. Held here, the
# array stays reachable, and only `__del__` lets it go (to the pool, or to Numba when the pool is full).
_HELD: dict = {}


class _Block:
    """A pooled 1-D device array, back to the pool when no view holds it."""

    __slots__ = ("data",)

    def __init__(self, data):
        self.data = data
        _HELD[id(self)] = data

    def __del__(self):
        try:
            data = _HELD.pop(id(self))
            spare = _POOL.setdefault((data.dtype.str, data.shape[0]), [])
        except (AttributeError, TypeError, KeyError):  # at interpreter exit the pool may be gone already
            return
        if len(spare) < _POOL_DEPTH:
            spare.append(data)


def _allocate(size: int, dtype) -> _Block:
    spare = _POOL.get((np.dtype(dtype).str, max(1, size)))
    return _Block(spare.pop() if spare else cuda.device_array(max(1, size), dtype))


def contiguous_strides(shape) -> tuple:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= size
    return tuple(reversed(strides))


def check_dtype(dtype):
    dtype = np.dtype(dtype)
    if dtype not in DTYPES:
        raise NotOnDevice(f"{dtype} arrays are not supported on the GPU")
    return dtype


class GpuArray:
    """`shape` and `strides` (in elements) over `base`, a 1-D device array, from element `offset`."""

    __array_priority__ = 200
    __nnctl_device__ = True  # nnctl.ops keeps such a value as it is (never through np.asarray)

    def __init__(self, base, shape, strides=None, offset=0, block=None):
        self.base, self.shape, self.offset, self._block = base, tuple(int(s) for s in shape), int(offset), block
        self.strides = contiguous_strides(self.shape) if strides is None else tuple(int(s) for s in strides)

    @classmethod
    def empty(cls, shape, dtype=np.float32) -> "GpuArray":
        shape = tuple(int(s) for s in shape)
        block = _allocate(math.prod(shape), check_dtype(dtype))
        return cls(block.data, shape, block=block)

    @classmethod
    def wrap(cls, array) -> "GpuArray":
        """A view of a C-contiguous device array (its storage stays the caller's)."""
        return cls(array.reshape(array.size), array.shape)

    @classmethod
    def full(cls, shape, value, dtype=np.float32) -> "GpuArray":
        out = cls.empty(shape, dtype)
        ew.fill[on(*grid1(out.base.shape[0]))](out.base, value)
        return out

    dtype = property(lambda self: self.base.dtype)
    ndim = property(lambda self: len(self.shape))
    size = property(lambda self: math.prod(self.shape))
    T = property(lambda self: self.transpose())

    def __len__(self):
        return self.shape[0]

    def __repr__(self):
        return f"<GpuArray shape={self.shape} dtype={self.dtype}>"

    @property
    def is_contiguous(self) -> bool:
        return all(size == 1 or stride == own
                   for size, stride, own in zip(self.shape, self.strides, contiguous_strides(self.shape)))

    def contiguous(self) -> "GpuArray":
        """This array when its elements are in row-major order, else a copy that is."""
        return self if self.is_contiguous else self.copy()

    def flat(self):
        """The elements as a 1-D device array (a view when contiguous, else a copy's)."""
        return self._device(1)

    def device(self):
        """The elements as a C-contiguous device array of this shape."""
        return self._device(self.ndim)

    def _device(self, ndim):
        source = self.contiguous()
        view = source.base[source.offset:source.offset + source.size]
        view = view.reshape(self.shape) if ndim > 1 else view
        if source._block is not None:  # the storage stays out of the pool while the view lives (a copy's
            view.nnctl_block = source._block  # block has no other holder: matmul's two operands would share it)
        return view

    def copy_to_host(self) -> np.ndarray:
        return self.flat().copy_to_host().reshape(self.shape)

    def layout(self, shape=None) -> tuple:
        """(base, offset, strides) with strides padded to MAX_DIMS over `shape` (this one's, or one it is
        broadcast to)."""
        shape = self.shape if shape is None else tuple(shape)
        lead = len(shape) - self.ndim
        strides = [0] * lead + [0 if size == 1 and full != 1 else stride for size, stride, full in
                                zip(self.shape, self.strides, shape[lead:])]
        return self.base, self.offset, _pad(strides, 0)

    # ---- views ---------------------------------------------------------------------------------------
    def view_as(self, shape, strides, offset=None) -> "GpuArray":
        return GpuArray(self.base, shape, strides, self.offset if offset is None else offset, self._block)

    def transpose(self, *axes) -> "GpuArray":
        if len(axes) == 1 and (axes[0] is None or isinstance(axes[0], (tuple, list, np.ndarray))):
            axes = axes[0]
        order = tuple(range(self.ndim))[::-1] if axes is None or not len(axes) else \
            tuple(int(a) % self.ndim for a in axes)
        return self.view_as([self.shape[a] for a in order], [self.strides[a] for a in order])

    def reshape(self, *shape) -> "GpuArray":
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        shape = list(int(s) for s in (shape if isinstance(shape, (tuple, list)) else (shape,)))
        if -1 in shape:
            known = math.prod(s for s in shape if s != -1)
            shape[shape.index(-1)] = self.size // max(known, 1)
        if math.prod(shape) != self.size:
            raise ValueError(f"cannot reshape array of size {self.size} into shape {tuple(shape)}")
        return self.contiguous().view_as(shape, None)

    def ravel(self) -> "GpuArray":
        return self.reshape(-1)

    def broadcast_to(self, shape) -> "GpuArray":
        shape = tuple(shape)
        np.broadcast_shapes(self.shape, shape)  # raises as NumPy does
        _, _, strides = self.layout(shape)
        return self.view_as(shape, strides[ew.MAX_DIMS - len(shape):])

    def expand_dims(self, axis) -> "GpuArray":
        axes = sorted(a % (self.ndim + len(np.atleast_1d(axis))) for a in np.atleast_1d(axis))
        shape, strides = list(self.shape), list(self.strides)
        for a in axes:
            shape.insert(a, 1)
            strides.insert(a, 0)
        return self.view_as(shape, strides)

    def squeeze(self, axis=None) -> "GpuArray":
        axes = {a % self.ndim for a in np.atleast_1d(axis)} if axis is not None else \
            {a for a, size in enumerate(self.shape) if size == 1}
        if any(self.shape[a] != 1 for a in axes):
            raise ValueError("cannot select an axis to squeeze out which has size not equal to one")
        keep = [a for a in range(self.ndim) if a not in axes]
        return self.view_as([self.shape[a] for a in keep], [self.strides[a] for a in keep])

    def __getitem__(self, key) -> "GpuArray":
        from nnctl.engine.cuda import ndindex

        parts = key if isinstance(key, tuple) else (key,)
        if any(isinstance(k, (np.ndarray, list, GpuArray)) for k in parts):
            return ndindex.getitem(self, key)  # NumPy's advanced indexing
        return self._basic(key)

    def _basic(self, key) -> "GpuArray":
        key = key if isinstance(key, tuple) else (key,)
        if any(not (k is None or k is Ellipsis or isinstance(k, (slice, int, np.integer))) or isinstance(k, bool)
               for k in key):
            raise NotOnDevice(f"indexing a GPU array by {type(next(k for k in key if not isinstance(k, slice)))}"
                              " is not supported")
        used = sum(k is not None and k is not Ellipsis for k in key)
        if Ellipsis in key:
            at = key.index(Ellipsis)
            key = key[:at] + (slice(None),) * (self.ndim - used) + key[at + 1:]
        else:
            key = key + (slice(None),) * (self.ndim - used)
        shape, strides, offset, axis = [], [], self.offset, 0
        for k in key:
            if k is None:
                shape.append(1)
                strides.append(0)
                continue
            size, stride = self.shape[axis], self.strides[axis]
            axis += 1
            if isinstance(k, slice):
                start, stop, step = k.indices(size)
                shape.append(len(range(start, stop, step)))
                strides.append(stride * step)
                offset += start * stride
            else:
                if not -size <= k < size:
                    raise IndexError(f"index {k} is out of bounds for axis {axis - 1} with size {size}")
                offset += (k % size) * stride
        return self.view_as(shape, strides, offset)

    def __setitem__(self, key, value):
        from nnctl.engine.cuda import ndfuncs

        ndfuncs.assign(self[key], value)

    # ---- NumPy's protocols, methods and operators --------------------------------------------------------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        from nnctl.engine.cuda import ndfuncs

        return ndfuncs.ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        from nnctl.engine.cuda import ndfuncs

        implementation = ndfuncs.FUNCTIONS.get(func)
        return NotImplemented if implementation is None else implementation(*args, **kwargs)

    def __array__(self, dtype=None, copy=None):
        raise NotOnDevice("a GPU array was asked for as a host array (np.asarray, float(), a Python branch)")

    def __bool__(self):
        raise NotOnDevice("a GPU array's value was asked for on the host (a Python `if` on it)")

    __float__ = __int__ = __index__ = __iter__ = __bool__

    def copy(self) -> "GpuArray":
        return self.astype(self.dtype)

    def astype(self, dtype, copy=True) -> "GpuArray":
        from nnctl.engine.cuda import ndfuncs

        if not copy and np.dtype(dtype) == self.dtype:
            return self
        return ndfuncs.map_one(ew.COPY, self, check_dtype(dtype))

    def sum(self, axis=None, keepdims=False, dtype=None):
        return np.sum(self, axis=axis, keepdims=keepdims, dtype=dtype)

    def mean(self, axis=None, keepdims=False):
        return np.mean(self, axis=axis, keepdims=keepdims)

    def max(self, axis=None, keepdims=False):
        return np.max(self, axis=axis, keepdims=keepdims)

    def min(self, axis=None, keepdims=False):
        return np.min(self, axis=axis, keepdims=keepdims)

    def prod(self, axis=None, keepdims=False):
        return np.prod(self, axis=axis, keepdims=keepdims)

    def argmax(self, axis=None):
        return np.argmax(self, axis=axis)

    def argmin(self, axis=None):
        return np.argmin(self, axis=axis)


def _operators():
    """GpuArray's arithmetic and comparison operators as NumPy's ufuncs (which come back through
    `__array_ufunc__`)."""
    pairs = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "truediv": np.true_divide, "pow": np.power,
             "matmul": np.matmul, "and": np.logical_and, "or": np.logical_or}
    def left(ufunc):  # an nnctl.ops Tensor on the other side records the op on its tape: let it take over
        return lambda self, other: NotImplemented if hasattr(other, "__nnctl_tensor__") else ufunc(self, other)

    for name, ufunc in pairs.items():
        setattr(GpuArray, f"__{name}__", left(ufunc))
        setattr(GpuArray, f"__r{name}__", lambda self, other, f=ufunc: f(other, self))
    for name, ufunc in {"gt": np.greater, "ge": np.greater_equal, "lt": np.less, "le": np.less_equal,
                        "eq": np.equal, "ne": np.not_equal}.items():
        setattr(GpuArray, f"__{name}__", left(ufunc))
    GpuArray.__neg__ = lambda self: np.negative(self)
    GpuArray.__pos__ = lambda self: self
    GpuArray.__abs__ = lambda self: np.abs(self)
    GpuArray.__invert__ = lambda self: np.logical_not(self)
    GpuArray.__hash__ = object.__hash__


_operators()


def _pad(values, fill) -> tuple:
    values = tuple(int(v) for v in values)
    if len(values) > ew.MAX_DIMS:
        raise NotOnDevice(f"GPU arrays have at most {ew.MAX_DIMS} axes")
    return (fill,) * (ew.MAX_DIMS - len(values)) + values


def padded_shape(shape) -> tuple:
    return _pad(shape, 1)
