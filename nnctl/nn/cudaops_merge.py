"""The merge layers on the CUDA path (see nn/cudaops.py), for graphs: Add, Subtract, Multiply, Average, Maximum,
Minimum and Concatenate, each a forward over a list of inputs and a backward giving one gradient per input, as the CPU
layers (nnctl/nn/layers/merge.py) compute them and in their order of operations."""

from __future__ import annotations

import numpy as np

from nnctl.nn.cudaops import Op, _size


class MergeOp(Op):
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

    def out_mask(self, masks):
        return None  # masked inputs are refused (cudapath.unsupported)

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
            winner.copy_to_device(self.no_winner[:n])  # input 0 until another beats it
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
