"""The recurrent layers on the CUDA path (see nn/cudaops.py): SimpleRNN, LSTM and GRU through the CUDA
recurrent twins, and Bidirectional (merge_mode concat) as two of them, the second reversed in time."""

from __future__ import annotations

import numpy as np

from nnctl.nn.cudaops import Op, _size


class RecurrentOp(Op):
    """SimpleRNN, LSTM and GRU with masks and go_backwards, without dropout: the CUDA recurrent twins (the input
    projection in one launch, the time loop in one), then the weight gradients as GEMMs over samples × steps,
    the bias gradient as in-order column sums, as the CPU layer forms them. The GRU's h̃ block has a recurrent
    gradient of its own (r·e, in `drec`): copied over dpre's h̃ block once dW, dx and the input bias's gradient
    are taken, so that dU and the recurrent bias's gradient are one GEMM and one column sum."""

    def __init__(self, ctx, layer, index, restore_order=False):
        super().__init__(ctx, layer, index)
        self.steps, self.features = self.in_shape
        self.units, self.width = layer.units, layer.gates * layer.units
        # go_backwards: the inputs reversed first and the input gradient flipped back into time order, as the CPU
        # layer's; its output sequence stays in the reversed order (Keras's), but for Bidirectional's backward
        # copy (`restore_order`), whose outputs go back into time order beside the forward copy's.
        self.reverse, self.restore = layer.go_backwards, restore_order and layer.return_sequences
        self.xrev = self.buffer(self.in_shape) if self.reverse else None
        self.hrev = self.buffer((self.steps, self.units)) if self.restore else None
        self.dxrev = self.buffer(self.in_shape) if self.reverse and index > 0 else None
        self.lstm, self.gru = layer.gates == 4, layer.gates == 3
        self.act, self.ract = layer._codes()
        step = (self.steps, self.units)
        self.hs, self.hprev = self.buffer(step), self.buffer(step)
        self.gates = self.buffer((self.steps, self.width))  # LSTM: activated gates, then dpre; SimpleRNN: dpre
        self.cs = self.buffer(step) if self.lstm else None
        self.hu, self.drec = (self.buffer(step), self.buffer(step)) if self.gru else (None, None)
        self.zeros_state = ctx.zeros(ctx.batch_size * self.units)  # h0, c0 and the last carry's gradient
        self.dh0, self.dc0 = self.buffer((self.units,)), self.buffer((self.units,))
        self.mask = ctx.cuda.to_device(np.ones((ctx.batch_size, self.steps), np.uint8))  # no mask: every step real
        # With a mask: go_backwards reverses it with the inputs; Bidirectional's copies give zeros at its padded
        # steps (zero_output_for_mask, their sequences only), and take their gradient there as zero.
        self.maskrev = self.buffer((self.steps,), np.uint8) if self.reverse else None
        self.zeroing = layer.zero_output_for_mask and layer.return_sequences
        self.hz = self.buffer(step) if self.zeroing else None
        self.rmask = ctx.empty((0, self.width), np.float32)
        self.no_bias = ctx.zeros(self.width)
        self.UT = ctx.empty((self.width, self.units), np.float32)
        self.last = self.buffer((self.units,))
        self.last_rows = ctx.cuda.to_device(np.arange(1, ctx.batch_size + 1, dtype=np.int64) * self.steps - 1)
        self.dx = self.buffer(self.in_shape) if index > 0 else None
        self.penalties = self.penalties_of(layer.kernel, layer.recurrent_kernel, layer.bias)

    def _state(self, m):
        return self.zeros_state[:m * self.units].reshape(m, self.units)

    def out_mask(self, mask):
        return mask if self.layer.return_sequences else None

    def forward(self, x, m, training):
        layer, values, k = self.layer, self.ctx.values, self.ctx.k
        self.x = x.reshape(m, self.steps, self.features)
        self.masked = self.in_mask is not None
        mask = self.in_mask.reshape(m, self.steps) if self.masked else self.mask[:m]
        if self.reverse:
            k.reverse_steps(self.x, xrev := self.view(self.xrev, (m, self.steps, self.features)))
            self.x = xrev
            if self.masked:
                k.reverse_steps(mask.reshape(m, self.steps, 1), flipped := self.view(self.maskrev, (m, self.steps, 1)))
                mask = flipped.reshape(m, self.steps)
        self.loop_mask = mask
        x4 = self.x.reshape(1, m, self.steps, self.features)
        bias = self.no_bias if layer.bias is None else self.weight(layer.bias, values)
        W, U = self.weight(layer.kernel, values), self.weight(layer.recurrent_kernel, values)
        hs = self.view(self.hs, (m, self.steps, self.units))
        if self.gru:  # bias (2, 3u): the input row, then the recurrent one
            k.gru_forward(x4, W, bias if layer.bias is None else bias[0], U, bias if layer.bias is None else bias[1],
                          self._state(m), mask, self.rmask, self.act, self.ract, 0, m,
                          self.view(self.gates, (m, self.steps, self.width)), hs,
                          self.view(self.hu, (m, self.steps, self.units)))
        elif self.lstm:
            k.lstm_forward(x4, W, bias, U, self._state(m), self._state(m), mask, self.rmask, self.act,
                           self.ract, 0, m, self.view(self.gates, (m, self.steps, self.width)), hs,
                           self.view(self.cs, (m, self.steps, self.units)))
        else:
            k.simple_rnn_forward(x4, W, bias, U, self._state(m), mask, self.rmask, self.act, 0, m, hs)
        if layer.return_sequences:
            out = hs
            if self.zeroing and self.masked:
                k.mask_steps(hs, mask, out := self.view(self.hz, (m, self.steps, self.units)))
            if self.restore:
                k.reverse_steps(out, out := self.view(self.hrev, (m, self.steps, self.units)))
            return out
        last = self.view(self.last, (m, self.units))
        k.take_rows(hs.reshape(m * self.steps, self.units), self.last_rows[:m], last)
        return last

    def backward(self, dy, m, fused=False):
        layer, k, blas = self.layer, self.ctx.k, self.ctx.blas
        T, u, w = self.steps, self.units, self.width
        dhs = dy.reshape(m, T if layer.return_sequences else 1, u)
        if self.restore:  # into the order the loops ran (hrev is free again)
            k.reverse_steps(dhs, flipped := self.view(self.hrev, (m, T, u)))
            dhs = flipped
        mask = self.loop_mask
        if self.zeroing and self.masked:  # (hz is free again too)
            k.mask_steps(dhs, mask, zeroed := self.view(self.hz, (m, T, u)))
            dhs = zeroed
        k.transpose(self.weight(layer.recurrent_kernel, self.ctx.values), self.UT)
        hs, dpre = self.view(self.hs, (m, T, u)), self.view(self.gates, (m, T, w))
        if self.gru:
            k.gru_backward(dhs, hs, self.view(self.hu, (m, T, u)), self._state(m), self.UT, mask,
                           self.rmask, self.act, self.ract, 0, m, dpre, self.view(self.drec, (m, T, u)),
                           self.view(self.dh0, (m, u)))
        elif self.lstm:
            k.lstm_backward(dhs, self._state(m), self.view(self.cs, (m, T, u)), self._state(m), self.UT,
                            mask, self.rmask, self.act, self.ract, 0, m, dpre,
                            self.view(self.dh0, (m, u)), self.view(self.dc0, (m, u)))
        else:
            k.simple_rnn_backward(dhs, hs, self.UT, mask, self.rmask, self.act, 0, m, dpre,
                                  self.view(self.dh0, (m, u)))
        hprev = self.view(self.hprev, (m, T, u))
        k.recurrent_inputs(hs, self._state(m), self.rmask, 0, m, hprev)
        dpre2, grads = dpre.reshape(m * T, w), self.ctx.grads
        db = None if layer.bias is None else self.weight(layer.bias, grads).reshape(-1, w)  # (1, w); GRU (2, w)
        blas.gemm_tn(self.x.reshape(m * T, self.features), dpre2, self.weight(layer.kernel, grads))
        if db is not None:  # column sums in row order, as the CPU's
            k.sum_partials(dpre2.reshape(m * T, 1, w), m * T, db[0:1])
        dx = None
        if self.dx is not None:
            dx = self.view(self.dx, (m * T, self.features))
            blas.gemm_nt(dpre2, self.weight(layer.kernel, self.ctx.values), dx)
            dx = dx.reshape((m,) + self.in_shape)
            if self.reverse:
                k.reverse_steps(dx, flipped := self.view(self.dxrev, (m,) + self.in_shape))
                dx = flipped
        if self.gru:  # the h̃ block's recurrent gradient replaces e: dU and the recurrent bias row read (dz, dr, r·e)
            k.copy_columns(self.view(self.drec, (m * T, u)), dpre2, 2 * u)
            if db is not None:
                k.sum_partials(dpre2.reshape(m * T, 1, w), m * T, db[1:2])
        blas.gemm_tn(hprev.reshape(m * T, u), dpre2, self.weight(layer.recurrent_kernel, grads))
        return dx


class BidirectionalOp(Op):
    """Bidirectional with merge_mode concat: its forward copy and its backward copy (reversed in time), their
    outputs side by side; the gradient's halves go back to each, their input gradients added."""

    def __init__(self, ctx, layer, index):
        super().__init__(ctx, layer, index)
        self.ahead = RecurrentOp(ctx, layer.forward_layer, index)
        self.back = RecurrentOp(ctx, layer.backward_layer, index, restore_order=True)
        self.units = layer.forward_layer.units
        self.rows_per_sample = self.in_shape[0] if layer.return_sequences else 1
        self.y = self.buffer((self.rows_per_sample, 2 * self.units))
        self.halves = [self.buffer((self.rows_per_sample, self.units)) for _ in range(2)]
        self.dx = self.buffer(self.in_shape) if index > 0 else None
        self.penalties = self.ahead.penalties + self.back.penalties

    def out_mask(self, mask):
        return mask if self.layer.return_sequences else None

    def forward(self, x, m, training):
        rows, u = m * self.rows_per_sample, self.units
        y = self.view(self.y, (rows, 2 * u))
        for op, col0 in ((self.ahead, 0), (self.back, u)):
            op.in_mask = self.in_mask
            self.ctx.k.copy_columns(op.forward(x, m, training).reshape(rows, u), y, col0)
        return y.reshape((m,) + self.out_shape)

    def backward(self, dy, m, fused=False):
        rows, u, k = m * self.rows_per_sample, self.units, self.ctx.k
        dy2, grads = dy.reshape(rows, 2 * u), []
        for op, half, col0 in ((self.ahead, self.halves[0], 0), (self.back, self.halves[1], u)):
            part = self.view(half, (rows, u))
            k.take_columns(dy2, col0, part)
            grads.append(op.backward(part.reshape((m,) + op.out_shape), m))
        if self.dx is None:
            return None
        size = m * _size(self.in_shape)
        k.add(grads[0].reshape(size), grads[1].reshape(size), self.dx[:size])
        return self.dx[:size].reshape((m,) + self.in_shape)
