"""Merge layers: forward against NumPy, central-difference input gradients in float64, the Maximum/Minimum tie
rule, Keras's output shapes, shape and argument errors, masks, dtypes, config round trips, and PyTorch parity
(skipped without torch)."""

import numpy as np
import pytest

from nnctl.errors import ArgumentError, ShapeError
from nnctl.nn.layers import Dense
from nnctl.nn.layers.merge import Add, Average, Concatenate, Dot, Maximum, Merge, Minimum, Multiply, Subtract

RNG = np.random.default_rng(29)


def _built(layer, shapes):
    layer.build(shapes)
    return layer


def _inputs(shapes, batch=3, dtype=np.float64):
    return [RNG.standard_normal((batch,) + tuple(shape)).astype(dtype) for shape in shapes]


def _distinct_inputs(count, shape, batch=3):
    """Inputs with no two values within 0.01 of each other: Maximum/Minimum are smooth around each."""
    size = count * batch * int(np.prod(shape))
    values = RNG.permutation(size) * 0.01 - size * 0.005
    return list(values.reshape((count, batch) + tuple(shape)))


def _numeric_grads(layer, xs, weights, steps):
    """∂(Σ w·y)/∂x for every entry of every input, by central differences (one step size per input)."""
    grads = []
    for x, h in zip(xs, steps):
        grad = np.zeros_like(x)
        flat, flat_grad = x.reshape(-1), grad.reshape(-1)
        for i in range(flat.size):
            keep = flat[i]
            flat[i] = keep + h
            up = np.sum(weights * layer.forward(xs, training=True))
            flat[i] = keep - h
            down = np.sum(weights * layer.forward(xs, training=True))
            flat[i] = keep
            flat_grad[i] = (up - down) / (2 * h)
        grads.append(grad)
    return grads


def _check_grads(layer, xs, steps=None):
    y = layer.forward(xs, training=True)
    weights = RNG.standard_normal(y.shape)
    analytic = layer.backward(weights)
    numeric = _numeric_grads(layer, xs, weights, steps or [1e-6] * len(xs))
    assert len(analytic) == len(xs)
    for got, want, x in zip(analytic, numeric, xs):
        assert got.shape == x.shape and got.dtype == np.float64
        assert np.abs(want).max() > 1e-6, "a gradient check on all-zero gradients proves nothing"
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)


# ---- element-wise merges: forward against NumPy, gradients by central differences ---------------------

ELEMENTWISE = [
    (Add, lambda xs: sum(xs)),
    (Subtract, lambda xs: xs[0] - xs[1]),
    (Multiply, lambda xs: np.prod(np.stack(xs), axis=0)),
    (Average, lambda xs: np.mean(np.stack(xs), axis=0)),
    (Maximum, lambda xs: np.max(np.stack(xs), axis=0)),
    (Minimum, lambda xs: np.min(np.stack(xs), axis=0)),
]
SHAPES = [(5,), (3, 4), (2, 3, 2)]  # ranks 2 to 4 with the batch
CASES = [(cls, oracle, shape, count) for cls, oracle in ELEMENTWISE for shape in SHAPES
         for count in ((2,) if cls is Subtract else (2, 3))]
IDS = [f"{cls.type_name}-{len(shape) + 1}d-{count}in" for cls, _, shape, count in CASES]


@pytest.mark.parametrize("cls, oracle, shape, count", CASES, ids=IDS)
def test_elementwise_forward_matches_numpy(cls, oracle, shape, count):
    layer = _built(cls(), [shape] * count)
    assert layer.output_shape == shape
    xs = _inputs([shape] * count, batch=4)
    np.testing.assert_allclose(layer.forward(xs, training=False), oracle(xs), rtol=1e-12)


@pytest.mark.parametrize("cls, oracle, shape, count", CASES, ids=IDS)
def test_elementwise_input_gradients_by_central_differences(cls, oracle, shape, count):
    layer = _built(cls(), [shape] * count)
    xs = _distinct_inputs(count, shape) if cls in (Maximum, Minimum) else _inputs([shape] * count)
    _check_grads(layer, xs)


def test_multiply_gradients_with_zeros_in_the_inputs():
    layer = _built(Multiply(), [(4,)] * 3)
    xs = _inputs([(4,)] * 3, batch=2)
    xs[1][0, 1] = xs[2][1, 2] = 0.0  # a product of the others, never a division by the input
    _check_grads(layer, xs)


# ---- Maximum/Minimum: ties send the gradient to the first input holding the value ---------------------

def test_maximum_tie_sends_the_gradient_to_the_first_input():
    layer = _built(Maximum(), [(4,)] * 3)
    xs = [np.array([[1.0, 5.0, 2.0, 0.0]]), np.array([[1.0, 3.0, 4.0, 7.0]]), np.array([[0.0, 5.0, 4.0, 7.0]])]
    np.testing.assert_array_equal(layer.forward(xs, training=True), [[1.0, 5.0, 4.0, 7.0]])
    dx = layer.backward(np.array([[10.0, 20.0, 30.0, 40.0]]))
    np.testing.assert_array_equal(dx[0], [[10.0, 20.0, 0.0, 0.0]])  # ties with the 2nd and with the 3rd
    np.testing.assert_array_equal(dx[1], [[0.0, 0.0, 30.0, 40.0]])  # ties with the 3rd
    np.testing.assert_array_equal(dx[2], [[0.0, 0.0, 0.0, 0.0]])
    # the whole gradient goes somewhere, once (PyTorch would give 10 and 10, halves, at a two-way tie)
    np.testing.assert_array_equal(sum(dx), [[10.0, 20.0, 30.0, 40.0]])


def test_minimum_tie_sends_the_gradient_to_the_first_input():
    layer = _built(Minimum(), [(3,)] * 2)
    xs = [np.array([[1.0, 2.0, -3.0]]), np.array([[1.0, 0.0, -3.0]])]
    np.testing.assert_array_equal(layer.forward(xs, training=True), [[1.0, 0.0, -3.0]])
    dx = layer.backward(np.array([[1.0, 2.0, 3.0]]))
    np.testing.assert_array_equal(dx[0], [[1.0, 0.0, 3.0]])
    np.testing.assert_array_equal(dx[1], [[0.0, 2.0, 0.0]])


# ---- Concatenate ------------------------------------------------------------------------------------------

CONCATENATIONS = [
    ([(3,), (5,)], -1, (8,)),
    ([(3,), (5,), (1,)], 1, (9,)),
    ([(2, 4), (3, 4)], 1, (5, 4)),
    ([(2, 4), (3, 4)], -2, (5, 4)),
    ([(2, 4), (2, 1)], -1, (2, 5)),
    ([(2, 4), (2, 3)], 2, (2, 7)),
    ([(2, 3, 2), (2, 1, 2), (2, 2, 2)], 2, (2, 6, 2)),
    ([(2, 3, 2), (2, 3, 1)], -1, (2, 3, 3)),
    ([(2, 3, 2), (1, 3, 2)], -3, (3, 3, 2)),
]
CONCAT_IDS = [f"{len(shapes[0]) + 1}d-axis{axis}-{len(shapes)}in" for shapes, axis, _ in CONCATENATIONS]


@pytest.mark.parametrize("shapes, axis, expected", CONCATENATIONS, ids=CONCAT_IDS)
def test_concatenate_matches_numpy_and_its_gradients(shapes, axis, expected):
    layer = _built(Concatenate(axis=axis), shapes)
    assert layer.output_shape == expected
    xs = _inputs(shapes)
    y = layer.forward(xs, training=True)
    np.testing.assert_array_equal(y, np.concatenate(xs, axis=axis))  # NumPy counts with the batch, as Keras
    assert y.shape == (3,) + expected
    _check_grads(layer, xs)


# ---- Dot ----------------------------------------------------------------------------------------------

def _unit(x, axis):
    return x / np.sqrt(np.maximum(np.sum(x * x, axis=axis, keepdims=True), 1e-12))


# (shapes, axes, Keras's output shape, the same product as an einsum over the batch `b`)
DOTS = [
    ([(4,), (4,)], 1, (1,), "bd,bd->b"),
    ([(4,), (4,)], -1, (1,), "bd,bd->b"),
    ([(4,), (4,)], [1, -1], (1,), "bd,bd->b"),
    ([(3, 4), (2, 4)], [2, 2], (3, 2), "bnd,bmd->bnm"),
    ([(3, 4), (2, 4)], -1, (3, 2), "bnd,bmd->bnm"),
    ([(4, 3), (4, 2)], 1, (3, 2), "bdn,bdm->bnm"),
    ([(3, 4), (4, 2)], [2, 1], (3, 2), "bnd,bdm->bnm"),
    ([(3, 4), (4,)], [2, 1], (3,), "bnd,bd->bn"),
    ([(4, 3), (4,)], [1, -1], (3,), "bdn,bd->bn"),
    ([(4,), (3, 4)], [1, 2], (3,), "bd,bnd->bn"),
    ([(4,), (4, 2)], [-1, -2], (2,), "bd,bdm->bm"),
]
DOT_IDS = [f"{a}x{b}-axes{axes}".replace(" ", "") for (a, b), axes, _, _ in DOTS]


@pytest.mark.parametrize("normalize", [False, True], ids=["plain", "normalize"])
@pytest.mark.parametrize("shapes, axes, expected, einsum", DOTS, ids=DOT_IDS)
def test_dot_matches_numpy_with_keras_output_shapes(shapes, axes, expected, einsum, normalize):
    layer = _built(Dot(axes=axes, normalize=normalize), shapes)
    assert layer.output_shape == expected
    first, second = xs = _inputs(shapes)
    if normalize:  # the dot axes are where the einsum spells `d`
        first = _unit(first, einsum.split(",")[0].index("d"))
        second = _unit(second, einsum.split(",")[1].split("-")[0].index("d"))
    want = np.einsum(einsum, first, second).reshape((3,) + expected)
    np.testing.assert_allclose(layer.forward(xs, training=False), want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("normalize", [False, True], ids=["plain", "normalize"])
@pytest.mark.parametrize("shapes, axes, expected, einsum", DOTS, ids=DOT_IDS)
def test_dot_input_gradients_by_central_differences(shapes, axes, expected, einsum, normalize):
    layer = _built(Dot(axes=axes, normalize=normalize), shapes)
    _check_grads(layer, _inputs(shapes))


def test_dot_normalize_with_the_clamp_on_is_a_plain_scaling():
    layer = _built(Dot(axes=1, normalize=True), [(3,), (3,)])
    xs = [RNG.standard_normal((2, 3)) * 1e-8, RNG.standard_normal((2, 3))]  # Σx² ≈ 1e-16 < 1e-12
    np.testing.assert_allclose(layer.forward(xs, training=False)[:, 0],
                               np.sum(xs[0] * 1e6 * _unit(xs[1], 1), axis=1), rtol=1e-12)
    _check_grads(layer, xs, steps=[1e-11, 1e-6])  # a step small enough to stay under the clamp


def test_cosine_similarity_of_parallel_and_orthogonal_vectors():
    layer = _built(Dot(axes=-1, normalize=True), [(2,), (2,)])
    y = layer.forward([np.array([[3.0, 0.0], [1.0, 1.0]]), np.array([[5.0, 0.0], [1.0, -1.0]])], training=False)
    np.testing.assert_allclose(y, [[1.0], [0.0]], atol=1e-15)


# ---- dtypes, the contract, masks ------------------------------------------------------------------------

ALL_LAYERS = [(Add(), [(3, 2)] * 2), (Subtract(), [(3, 2)] * 2), (Multiply(), [(3, 2)] * 3),
              (Average(), [(3, 2)] * 2), (Maximum(), [(3, 2)] * 2), (Minimum(), [(3, 2)] * 3),
              (Concatenate(axis=1), [(3, 2), (1, 2)]), (Dot(axes=2), [(3, 2), (4, 2)]),
              (Dot(axes=[2, 1], normalize=True), [(3, 2), (2,)])]
ALL_IDS = [layer.type_name + str(i) for i, (layer, _) in enumerate(ALL_LAYERS)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layer, shapes", ALL_LAYERS, ids=ALL_IDS)
def test_outputs_and_gradients_keep_the_inputs_dtype(layer, shapes, dtype):
    _built(layer, shapes)
    y = layer.forward(_inputs(shapes, dtype=dtype), training=True)
    assert y.dtype == dtype and y.shape == (3,) + layer.output_shape
    grads = layer.backward(np.ones_like(y))
    assert [g.dtype for g in grads] == [dtype] * len(shapes)
    assert [g.shape[1:] for g in grads] == [tuple(s) for s in shapes]
    assert len({id(g) for g in grads}) == len(grads), "each input gets its own gradient array"


def test_mixed_dtypes_are_refused_not_upcast():
    layer = _built(Add(), [(2,), (2,)])
    with pytest.raises(TypeError, match="one dtype"):
        layer.forward([np.ones((1, 2), np.float32), np.ones((1, 2), np.float64)], training=False)


def test_output_shapes_need_no_build():  # the functional API asks before building
    assert Dot(axes=2).compute_output_shape([(3, 2), (4, 2)]) == (3, 4)
    assert Concatenate(axis=1).compute_output_shape([(3, 2), (1, 2)]) == (4, 2)
    assert Add().compute_output_shape([(3, 2), (3, 2)]) == (3, 2)


def test_merge_layers_declare_multiple_inputs_and_masking():
    for layer, _ in ALL_LAYERS:
        assert isinstance(layer, Merge) and layer.multi_input is True and layer.supports_masking
    assert getattr(Dense(2), "multi_input", False) is False


def test_input_gradients_can_be_skipped_for_all_or_some_inputs():
    layer = _built(Multiply(), [(2,)] * 3)
    xs = _inputs([(2,)] * 3)
    y = layer.forward(xs, training=True)
    layer.needs_input_grad = False
    assert layer.backward(np.ones_like(y)) == [None, None, None]
    layer.needs_input_grad = [True, False, True]
    grads = layer.backward(np.ones_like(y))
    assert grads[1] is None
    np.testing.assert_allclose(grads[0], xs[1] * xs[2])
    np.testing.assert_allclose(grads[2], xs[0] * xs[1])


def test_elementwise_masks_are_the_and_of_those_given():
    layer = _built(Add(), [(4, 2)] * 3)
    m1 = np.array([[True, True, False, True]])
    m2 = np.array([[True, False, True, True]])
    assert layer.compute_mask([None, None, None]) is None
    np.testing.assert_array_equal(layer.compute_mask([m1, None, None]), m1)
    np.testing.assert_array_equal(layer.compute_mask([m1, None, m2]), [[True, False, False, True]])


def test_concatenate_masks_follow_keras():
    m1 = np.array([[True, True, False]])
    m2 = np.array([[True, False, False]])
    # along the features: any over the spread masks, the OR; an input without a mask counts as all True
    features = _built(Concatenate(), [(3, 2), (3, 5)])
    assert features.compute_mask([None, None]) is None
    np.testing.assert_array_equal(features.compute_mask([m1, m2]), [[True, True, False]])
    np.testing.assert_array_equal(features.compute_mask([m1, None]), [[True, True, True]])
    # along the steps: the masks joined, all True for an input without one
    steps = _built(Concatenate(axis=1), [(3, 2), (2, 2)])
    np.testing.assert_array_equal(steps.compute_mask([m1, None]), [[True, True, False, True, True]])
    np.testing.assert_array_equal(steps.compute_mask([m1, m2[:, :2]]), [[True, True, False, True, False]])


def test_dot_drops_the_mask_as_keras():
    layer = _built(Dot(axes=2), [(3, 2), (3, 2)])
    assert layer.compute_mask([np.ones((1, 3), bool), np.ones((1, 3), bool)]) is None


# ---- errors: the shapes and the argument named ---------------------------------------------------------

@pytest.mark.parametrize("layer, shapes, message", [
    (Add(), [(8,), (4,)], r"add needs inputs of one shape, got \(8,\) and \(4,\)"),
    (Multiply(), [(3, 2), (3, 2), (3, 1)], r"multiply needs inputs of one shape, got \(3, 2\), \(3, 2\) and \(3, 1\)"),
    (Maximum(), [(4,), (1, 4)], r"maximum needs inputs of one shape, got \(4,\) and \(1, 4\)"),
    (Subtract(), [(4,)] * 3, r"subtract needs exactly 2 inputs, got 3: \(4,\), \(4,\) and \(4,\)"),
    (Average(), [(4,)], r"average needs at least 2 inputs, got 1: \(4,\)"),
    (Concatenate(), [(2, 3), (3, 3)], r"one shape except along axis -1, got \(2, 3\) and \(3, 3\)"),
    (Concatenate(axis=1), [(2, 3), (2,)], r"one rank, got \(2, 3\) and \(2,\)"),
    (Concatenate(axis=-3), [(2, 3), (2, 3)], r"`axis` -3 is out of range for an input of shape \(2, 3\)"),
    (Concatenate(axis=3), [(2, 3), (2, 3)], r"`axis` 3 is out of range"),
    (Dot(axes=1), [(4,), (5,)], r"got 4 \(axis 1 of \(4,\)\) and 5 \(axis 1 of \(5,\)\)"),
    (Dot(axes=[2, 1]), [(3, 4), (3,)], r"got 4 \(axis 2 of \(3, 4\)\) and 3 \(axis 1 of \(3,\)\)"),
    (Dot(axes=-1), [(2, 3, 4), (2, 3, 4)], r"rank 2 or 3 .*got \(2, 3, 4\) and \(2, 3, 4\)"),
    (Dot(axes=-2), [(4,), (4,)], r"`axes` -2 is out of range for an input of shape \(4,\)"),
    (Dot(axes=1), [(4,)] * 3, r"dot needs exactly 2 inputs, got 3"),
], ids=lambda value: "" if not isinstance(value, Merge) else value.type_name)
def test_shape_errors_name_the_shapes(layer, shapes, message):
    with pytest.raises(ShapeError, match=message):
        layer.build(shapes)


@pytest.mark.parametrize("make, argument", [
    (lambda: Concatenate(axis=0), "`axis` must not be 0"),
    (lambda: Concatenate(axis=1.0), "`axis` must be an integer"),
    (lambda: Concatenate(axis=[1, 2]), "`axis` must be an integer"),
    (lambda: Dot(axes=[1, 2, 1]), "`axes` must be an axis"),
    (lambda: Dot(axes="1"), "`axes` must be an axis"),
    (lambda: Dot(axes=True), "`axes` must be an axis"),
    (lambda: Dot(axes=[0, 1]), "`axes` must not include 0"),
    (lambda: Dot(axes=1, normalize=1), "`normalize` must be true or false"),
    (lambda: Add(name=""), "`name` must be a non-empty string"),
])
def test_argument_errors_name_the_argument(make, argument):
    with pytest.raises(ArgumentError, match=argument):
        make()


# ---- config round trip ----------------------------------------------------------------------------------

@pytest.mark.parametrize("layer", [Add(), Subtract(name="diff"), Multiply(trainable=False), Average(), Maximum(),
                                   Minimum(), Concatenate(), Concatenate(axis=1, name="join"), Dot(axes=1),
                                   Dot(axes=(2, -1), normalize=True, name="cosine")],
                         ids=lambda layer: layer.type_name)
def test_config_round_trip(layer):
    config = layer.get_config()
    assert type(layer)(**config).get_config() == config
    if isinstance(layer, Dot):
        assert set(config) - {"name", "trainable"} == {"axes", "normalize"}


# ---- PyTorch parity -----------------------------------------------------------------------------------------

def _torch_cases():
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    return {
        "add": (Add(), [(3, 4)] * 3, lambda a, b, c: torch.add(torch.add(a, b), c)),
        "subtract": (Subtract(), [(3, 4)] * 2, torch.sub),
        "multiply": (Multiply(), [(3, 4)] * 3, lambda a, b, c: torch.mul(torch.mul(a, b), c)),
        "average": (Average(), [(3, 4)] * 3, lambda *xs: torch.stack(xs).mean(0)),
        "maximum": (Maximum(), [(3, 4)] * 2, torch.maximum),
        "minimum": (Minimum(), [(3, 4)] * 2, torch.minimum),
        "concatenate": (Concatenate(axis=1), [(2, 4), (3, 4)], lambda a, b: torch.cat([a, b], dim=1)),
        "dot-vectors": (Dot(axes=1), [(5,), (5,)], lambda a, b: torch.sum(a * b, dim=1, keepdim=True)),
        "dot-matrices": (Dot(axes=2), [(3, 5), (4, 5)], lambda a, b: torch.bmm(a, b.transpose(1, 2))),
        "dot-cosine": (Dot(axes=2, normalize=True), [(3, 5), (4, 5)],
                       lambda a, b: torch.bmm(functional.normalize(a, dim=2), functional.normalize(b, dim=2)
                                              .transpose(1, 2))),
    }


@pytest.mark.parametrize("case", ["add", "subtract", "multiply", "average", "maximum", "minimum", "concatenate",
                                  "dot-vectors", "dot-matrices", "dot-cosine"])
def test_torch_parity_forward_and_input_gradients(case):
    torch = pytest.importorskip("torch")
    layer, shapes, torch_op = _torch_cases()[case]
    _built(layer, shapes)
    xs = _inputs(shapes, batch=4, dtype=np.float32)
    y = layer.forward(xs, training=True)
    weights = RNG.standard_normal(y.shape).astype(np.float32)
    grads = layer.backward(weights)

    leaves = [torch.tensor(x, requires_grad=True) for x in xs]
    y_torch = torch_op(*leaves)
    (y_torch * torch.tensor(weights)).sum().backward()
    np.testing.assert_allclose(y, y_torch.detach().numpy(), rtol=1e-5, atol=1e-6)
    for got, leaf in zip(grads, leaves):
        np.testing.assert_allclose(got, leaf.grad.numpy(), rtol=1e-5, atol=1e-6)
