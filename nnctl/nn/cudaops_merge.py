"""The merge layers on the CUDA path (see nn/cudaops.py), for graphs: Add, Subtract, Multiply, Average, Maximum,
Minimum, Concatenate and Dot, each a forward over a list of inputs and a backward giving one gradient per input, as the
CPU layers (nnctl/nn/layers/merge.py) compute them and in their order of operations, and the Keras mask of the output
as the CPU layers' `compute_mask` gives it."""

from __future__ import annotations

import numpy as np

from nnctl.nn.cudaops import Op, _size
from nnctl.nn.layers.merge import L2_EPSILON


def merge_op(layer):
    """The op class of a merge layer (nn/cudaops.py's `op_for`)."""
    return DotOp if type(layer).__name__ == "Dot" else MergeOp


class MergeOp(Op):
    """Add, Subtract, Multiply, Average, Maximum, Minimum (element-wise, through dense.py's kernels) and
    Concatenate (the inputs as 2-D blocks of the output, copied column block by block)."""

    multi = True

    def __init__(self, ctx, layer, index):
        super().__init__(ctx, layer, index)
        self.kind = layer.type_name
        self.in_shapes = [tuple(shape) for shape in layer.input_shape]
        self.count, self.size = len(self.in_shapes), _size(self.out_shape)
        self.y = self.buffer(self.out_shape)
        # One gradient buffer an input (Add's gradients are dy itself; Subtract's first is too).
        self.grads = [self.buffer(shape) for shape in self.in_shapes] if self.kind != "add" else []
        if self.kind == "multiply":  # running products of the inputs before each one and after each one
            self.before = self.buffer(self.out_shape)
            self.afters = [self.buffer(self.out_shape) for _ in range(self.count - 2)]
        if self.kind in ("maximum", "minimum"):  # which input gave each output value
            self.winner = self.buffer(self.out_shape, np.int32)
            self.no_winner = ctx.cuda.to_device(np.zeros(ctx.batch_size * self.size, np.int32))
        # The output's mask, when its inputs have some (a step's in a sample: its shape less the features), and
        # the all-true mask Concatenate gives an input without one.
        self.mask_shape = self.out_shape[:-1]
        self.mask = self.buffer(self.mask_shape, np.uint8)
        if self.kind == "concatenate":
            self.all_real = ctx.cuda.to_device(np.ones(ctx.batch_size * _size(self.mask_shape), np.uint8))

    def out_mask(self, masks):
        """None when no input has a mask; else, as the CPU layers (Keras 3.0's rule), the AND of the masks present,
        or Concatenate's: each input's mask (all true for one without) ORed along the features, or joined along
        another axis."""
        present = [mask for mask in masks if mask is not None]
        if not present:
            return None
        k, m = self.ctx.k, present[0].shape[0]
        size = m * _size(self.mask_shape)
        if self.kind == "concatenate" and self.layer.resolved_axis < len(self.out_shape):
            return self._join_masks(masks, m)
        if self.kind == "concatenate" and len(present) < len(masks):
            return self.all_real[:size].reshape((m,) + self.mask_shape)  # OR with an all-true mask
        if len(present) == 1:
            return present[0]
        out = self.mask[:size]
        for i, mask in enumerate(present[1:]):  # AND (OR along Concatenate's features), input by input
            k.combine_masks(present[0].reshape(-1) if i == 0 else out, mask.reshape(-1), self.kind != "concatenate",
                            out)
        return out.reshape((m,) + self.mask_shape)

    def forward(self, xs, m, training):
        k, n = self.ctx.k, m * self.size
        flat = [x.reshape(-1) for x in xs]
        y = self.y[:n]
        if self.kind == "concatenate":
            return self._concatenate(xs, m)
        if self.kind == "subtract":
            k.subtract(flat[0], flat[1], y)
        elif self.kind in ("maximum", "minimum"):
            k.copy_columns(xs[0].reshape(m, self.size), y.reshape(m, self.size), 0)
            winner = self.winner[:n]
            # input 0 until another beats it (a copy by a kernel: a step replayed as a CUDA graph replays it)
            k.copy_columns(self.view(self.no_winner, (m, self.size)), self.view(self.winner, (m, self.size)), 0)
            for i, x in enumerate(flat[1:], 1):
                k.extremum_update(y, winner, x, i, self.kind == "maximum")
        elif self.kind == "multiply":
            self.xs = flat
            k.multiply(flat[0], flat[1], y)
            for x in flat[2:]:
                k.multiply(y, x, y)
        else:  # add, average: the inputs summed in order (average: then divided by their count)
            k.add(flat[0], flat[1], y)
            for x in flat[2:]:
                k.add(y, x, y)
            if self.kind == "average":
                k.divide(y, self.count, y)
        return y.reshape((m,) + self.out_shape)

    def backward(self, dy, m, fused=False):
        k, n = self.ctx.k, m * self.size
        flat = dy.reshape(-1)
        if self.kind == "add":
            return [dy] * self.count
        if self.kind == "concatenate":
            return self._split(dy, m)
        grads = [grad[:n] for grad in self.grads]
        if self.kind == "subtract":
            k.divide(flat, -1.0, grads[1])
            return [dy, grads[1].reshape((m,) + self.in_shapes[1])]
        if self.kind == "average":
            for grad in grads:
                k.divide(flat, self.count, grad)
        elif self.kind in ("maximum", "minimum"):
            for i, grad in enumerate(grads):
                k.winner_gradient(flat, self.winner[:n], i, grad)
        else:  # multiply: dy · the product of the other inputs, from running products before and after each one
            xs, after = self.xs, [None] * self.count
            for i in range(self.count - 1, 0, -1):
                if after[i] is None:
                    after[i - 1] = xs[i]
                else:
                    after[i - 1] = self.afters[i - 1][:n]
                    k.multiply(xs[i], after[i], after[i - 1])
            before = None
            for i in range(self.count):
                others = after[i] if before is None else before
                if before is not None and after[i] is not None:
                    k.multiply(before, after[i], grads[i])
                    others = grads[i]
                k.multiply(flat, others, grads[i])
                if before is None:
                    before = xs[i]
                else:
                    k.multiply(before, xs[i], self.before[:n])
                    before = self.before[:n]
        return [grad.reshape((m,) + shape) for grad, shape in zip(grads, self.in_shapes)]

    def _layout(self):
        """(rows a sample, [each input's columns]) of the inputs as 2-D blocks of the output."""
        axis = self.layer.resolved_axis
        pre, post = _size(self.out_shape[:axis - 1]), _size(self.out_shape[axis:])
        return pre, [shape[axis - 1] * post for shape in self.in_shapes]

    def _concatenate(self, xs, m):
        pre, widths = self._layout()
        y = self.y[:m * self.size].reshape(m * pre, sum(widths))
        col = 0
        for x, width in zip(xs, widths):
            self.ctx.k.copy_columns(x.reshape(m * pre, width), y, col)
            col += width
        return y.reshape((m,) + self.out_shape)

    def _split(self, dy, m):
        pre, widths = self._layout()
        dy2, col, grads = dy.reshape(m * pre, sum(widths)), 0, []
        for grad, width, shape in zip(self.grads, widths, self.in_shapes):
            part = grad[:m * pre * width].reshape(m * pre, width)
            self.ctx.k.take_columns(dy2, col, part)
            grads.append(part.reshape((m,) + shape))
            col += width
        return grads

    def _join_masks(self, masks, m):
        """Concatenate's mask along an axis other than the features: the inputs' masks side by side, as 2-D blocks
        of the output's mask (an all-true block for an input without one)."""
        axis = self.layer.resolved_axis
        pre = _size(self.mask_shape[:axis - 1])
        widths = [shape[axis - 1] * _size(shape[axis:-1]) for shape in self.in_shapes]
        out, col = self.mask[:m * _size(self.mask_shape)].reshape(m * pre, sum(widths)), 0
        for mask, width in zip(masks, widths):
            part = self.all_real[:m * pre * width] if mask is None else mask
            self.ctx.k.copy_columns(part.reshape(m * pre, width), out, col)
            col += width
        return out.reshape((m,) + self.mask_shape)


def _as_matrix(shape, axis):
    """(the other axis's size, (its stride, the dot axis's stride)): a sample of `shape` (one or two axes, flat
    in its row) as a matrix with the dot axis (`axis`, counted with the batch) for its columns."""
    if len(shape) == 1:
        return 1, (0, 1)
    rows, cols = shape
    return (rows, (cols, 1)) if axis == 2 else (cols, (1, cols))


class DotOp(Op):
    """Dot: each sample's first input as a (rows, depth) matrix times its second as a (depth, cols) one, read in
    place through strides where the CPU layer moves the axes, each L2-normalized along its axis first with
    `normalize`. Its output has no mask, as the CPU layer's."""

    multi = True

    def __init__(self, ctx, layer, index):
        super().__init__(ctx, layer, index)
        self.in_shapes = [tuple(shape) for shape in layer.input_shape]
        (first, second), (a, b) = self.in_shapes, layer.resolved_axes
        self.sizes, self.depth = [_size(first), _size(second)], first[a - 1]
        # The strides of each input's (vector, element) along its dot axis: the first's rows, the second's columns.
        (self.rows, self.first_strides), (self.cols, self.second_strides) = _as_matrix(first, a), _as_matrix(second, b)
        self.y = self.buffer(self.out_shape)
        self.dxs = [self.buffer(shape) for shape in self.in_shapes]
        if layer.normalize:  # the normalized inputs, and each vector's inverse norm and sum of squares
            self.normed = [self.buffer(shape) for shape in self.in_shapes]
            self.norms = [(self.buffer((count,)), self.buffer((count,))) for count in (self.rows, self.cols)]

    def out_mask(self, masks):
        return None  # the output's axes are not the inputs' steps

    def forward(self, xs, m, training):
        k = self.ctx.k
        self.xs = [x.reshape(m, size) for x, size in zip(xs, self.sizes)]
        vectors = (self.rows, self.first_strides), (self.cols, self.second_strides)
        self.operands = self.xs
        if self.layer.normalize:
            self.operands = [normed[:m * size].reshape(m, size) for normed, size in zip(self.normed, self.sizes)]
            for x, normed, (count, strides), (inverse, squares) in zip(self.xs, self.operands, vectors, self.norms):
                k.l2_normalize(x, strides, count, self.depth, L2_EPSILON, normed, self.view(inverse, (m, count)),
                               self.view(squares, (m, count)))
        first, second = self.operands
        y = self.view(self.y, (m, self.rows * self.cols))
        k.strided_matmul(first, self.first_strides, second, self.second_strides[::-1], y, (self.cols, 1), self.rows,
                         self.cols, self.depth)
        return y.reshape((m,) + self.out_shape)

    def backward(self, dy, m, fused=False):
        k, (first, second), rows, cols = self.ctx.k, self.operands, self.rows, self.cols
        dy2 = dy.reshape(m, rows * cols)
        dxs = [dx[:m * size].reshape(m, size) for dx, size in zip(self.dxs, self.sizes)]
        # d first[r, j] = Σ_c dy[r, c]·second[j, c];  d second[j, c] = Σ_r first[r, j]·dy[r, c]
        k.strided_matmul(dy2, (cols, 1), second, self.second_strides, dxs[0], self.first_strides, rows, self.depth,
                         cols)
        k.strided_matmul(first, self.first_strides[::-1], dy2, (cols, 1), dxs[1], self.second_strides[::-1],
                         self.depth, cols, rows)
        if self.layer.normalize:  # through the normalization, in place: each thread reads a vector, then writes it
            vectors = (rows, self.first_strides), (cols, self.second_strides)
            for dx, x, (count, strides), (inverse, squares) in zip(dxs, self.xs, vectors, self.norms):
                k.l2_normalize_backward(dx, x, self.view(inverse, (m, count)), self.view(squares, (m, count)),
                                        strides, count, self.depth, L2_EPSILON, dx)
        return [dx.reshape((m,) + shape) for dx, shape in zip(dxs, self.in_shapes)]
