"""Merge layers (Keras 3's `layers/merging`): Add, Subtract, Multiply, Average, Maximum, Minimum, Concatenate
and Dot — the layers that take several inputs, each a NumPy forward and a backward giving one gradient per input.
"""

from __future__ import annotations

from functools import reduce

import numpy as np

from nnctl.errors import ArgumentError, ShapeError, show
from nnctl.nn.layers.arguments import Axis, Bool, check_bool
from nnctl.nn.layers.base import Layer

# Keras's l2_normalize (Dot with normalize=True): x / sqrt(max(Σx², 1e-12)).
L2_EPSILON = 1e-12


def _listed(shapes) -> str:
    """'(8,) and (4,)', '(2, 3), (2, 3) and (4,)': every input's shape, in order."""
    texts = [str(tuple(shape)) for shape in shapes]
    return texts[0] if len(texts) == 1 else f"{', '.join(texts[:-1])} and {texts[-1]}"


def _is_axis(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _resolve_axis(axis: int, shape, what: str) -> int:
    """`axis` counted with the batch (Keras: -1 the last, 1 the first after the batch) as a positive axis of
    an input whose sample shape is `shape`, or a ShapeError; axis 0, the batch, is never merged."""
    rank = len(shape) + 1
    if not -rank <= axis < rank or axis % rank == 0:
        raise ShapeError(f"`{what}` {axis} is out of range for an input of shape {tuple(shape)} (rank {rank} with "
                         f"the batch; allowed: 1 to {rank - 1} or -{rank - 1} to -1, axis 0 is the batch)")
    return axis % rank


class Merge(Layer):
    """Base of the layers that take a list of inputs (`multi_input = True`). A subclass overrides:

    - `_merge(xs) -> y` (keeping what the backward needs) and `_merge_grads(dy) -> [dx, ...]`, one gradient per
      input, each its own array in dy's dtype (the first may be `dy` itself, as other layers return it);
    - `compute_output_shape(input_shapes)` when the output is not the inputs' common shape (Concatenate, Dot);
    - `min_inputs` / `max_inputs`, and `compute_mask(masks)` when the AND of the inputs' masks is wrong.
    `build(input_shapes)`, `forward(xs, training)` and `backward(dy)` take and give lists, one entry per input;
    shapes exclude the batch. `needs_input_grad` may be a bool or one bool per input.

    Example:
        class Hypot(Merge):
            type_name = "hypot"
            def _merge(self, xs): self.xs, self.y = xs, np.hypot(*xs); return self.y
            def _merge_grads(self, dy): return [dy * x / self.y for x in self.xs]
    """

    multi_input = True
    supports_masking = True
    min_inputs = 2  # Keras 3 takes a single input as a no-op merge; one input here is a wiring mistake
    max_inputs: int | None = None

    def build(self, input_shapes):
        self.input_shape = [tuple(int(size) for size in shape) for shape in input_shapes]
        self.output_shape = self.compute_output_shape(self.input_shape)

    def _check_count(self, input_shapes):
        count, low, high = len(input_shapes), self.min_inputs, self.max_inputs
        if low <= count and (high is None or count <= high):
            return
        wanted = f"exactly {low}" if low == high else f"at least {low}" if high is None else f"{low} to {high}"
        got = f"{count}: {_listed(input_shapes)}" if input_shapes else "none"
        raise ShapeError(f"{self.type_name} needs {wanted} inputs, got {got}")

    def compute_output_shape(self, input_shapes):
        self._check_count(input_shapes)
        first = tuple(input_shapes[0])
        # Keras broadcasts here (a size 1 against any size, lower ranks padded after the batch); we refuse,
        # since a merge that broadcasts by accident silently changes what the model computes.
        if any(tuple(shape) != first for shape in input_shapes[1:]):
            raise ShapeError(f"{self.type_name} needs inputs of one shape, got {_listed(input_shapes)}")
        return first

    def forward(self, xs, training):
        dtypes = {x.dtype for x in xs}
        if len(dtypes) > 1:  # NumPy would upcast float32 with float64 silently
            raise TypeError(f"{self.type_name} needs inputs of one dtype, got {', '.join(map(str, dtypes))}")
        self.count = len(xs)
        return self._merge(list(xs))

    def backward(self, dy):
        wanted = self.needs_input_grad
        if wanted is False:
            return [None] * self.count
        grads = self._merge_grads(dy)
        if isinstance(wanted, (list, tuple)):
            grads = [grad if want else None for grad, want in zip(grads, wanted)]
        return grads

    def compute_mask(self, masks):
        """None when no input has a mask, else the AND of those that have one (Keras 3.0's Merge rule)."""
        present = [mask for mask in masks if mask is not None]
        return reduce(np.logical_and, present) if present else None

    def _merge(self, xs):
        raise NotImplementedError

    def _merge_grads(self, dy):
        raise NotImplementedError

    def get_config(self):
        return self.base_config()


class Add(Merge):
    """The element-wise sum of its inputs (all of one shape)."""

    type_name = "add"

    def _merge(self, xs):
        return reduce(np.add, xs)

    def _merge_grads(self, dy):
        return [dy] + [dy.copy() for _ in range(self.count - 1)]


class Subtract(Merge):
    """inputs[0] − inputs[1] (exactly two inputs, of one shape)."""

    type_name = "subtract"
    max_inputs = 2

    def _merge(self, xs):
        return xs[0] - xs[1]

    def _merge_grads(self, dy):
        return [dy, -dy]


class Multiply(Merge):
    """The element-wise product of its inputs (all of one shape)."""

    type_name = "multiply"

    def _merge(self, xs):
        self.xs = xs
        return reduce(np.multiply, xs)

    def _merge_grads(self, dy):
        # d/dx_i is the product of the other inputs, from running products before and after i: no division,
        # so zeros in the inputs are fine.
        xs = self.xs
        after = [None] * len(xs)
        for i in range(len(xs) - 1, 0, -1):
            after[i - 1] = xs[i] if after[i] is None else xs[i] * after[i]
        grads, before = [], None
        for x, rest in zip(xs, after):
            if before is None:
                others = rest
            elif rest is None:
                others = before
            else:
                others = before * rest
            grads.append(dy * others)
            before = x if before is None else before * x
        return grads


class Average(Merge):
    """The element-wise mean of its inputs (all of one shape)."""

    type_name = "average"

    def _merge(self, xs):
        return reduce(np.add, xs) / len(xs)

    def _merge_grads(self, dy):
        return [dy / self.count for _ in range(self.count)]


class _Extremum(Merge):
    """Maximum and Minimum: the gradient of each output value goes to the one input that gave it — on a tie,
    the first input holding it (as TensorFlow's pairwise maximum gradient does through Keras's chain; PyTorch
    and JAX split ties evenly instead). A subclass sets `pick`: np.argmax or np.argmin."""

    def _merge(self, xs):
        stacked = np.stack(xs)
        self.winner = self.pick(stacked, axis=0)  # argmax/argmin return the first of equal values
        return np.take_along_axis(stacked, self.winner[None], axis=0)[0]

    def _merge_grads(self, dy):
        return [dy * (self.winner == i) for i in range(self.count)]


class Maximum(_Extremum):
    """The element-wise maximum of its inputs (all of one shape); ties send the gradient to the first."""

    type_name = "maximum"
    pick = staticmethod(np.argmax)


class Minimum(_Extremum):
    """The element-wise minimum of its inputs (all of one shape); ties send the gradient to the first."""

    type_name = "minimum"
    pick = staticmethod(np.argmin)


class Concatenate(Merge):
    """Joins its inputs along `axis`, counted as Keras counts it, with the batch (-1: the last; 1: the first
    after the batch); the other axes must agree."""

    type_name = "concatenate"

    def __init__(self, axis: Axis = -1, **kwargs):
        super().__init__(**kwargs)
        if not _is_axis(axis):
            raise ArgumentError(f"`axis` must be an integer (-1 for the last), got {show(axis)}.")
        if axis == 0:
            raise ArgumentError("`axis` must not be 0, the batch axis (-1 is the last, 1 the first after the "
                                "batch).")
        self.axis = axis

    def build(self, input_shapes):
        super().build(input_shapes)
        self.resolved_axis = _resolve_axis(self.axis, self.input_shape[0], "axis")

    def compute_output_shape(self, input_shapes):
        self._check_count(input_shapes)
        ranks = {len(shape) for shape in input_shapes}
        if len(ranks) > 1:
            raise ShapeError(f"concatenate needs inputs of one rank, got {_listed(input_shapes)}")
        axis = _resolve_axis(self.axis, input_shapes[0], "axis")
        kept = {tuple(shape[:axis - 1]) + tuple(shape[axis:]) for shape in input_shapes}
        if len(kept) > 1:
            raise ShapeError(f"concatenate needs inputs of one shape except along axis {self.axis}, got "
                             f"{_listed(input_shapes)}")
        shape = list(input_shapes[0])
        shape[axis - 1] = sum(s[axis - 1] for s in input_shapes)
        return tuple(shape)

    def _merge(self, xs):
        self.cuts = np.cumsum([x.shape[self.resolved_axis] for x in xs])[:-1]
        return np.concatenate(xs, axis=self.resolved_axis)

    def _merge_grads(self, dy):
        return [np.ascontiguousarray(part) for part in np.split(dy, self.cuts, axis=self.resolved_axis)]

    def compute_mask(self, masks):
        """Keras's rule: each input's (batch, steps, ...) mask spread over its features, the spread masks
        concatenated along `axis`, then `any` over the last axis. Along the last axis that is the OR of the
        masks (an input without one counts as all True); along another, the masks concatenated."""
        present = [mask for mask in masks if mask is not None]
        if not present:
            return None
        batch = present[0].shape[0]
        filled = [np.ones((batch,) + shape[:-1], bool) if mask is None else mask
                  for mask, shape in zip(masks, self.input_shape)]
        if self.resolved_axis == len(self.input_shape[0]):
            return reduce(np.logical_or, filled)
        return np.concatenate(filled, axis=self.resolved_axis)

    def get_config(self):
        return {"axis": self.axis, **self.base_config()}


def _l2_normalize(x, axis):
    """(x / sqrt(max(Σx², ε)) along `axis`, the inverse norm, where the clamp is off) — Keras's l2_normalize."""
    squares = np.sum(x * x, axis=axis, keepdims=True)
    inverse_norm = 1 / np.sqrt(np.maximum(squares, L2_EPSILON))
    return x * inverse_norm, inverse_norm, squares > L2_EPSILON


def _l2_normalize_backward(grad, x, inverse_norm, unclamped, axis):
    """The gradient through x·r, r = |x|⁻¹: r·g − x·r³·Σ(g·x); where the clamp holds r is constant: r·g."""
    projection = np.sum(grad * x, axis=axis, keepdims=True) * inverse_norm ** 3 * unclamped
    return grad * inverse_norm - x * projection


class Dot(Merge):
    """The dot product of two inputs along `axes` (an axis for both, or one per input, counted with the batch
    as in Keras: 1 is the first after the batch), sample by sample as Keras's batch_dot: (b, d)·(b, d) →
    (b, 1); (b, n, d)·(b, m, d) with axes (2, 2) → (b, n, m); (b, n, d)·(b, d) with axes (2, 1) → (b, n).
    `normalize` L2-normalizes each input along its axis first (cosine similarity)."""

    type_name = "dot"
    min_inputs = max_inputs = 2

    def __init__(self, axes: Axis, normalize: Bool = False, **kwargs):
        super().__init__(**kwargs)
        pair = isinstance(axes, (list, tuple)) and len(axes) == 2 and all(map(_is_axis, axes))
        if not (_is_axis(axes) or pair):
            raise ArgumentError(f"`axes` must be an axis (an integer) or a list of two, one per input, "
                                f"got {show(axes)}.")
        if 0 in (list(axes) if pair else [axes]):
            raise ArgumentError(f"`axes` must not include 0, the batch axis (1 is the first after the batch), "
                                f"got {show(axes)}.")
        self.axes = list(axes) if pair else axes
        self.normalize = check_bool("normalize", normalize)

    def build(self, input_shapes):
        super().build(input_shapes)
        self.resolved_axes = self._resolve_axes(*self.input_shape)

    def _resolve_axes(self, first, second) -> tuple[int, int]:
        """The dot axis of each input as a positive axis counted with the batch."""
        axes = self.axes if isinstance(self.axes, list) else [self.axes] * 2
        return tuple(_resolve_axis(axis, shape, "axes") for axis, shape in zip(axes, (first, second)))

    def compute_output_shape(self, input_shapes):
        self._check_count(input_shapes)
        first, second = (tuple(shape) for shape in input_shapes)
        if not (1 <= len(first) <= 2 and 1 <= len(second) <= 2):
            raise ShapeError(f"dot takes inputs of rank 2 or 3 with the batch (samples of 1 or 2 axes), got "
                             f"{_listed(input_shapes)}")
        a, b = self._resolve_axes(first, second)
        if first[a - 1] != second[b - 1]:
            raise ShapeError(f"dot needs one size along its axes, got {first[a - 1]} (axis {a} of {first}) and "
                             f"{second[b - 1]} (axis {b} of {second})")
        # Keras: the first input's axes less the dot axis, then the second's less the batch and dot axes.
        shape = first[:a - 1] + first[a:] + second[:b - 1] + second[b:]
        return shape or (1,)

    def _as_matrices(self, first, second):
        """first as (batch, rows, d), second as (batch, d, cols): the dot axes moved to where matmul sums."""
        a, b = self.resolved_axes
        rows = np.moveaxis(first, a, -1)
        cols = np.moveaxis(second, b, 1)
        return (rows if rows.ndim == 3 else rows[:, None, :]), (cols if cols.ndim == 3 else cols[:, :, None])

    def _merge(self, xs):
        first, second = xs
        a, b = self.resolved_axes
        if self.normalize:
            self.originals = first, second
            first, self.first_norm, self.first_unclamped = _l2_normalize(first, a)
            second, self.second_norm, self.second_unclamped = _l2_normalize(second, b)
        self.rows, self.cols = self._as_matrices(first, second)
        return np.matmul(self.rows, self.cols).reshape((len(first),) + self.output_shape)

    def _merge_grads(self, dy):
        a, b = self.resolved_axes
        rows, cols = self.rows, self.cols
        d3 = dy.reshape(len(dy), rows.shape[1], cols.shape[2])
        d_rows = np.matmul(d3, cols.transpose(0, 2, 1))  # (batch, rows, d)
        d_cols = np.matmul(rows.transpose(0, 2, 1), d3)  # (batch, d, cols)
        # Undo _as_matrices: drop the added axis, move the dot axis home.
        d_first = np.moveaxis(d_rows if len(self.input_shape[0]) == 2 else d_rows[:, 0, :], -1, a)
        d_second = np.moveaxis(d_cols if len(self.input_shape[1]) == 2 else d_cols[:, :, 0], 1, b)
        if self.normalize:
            first, second = self.originals
            d_first = _l2_normalize_backward(d_first, first, self.first_norm, self.first_unclamped, a)
            d_second = _l2_normalize_backward(d_second, second, self.second_norm, self.second_unclamped, b)
        return [np.ascontiguousarray(d_first), np.ascontiguousarray(d_second)]

    def compute_mask(self, masks):
        return None  # as Keras 3's Dot: the output's axes are not the inputs' steps

    def get_config(self):
        return {"axes": self.axes, "normalize": self.normalize, **self.base_config()}
