"""nnctl.ops and its tape: every op's value against NumPy and its vector-Jacobian product against central
differences (float64), and the tape's rules (one gradient per weight however often it is read, zeros for a
source the target never reached, gradients of intermediate tensors, nested tapes)."""

import numpy as np
import pytest

from nnctl import ops

RNG = np.random.default_rng(5)


def _rand(*shape, low=-2.0, high=2.0):
    return RNG.uniform(low, high, shape)


# name: (function of the Tensor arguments, the NumPy arrays it takes)
CASES = {
    "add-broadcast": (lambda a, b: a + b, [_rand(3, 4), _rand(4)]),
    "subtract-broadcast": (lambda a, b: ops.subtract(a, b), [_rand(3, 1), _rand(1, 4)]),
    "multiply": (lambda a, b: a * b, [_rand(3, 4), _rand(3, 4)]),
    "divide": (lambda a, b: a / b, [_rand(3, 4), _rand(3, 4, low=0.5, high=2.0)]),
    "power": (lambda a, b: a ** b, [_rand(3, 4, low=0.5, high=2.0), _rand(3, 4)]),
    "maximum": (lambda a, b: ops.maximum(a, b), [_rand(3, 4), _rand(3, 4)]),
    "minimum": (lambda a, b: ops.minimum(a, b), [_rand(3, 4), _rand(3, 4)]),
    "negative": (lambda a: -a, [_rand(3, 4)]),
    "exp": (ops.exp, [_rand(3, 4)]),
    "log": (ops.log, [_rand(3, 4, low=0.2, high=3.0)]),
    "sqrt": (ops.sqrt, [_rand(3, 4, low=0.2, high=3.0)]),
    "square": (ops.square, [_rand(3, 4)]),
    "abs": (ops.abs, [_rand(3, 4)]),
    "tanh": (ops.tanh, [_rand(3, 4)]),
    "sigmoid": (ops.sigmoid, [_rand(3, 4, low=-30, high=30)]),
    "relu": (ops.relu, [_rand(3, 4)]),
    "clip": (lambda a: ops.clip(a, -0.5, 0.7), [_rand(3, 4)]),
    "softmax": (lambda a: ops.softmax(a, axis=-1), [_rand(3, 4)]),
    "softmax-axis0": (lambda a: ops.softmax(a, axis=0), [_rand(3, 4)]),
    "where": (lambda a, b: ops.where(np.arange(12).reshape(3, 4) % 3 == 0, a, b), [_rand(3, 4), _rand(3, 4)]),
    "cast": (lambda a: ops.cast(a, "float64") * 2, [_rand(3, 4)]),
    "sum": (lambda a: ops.sum(a), [_rand(3, 4)]),
    "sum-axis-keepdims": (lambda a: ops.sum(a, axis=1, keepdims=True) * a, [_rand(3, 4)]),
    "mean-axes": (lambda a: ops.mean(a, axis=(0, 2)), [_rand(2, 3, 4)]),
    "max": (lambda a: ops.max(a, axis=0), [_rand(3, 4)]),
    "matmul": (ops.matmul, [_rand(3, 4), _rand(4, 2)]),
    "matmul-vector-right": (ops.matmul, [_rand(3, 4), _rand(4)]),
    "matmul-vector-left": (ops.matmul, [_rand(4), _rand(4, 2)]),
    "matmul-batched": (ops.matmul, [_rand(2, 3, 4), _rand(4, 5)]),
    "reshape": (lambda a: ops.reshape(a, (4, 3)) * np.arange(12).reshape(4, 3), [_rand(3, 4)]),
    "transpose": (lambda a: ops.transpose(a, (2, 0, 1)) * np.arange(24).reshape(4, 2, 3), [_rand(2, 3, 4)]),
    "T": (lambda a: a.T @ a, [_rand(3, 4)]),
    "expand-squeeze": (lambda a: ops.squeeze(ops.expand_dims(a, 1) * 3, 1), [_rand(3, 4)]),
    "concatenate": (lambda a, b: ops.concatenate([a, b, a], axis=1) * np.arange(30).reshape(3, 10),
                    [_rand(3, 4), _rand(3, 2)]),
    "take-repeats": (lambda a: ops.take(a, np.array([[0, 2], [2, 2]]), axis=1), [_rand(3, 4)]),
    "take-flat": (lambda a: ops.take(a, np.array([1, 1, 5])), [_rand(3, 4)]),
    "slicing": (lambda a: a[1:, ::2] * a[0, 1], [_rand(3, 4)]),
    "index-array": (lambda a: a[:, np.array([2, 0, 2])] * a[1, 3], [_rand(3, 4)]),
    "stop-gradient": (lambda a, b: a * ops.stop_gradient(b), [_rand(3, 4), _rand(3, 4)]),
    # nnctl/ops/more.py
    "dot": (ops.dot, [_rand(3, 4), _rand(4, 2)]),
    "min": (lambda a: ops.min(a, axis=1), [_rand(3, 4)]),
    "var": (lambda a: ops.var(a, axis=0), [_rand(3, 4)]),
    "std": (lambda a: ops.std(a, axis=-1, keepdims=True) * a, [_rand(3, 4)]),
    "prod": (lambda a: ops.prod(a, axis=1), [_rand(3, 4, low=0.5, high=2.0)]),
    "log1p": (ops.log1p, [_rand(3, 4, low=-0.5, high=3.0)]),
    "expm1": (ops.expm1, [_rand(3, 4)]),
    "softplus": (ops.softplus, [_rand(3, 4, low=-30, high=30)]),
    "leaky-relu": (lambda a: ops.leaky_relu(a, 0.1), [_rand(3, 4)]),
    "elu": (ops.elu, [_rand(3, 4)]),
    "log-softmax": (lambda a: ops.log_softmax(a, axis=-1), [_rand(3, 4)]),
    "norm": (lambda a: ops.norm(a, axis=1), [_rand(3, 4)]),
}
NUMPY = {
    "add-broadcast": lambda a, b: a + b, "multiply": np.multiply, "exp": np.exp, "tanh": np.tanh,
    "sigmoid": lambda a: 1 / (1 + np.exp(-a)), "matmul-batched": np.matmul, "max": lambda a: a.max(axis=0),
    "softmax": lambda a: np.exp(a) / np.exp(a).sum(axis=-1, keepdims=True), "take-flat": lambda a: a.ravel()[[1, 1, 5]],
    "mean-axes": lambda a: a.mean(axis=(0, 2)), "clip": lambda a: np.clip(a, -0.5, 0.7),
    "min": lambda a: a.min(axis=1), "var": lambda a: a.var(axis=0), "prod": lambda a: a.prod(axis=1),
    "log1p": np.log1p, "softplus": lambda a: np.log1p(np.exp(a)), "elu": lambda a: np.where(a > 0, a, np.expm1(a)),
    "log-softmax": lambda a: a - np.log(np.exp(a).sum(axis=-1, keepdims=True)),
    "norm": lambda a: np.sqrt((a * a).sum(axis=1)), "leaky-relu": lambda a: np.where(a > 0, a, 0.1 * a),
}


def _loss(function, arrays, weights):
    """Σ w·f(arrays) and its tape gradient w.r.t. every input."""
    tensors = [ops.Variable(a, dtype="float64") for a in arrays]
    with ops.GradientTape() as tape:
        out = function(*tensors)
    total = float(np.sum(weights * out.value))
    return total, tape.gradient(out, tensors, output_gradient=weights), out.value


@pytest.mark.parametrize("name", list(CASES))
def test_each_op_matches_central_differences(name):
    function, arrays = CASES[name]
    weights = RNG.standard_normal(_loss(function, arrays, 1.0)[2].shape)
    _, analytic, value = _loss(function, arrays, weights)
    if name in NUMPY:
        np.testing.assert_allclose(value, NUMPY[name](*arrays), rtol=1e-12)
    for array, grad in zip(arrays, analytic):
        numeric = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            keep = array[index]
            array[index] = keep + 1e-6
            up = _loss(function, arrays, weights)[0]
            array[index] = keep - 1e-6
            numeric[index] = (up - _loss(function, arrays, weights)[0]) / 2e-6
            array[index] = keep
        if name == "stop-gradient" and array is arrays[1]:
            numeric[...] = 0  # the op says: treat b as a constant
        assert grad.shape == array.shape
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8, err_msg=name)


def test_a_weight_read_twice_gets_one_summed_gradient_and_an_unused_source_gets_zeros():
    w, unused = ops.Variable([1.0, 2.0], "float64"), ops.Variable([5.0], "float64")
    with ops.GradientTape() as tape:
        y = ops.sum(w * w + 3 * w)
    dw, du = tape.gradient(y, [w, unused])
    np.testing.assert_array_equal(dw, [5.0, 7.0])
    np.testing.assert_array_equal(du, [0.0])


def test_gradients_of_intermediate_tensors_and_nested_tapes():
    x = ops.Variable([0.5, -1.0], "float64")
    with ops.GradientTape() as outer:
        h = ops.tanh(x)
        with ops.GradientTape() as inner:  # records only what runs inside it, as TensorFlow's
            y = ops.sum(ops.square(h))
    np.testing.assert_allclose(inner.gradient(y, h), 2 * h.value)
    np.testing.assert_array_equal(inner.gradient(y, x), [0.0, 0.0])  # tanh ran before the inner tape
    t = np.tanh([0.5, -1.0])
    np.testing.assert_allclose(outer.gradient(y, x), 2 * t * (1 - t * t))
    np.testing.assert_allclose(outer.gradient(y, h), 2 * h.value)


def test_ties_take_documented_routes():
    a, b = ops.Variable([1.0, 2.0], "float64"), ops.Variable([1.0, 3.0], "float64")
    with ops.GradientTape() as tape:
        y = ops.maximum(a, b)
    np.testing.assert_array_equal(tape.gradient(y, [a, b]), [[1.0, 0.0], [0.0, 1.0]])  # a tie: the first
    m = ops.Variable([[2.0, 2.0, 1.0]], "float64")
    with ops.GradientTape() as tape:
        y = ops.max(m)
    np.testing.assert_array_equal(tape.gradient(y, m), [[0.5, 0.5, 0.0]])  # a reduction: split evenly


def test_variables_update_in_place_and_nothing_is_recorded_without_a_tape():
    v = ops.Variable([1.0, 2.0])
    v.assign_sub(np.array([0.5, 0.5]))
    v.assign_add(ops.Tensor([1.0, 0.0]))
    np.testing.assert_array_equal(v.numpy(), [1.5, 1.5])
    assert (v * 2).numpy().tolist() == [3.0, 3.0] and v.dtype == np.float32


def test_values_only_ops_are_not_differentiated():
    x = ops.Variable([[-1.5, 2.0, 0.0]], "float64")
    with ops.GradientTape() as tape:
        y = ops.sum(x * ops.sign(x)) + ops.sum(ops.ones_like(x)) * 0
    np.testing.assert_array_equal(tape.gradient(y, x), [[-1.0, 1.0, 0.0]])  # sign is a constant here
    assert ops.argmax(x).value.tolist() == [1] and ops.argmin(x, axis=1).value.tolist() == [0]
    assert ops.shape(x) == (1, 3) and ops.zeros_like(x).value.sum() == 0
    assert ops.convert_to_tensor([1, 2], dtype="float32").dtype == np.float32
    assert (x > 0).value.tolist() == [[False, True, False]] and ops.equal(x, 0.0).value.tolist() == [[0, 0, 1]]


def test_python_numbers_keep_a_float32_tensor_float32():
    """As NumPy treats a Python number: float32 * 2.0 stays float32 (a layer's arithmetic must not upcast)."""
    x = ops.Variable([1.0, -2.0])
    with ops.GradientTape() as tape:
        parts = [x * 2.0, x + 1, 2.0 - x, x ** 2, x / 3, ops.where(np.array([True, False]), x, 0.0)]
        y = ops.sum(ops.concatenate(parts))
    assert all(part.dtype == np.float32 for part in parts) and y.dtype == np.float32
    grad = tape.gradient(y, x)
    assert grad.dtype == np.float32
    np.testing.assert_allclose(grad, [2 + 1 - 1 + 2 * 1 + 1 / 3 + 1, 2 + 1 - 1 + 2 * -2 + 1 / 3 + 0], rtol=1e-6)
