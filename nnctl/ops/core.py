"""`nnctl.ops`: the operations a custom layer's `call` is written with (Keras 3's `keras.ops` names), and the
reverse-mode tape that gives such a layer its backward pass.

Each op computes its value with NumPy and, while a tape records, notes a hand-written vector-Jacobian product
(VJP); `Tape.gradient` runs them in reverse. Built-in layers keep their fused backward; this is for users':

    class SimpleDense(Layer):
        def __init__(self, units, activation=None, **kwargs):
            super().__init__(**kwargs)
            self.units, self.activation = units, activation
        def build(self, input_shape):
            self.W = self.add_weight(shape=(input_shape[-1], self.units), initializer="random_normal")
            self.b = self.add_weight(shape=(self.units,), initializer="zeros")
        def call(self, inputs):
            y = ops.matmul(inputs, self.W) + self.b
            return self.activation(y) if self.activation is not None else y

and the low-level loop of the book's linear classifier:

    W, b = ops.Variable(w0), ops.Variable(np.zeros(1))
    with ops.GradientTape() as tape:
        loss = ops.mean(ops.square(targets - (ops.matmul(inputs, W) + b)))
    grad_W, grad_b = tape.gradient(loss, [W, b])
"""

from __future__ import annotations

import numpy as np

_RECORDING: list["GradientTape"] = []  # the tapes now recording, innermost last


class Tensor:
    """An array an op produced or read (`.value`); arithmetic operators are ops, so they are recorded too."""

    __array_priority__ = 100  # NumPy defers `array + tensor` to Tensor.__radd__
    __nnctl_tensor__ = True  # and so does a GPU array (nnctl/engine/cuda/ndarray.py)

    def __init__(self, value, source=None):
        self.value = value if _on_device(value) else np.asarray(value)
        self.source = source  # the layer weight (Param) this leaf reads, if any
        self.weak = None  # a Python number this tensor stands for: it keeps the other operand's dtype

    shape = property(lambda self: self.value.shape)
    dtype = property(lambda self: self.value.dtype)
    ndim = property(lambda self: self.value.ndim)
    T = property(lambda self: transpose(self))

    def numpy(self) -> np.ndarray:
        return self.value

    def __repr__(self):
        return f"<Tensor shape={self.shape} dtype={self.dtype}>"

    __add__ = lambda self, other: add(self, other)  # noqa: E731
    __radd__ = lambda self, other: add(other, self)  # noqa: E731
    __sub__ = lambda self, other: subtract(self, other)  # noqa: E731
    __rsub__ = lambda self, other: subtract(other, self)  # noqa: E731
    __mul__ = lambda self, other: multiply(self, other)  # noqa: E731
    __rmul__ = lambda self, other: multiply(other, self)  # noqa: E731
    __truediv__ = lambda self, other: divide(self, other)  # noqa: E731
    __rtruediv__ = lambda self, other: divide(other, self)  # noqa: E731
    __matmul__ = lambda self, other: matmul(self, other)  # noqa: E731
    __rmatmul__ = lambda self, other: matmul(other, self)  # noqa: E731
    __pow__ = lambda self, other: power(self, other)  # noqa: E731
    __neg__ = lambda self: negative(self)  # noqa: E731
    __getitem__ = lambda self, key: _slice(self, key)  # noqa: E731
    __gt__ = lambda self, other: greater(self, other)  # noqa: E731
    __ge__ = lambda self, other: greater_equal(self, other)  # noqa: E731
    __lt__ = lambda self, other: less(self, other)  # noqa: E731
    __le__ = lambda self, other: less_equal(self, other)  # noqa: E731


class Variable(Tensor):
    """A leaf a GradientTape differentiates against (`tf.Variable`), updated in place with `assign_sub` etc."""

    def __init__(self, value, dtype="float32"):
        super().__init__(np.array(value, dtype=dtype))

    def assign(self, value):
        self.value[...] = _value(value)

    def assign_add(self, value):
        self.value += _value(value)

    def assign_sub(self, value):
        self.value -= _value(value)


class GradientTape:
    """Records the ops run inside `with` and differentiates them (`tf.GradientTape`): `gradient(target,
    sources)` gives d target / d source for each source (a Variable, a Param, or a Tensor the ops read)."""

    def __init__(self):
        self.records = []  # (output, inputs, vjp) in the order the ops ran

    def __enter__(self):
        _RECORDING.append(self)
        return self

    def __exit__(self, *exc):
        _RECORDING.remove(self)
        return False

    def gradient(self, target, sources, output_gradient=None):
        """d target / d each source (zeros where a source did not reach the target); `output_gradient`, the
        gradient flowing into target (default: ones, i.e. the gradient of its sum)."""
        single = not isinstance(sources, (list, tuple))
        seed = np.ones_like(target.value) if output_gradient is None else _copy(
            np.broadcast_to(_asarray(output_gradient, target.dtype), target.shape))
        grads = {id(target): seed}
        for output, inputs, vjp in reversed(self.records):
            g = grads.get(id(output))
            if g is None:
                continue
            for tensor, part in zip(inputs, vjp(g)):
                if isinstance(tensor, Tensor) and part is not None:
                    key = id(tensor)
                    grads[key] = part if key not in grads else grads[key] + part
        found = []
        for source in ([sources] if single else sources):
            tensor = _tensor(source)
            g = grads.get(id(tensor))
            found.append(np.zeros_like(tensor.value) if g is None else g)
        return found[0] if single else found


def _on_device(value) -> bool:
    """Whether `value` is a GPU array (nnctl/engine/cuda/ndarray.py): the ops run on it through NumPy's own
    functions, which it implements, and it is never converted to a host array."""
    return getattr(type(value), "__nnctl_device__", False)


def _asarray(x, dtype=None):
    if _on_device(x):
        return x if dtype is None else x.astype(dtype, copy=False)
    return np.asarray(x, dtype)


def _copy(x):
    return x.copy() if _on_device(x) else np.array(x)


def _value(x):
    return x.value if isinstance(x, Tensor) else _asarray(x.value if hasattr(x, "grad") else x)


def _tensor(x):
    """x as a Tensor. A layer weight (Param) is read through one leaf Tensor kept on it, over its value, so
    every use of the weight, on any tape, adds into the same gradient (a Variable is its own leaf)."""
    if isinstance(x, Tensor):
        return x
    if hasattr(x, "grad"):  # a Param
        leaf = getattr(x, "_leaf", None)
        if leaf is None or leaf.value is not x.value:
            leaf = x._leaf = Tensor(x.value, x)
        return leaf
    tensor = Tensor(_value(x))
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        tensor.weak = x  # as NumPy treats a Python number: float32 * 2.0 stays float32
    return tensor


def _raw(tensor):
    return tensor.value if tensor.weak is None else tensor.weak


def _op(value, inputs, vjp) -> Tensor:
    """The op's output; records (output, inputs, vjp) on every recording tape."""
    out = Tensor(value)
    for tape in _RECORDING:
        tape.records.append((out, inputs, vjp))
    return out


def _unbroadcast(g, shape):
    """The gradient of a broadcast operand: g summed over the axes broadcasting added or stretched."""
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and g.shape[axis] != 1:
            g = g.sum(axis=axis, keepdims=True)
    return g


def _binary(a, b, value, da, db):
    """A two-operand op; a Python number operand (a fresh constant no one asks the gradient of) gets none."""
    a, b = _tensor(a), _tensor(b)
    av, bv = _raw(a), _raw(b)
    out = value(av, bv)
    return _op(out, (a, b), lambda g: (
        None if a.weak is not None else _unbroadcast(_asarray(da(g, av, bv, out)), a.shape),
        None if b.weak is not None else _unbroadcast(_asarray(db(g, av, bv, out)), b.shape)))


def _unary(x, value, dx):
    x = _tensor(x)
    out = value(x.value)
    return _op(out, (x,), lambda g: (dx(g, x.value, out),))


# ---- element-wise ------------------------------------------------------------------------------------------
def add(a, b):
    return _binary(a, b, np.add, lambda g, a, b, y: g, lambda g, a, b, y: g)


def subtract(a, b):
    return _binary(a, b, np.subtract, lambda g, a, b, y: g, lambda g, a, b, y: -g)


def multiply(a, b):
    return _binary(a, b, np.multiply, lambda g, a, b, y: g * b, lambda g, a, b, y: g * a)


def divide(a, b):
    return _binary(a, b, np.divide, lambda g, a, b, y: g / b, lambda g, a, b, y: -g * y / b)


def power(a, b):
    return _binary(a, b, np.power, lambda g, a, b, y: g * b * np.power(a, b - 1),
                   lambda g, a, b, y: g * y * np.log(np.where(a > 0, a, 1)))


def maximum(a, b):
    """The gradient goes to `a` where a ≥ b (ties: the first operand), else to `b`."""
    return _binary(a, b, np.maximum, lambda g, a, b, y: g * (a >= b), lambda g, a, b, y: g * (a < b))


def minimum(a, b):
    return _binary(a, b, np.minimum, lambda g, a, b, y: g * (a <= b), lambda g, a, b, y: g * (a > b))


def negative(x):
    return _unary(x, np.negative, lambda g, x, y: -g)


def exp(x):
    return _unary(x, np.exp, lambda g, x, y: g * y)


def log(x):
    return _unary(x, np.log, lambda g, x, y: g / x)


def sqrt(x):
    return _unary(x, np.sqrt, lambda g, x, y: g / (2 * y))


def square(x):
    return _unary(x, np.square, lambda g, x, y: 2 * g * x)


def abs(x):  # noqa: A001 (keras.ops.abs)
    return _unary(x, np.abs, lambda g, x, y: g * np.sign(x))


def tanh(x):
    return _unary(x, np.tanh, lambda g, x, y: g * (1 - y * y))


def sigmoid(x):
    def value(v):
        e = np.exp(-np.abs(v))
        return np.where(v >= 0, 1 / (1 + e), e / (1 + e)).astype(v.dtype, copy=False)
    return _unary(x, value, lambda g, x, y: g * y * (1 - y))


def relu(x):
    return _unary(x, lambda v: np.maximum(v, 0), lambda g, x, y: g * (x > 0))


def clip(x, x_min, x_max):
    """The gradient passes where x_min ≤ x ≤ x_max."""
    return _unary(x, lambda v: np.clip(v, x_min, x_max), lambda g, x, y: g * ((x >= x_min) & (x <= x_max)))


def softmax(x, axis=-1):
    def value(v):
        e = np.exp(v - v.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)
    return _unary(x, value, lambda g, x, y: y * (g - (g * y).sum(axis=axis, keepdims=True)))


def where(condition, a, b):
    """a where `condition` (not differentiated), else b."""
    condition = _asarray(_value(condition), bool)
    return _binary(a, b, lambda a, b: np.where(condition, a, b), lambda g, a, b, y: np.where(condition, g, 0),
                   lambda g, a, b, y: np.where(condition, 0, g))


def stop_gradient(x):
    return Tensor(_value(x))


def _compare(numpy_op):  # a boolean Tensor, not differentiated (as in Keras)
    return lambda a, b: Tensor(numpy_op(_value(a), _value(b)))


greater, greater_equal, less, less_equal, equal, not_equal = map(_compare, (
    np.greater, np.greater_equal, np.less, np.less_equal, np.equal, np.not_equal))


def cast(x, dtype):
    x = _tensor(x)
    return _op(x.value.astype(dtype), (x,), lambda g: (g.astype(x.dtype),))


# ---- shapes and products -------------------------------------------------------------------------------------
def matmul(a, b):
    """a @ b for 1-D or 2-D operands, or stacks of matrices (leading axes broadcast)."""
    a, b = _tensor(a), _tensor(b)
    out = np.matmul(a.value, b.value)

    def vjp(g):
        av, bv = a.value, b.value  # a 1-D operand as a (1, k) row or a (k, 1) column, as matmul treats it
        a1, b1 = (av[None, :] if av.ndim == 1 else av), (bv[:, None] if bv.ndim == 1 else bv)
        g1 = g[..., None] if bv.ndim == 1 else g
        g1 = g1[..., None, :] if av.ndim == 1 else g1
        da, db = np.matmul(g1, np.swapaxes(b1, -1, -2)), np.matmul(np.swapaxes(a1, -1, -2), g1)
        return (_unbroadcast(da[..., 0, :] if av.ndim == 1 else da, av.shape),
                _unbroadcast(db[..., 0] if bv.ndim == 1 else db, bv.shape))
    return _op(out, (a, b), vjp)


def reshape(x, shape):
    x = _tensor(x)
    return _op(x.value.reshape(shape), (x,), lambda g: (g.reshape(x.shape),))


def transpose(x, axes=None):
    x = _tensor(x)
    inverse = None if axes is None else np.argsort(axes)
    return _op(np.transpose(x.value, axes), (x,), lambda g: (np.transpose(g, inverse),))


def expand_dims(x, axis):
    x = _tensor(x)
    return _op(np.expand_dims(x.value, axis), (x,), lambda g: (g.reshape(x.shape),))


def squeeze(x, axis=None):
    x = _tensor(x)
    return _op(np.squeeze(x.value, axis), (x,), lambda g: (g.reshape(x.shape),))


def concatenate(xs, axis=0):
    tensors = tuple(_tensor(x) for x in xs)
    cuts = np.cumsum([t.shape[axis] for t in tensors])[:-1]
    return _op(np.concatenate([t.value for t in tensors], axis=axis), tensors,
               lambda g: tuple(np.split(g, cuts, axis=axis)))


def take(x, indices, axis=None):
    """x's entries at integer `indices` (not differentiated) along `axis`; repeated indices add up."""
    x, indices = _tensor(x), _asarray(_value(indices))

    def vjp(g):
        dx = np.zeros_like(x.value)
        if axis is None:
            np.add.at(dx.reshape(-1), indices, g)
        else:  # g: x's axes before `axis`, the index axes, x's axes after it
            at = axis % x.ndim
            moved = np.moveaxis(g, list(range(at, at + indices.ndim)), list(range(indices.ndim)))
            np.add.at(np.moveaxis(dx, at, 0), indices, moved)
        return (dx,)
    return _op(np.take(x.value, indices, axis=axis), (x,), vjp)


def _slice(x, key):
    x = _tensor(x)
    key = tuple(_value(k) if isinstance(k, Tensor) else k for k in key) if isinstance(key, tuple) else key

    def vjp(g):
        dx = np.zeros_like(x.value)
        np.add.at(dx, key, g)
        return (dx,)
    return _op(x.value[key], (x,), vjp)


def convert_to_numpy(x) -> np.ndarray:
    return _value(x)


__all__ = ["GradientTape", "Tensor", "Variable", "abs", "add", "cast", "clip", "concatenate", "convert_to_numpy",
           "divide", "equal", "exp", "expand_dims", "greater", "greater_equal", "less", "less_equal", "log", "matmul",
           "maximum", "minimum", "multiply", "negative", "not_equal", "power", "relu", "reshape", "sigmoid",
           "softmax", "sqrt", "square", "squeeze", "stop_gradient", "subtract", "take", "tanh", "transpose", "where"]
