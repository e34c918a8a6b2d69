"""The recurrent layers on the CUDA path (see nn/cudaops.py): SimpleRNN, LSTM and GRU through the CUDA
recurrent twins (masks, go_backwards, dropout and recurrent dropout), and Bidirectional as two of them, the second
reversed in time, merged by any merge mode."""

from __future__ import annotations

import numpy as np

from nnctl.nn.cudaops import Op, _size
from nnctl.nn.cudaops_dropout import draw_multipliers, dropout_key


def _subkey(key: int, part: int) -> int:
    """One of a layer's dropout keys: its recurrent and input masks, for each copy of a Bidirectional."""
    return (key ^ ((part + 1) * 0x94D049BB133111EB)) % (1 << 64)


class RecurrentOp(Op):
    """SimpleRNN, LSTM and GRU with masks, go_backwards, dropout and recurrent dropout: the CUDA recurrent twins (the
    input projection in one launch, the time loop in one), then the weight gradients as GEMMs over samples × steps,
    the bias gradient as in-order column sums, as the CPU layer forms them. The GRU's h̃ block has a recurrent
    gradient of its own (r·e, in `drec`): copied over dpre's h̃ block once dW, dx and the input bias's gradient
    are taken, so that dU and the recurrent bias's gradient are one GEMM and one column sum.

    Dropout draws Keras's masks once a sequence from the counter-based generator (nnctl/engine/cuda/dropout.py):
    the inputs' (samples × features), and the recurrent state's, one per gate (samples × gates·units); with both,
    each gate reads the inputs under its own mask, so dW, dx and dU are a GEMM per gate."""

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
        self.dxrev = self.buffer(self.in_shape) if self.reverse and self.needs_dx else None
        self.lstm, self.gru = layer.gates == 4, layer.gates == 3
        self.act, self.ract = layer._codes()
        step = (self.steps, self.units)
        self.rate_in, self.rate_rec = layer.dropout, layer.recurrent_dropout
        # Recurrent dropout masks each gate's state apart (the states of dU's GEMM: one block a gate); with input
        # dropout too, each gate's inputs apart (`groups` dropped copies of x).
        self.per_gate = bool(self.rate_rec) and layer.gates > 1
        self.groups = layer.gates if self.per_gate and self.rate_in else 1
        bs, f, u, w = ctx.batch_size, self.features, self.units, self.width
        self.hs, self.hprev = self.buffer(step), self.buffer((self.steps, w if self.rate_rec else u))
        if self.rate_in or self.rate_rec:
            key = dropout_key(ctx.model, index)
            self.keys = [_subkey(key, 2 * int(restore_order)), _subkey(key, 2 * int(restore_order) + 1)]
        self.rdrawn = ctx.empty(bs * w) if self.rate_rec else None
        self.idrawn = ctx.empty(self.groups * bs * f) if self.rate_in else None
        self.xd = ctx.empty(self.groups * bs * self.steps * f) if self.rate_in else None
        if self.per_gate:  # a gate's block of dpre, of the states, of W, of a weight gradient; a gate's dx
            self.block, self.state_k = ctx.empty(bs * self.steps * u), ctx.empty(bs * self.steps * u)
            self.Wk, self.dWk = ctx.empty(f * u), ctx.empty(max(f, u) * u)
            self.dxk = self.buffer(self.in_shape) if self.needs_dx and self.groups > 1 else None
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
        self.no_rmask = ctx.empty((0, self.width), np.float32)
        self.no_bias = ctx.zeros(self.width)
        self.UT = ctx.empty((self.width, self.units), np.float32)
        self.last = self.buffer((self.units,))
        self.last_rows = ctx.cuda.to_device(np.arange(1, ctx.batch_size + 1, dtype=np.int64) * self.steps - 1)
        self.dx = self.buffer(self.in_shape) if self.needs_dx else None
        self.penalties = self.penalties_of(layer.kernel, layer.recurrent_kernel, layer.bias)

    def _state(self, m):
        return self.view(self.zeros_state, (m, self.units))

    def out_mask(self, mask):
        return mask if self.layer.return_sequences else None

    def forward(self, x, m, training):
        layer, values, k = self.layer, self.ctx.values, self.ctx.k
        self.x = self.reshaped(x, m, self.steps, self.features)
        self.masked = self.in_mask is not None
        mask = self.reshaped(self.in_mask, m, self.steps) if self.masked else self.first_rows(self.mask, m)
        if self.reverse:
            k.reverse_steps(self.x, xrev := self.view(self.xrev, (m, self.steps, self.features)))
            self.x = xrev
            if self.masked:
                k.reverse_steps(mask.reshape(m, self.steps, 1), flipped := self.view(self.maskrev, (m, self.steps, 1)))
                mask = flipped.reshape(m, self.steps)
        self.loop_mask = mask
        x4, self.rmask = self._dropout(m, training)
        self.x4 = x4
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
        k.take_rows(self.reshaped(hs, m * self.steps, self.units), self.first_rows(self.last_rows, m), last)
        return last

    def _dropout(self, m, training):
        """The projection's inputs (groups, m, T, f) and the recurrent mask for this batch: x and no mask
        outside training or without dropout."""
        k, T, f, w = self.ctx.k, self.steps, self.features, self.width
        self.dropping = training and bool(self.rate_in or self.rate_rec)
        x4, rmask = self.reshaped(self.x, 1, m, T, f), self.no_rmask
        if not self.dropping:
            return x4, rmask
        if self.rate_rec:
            drawn = self.rdrawn[:m * w]
            draw_multipliers(self.ctx, self.keys[0], self.rate_rec, drawn)
            rmask = drawn.reshape(m, w)
        if self.rate_in:
            g = self.groups
            drawn = self.idrawn[:g * m * f]
            draw_multipliers(self.ctx, self.keys[1], self.rate_in, drawn)
            self.drop_in = drawn.reshape(g, m, f)
            x4 = self.xd[:g * m * T * f].reshape(g, m, T, f)
            for gate in range(g):
                k.scale_channels(self.x, self.drop_in[gate], x4[gate])
        return x4, rmask

    def backward(self, dy, m, fused=False):
        layer, k, blas = self.layer, self.ctx.k, self.ctx.blas
        T, u, w = self.steps, self.units, self.width
        dhs = self.reshaped(dy, m, T if layer.return_sequences else 1, u)
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
        per_gate = self.per_gate and self.dropping
        hprev = self.view(self.hprev, (m, T, w if self.rmask.shape[0] else u))
        k.recurrent_inputs(hs, self._state(m), self.rmask, 0, m, hprev)
        dpre2, grads = self.reshaped(dpre, m * T, w), self.ctx.grads
        db = None if layer.bias is None else self.reshaped(self.weight(layer.bias, grads), -1, w)  # (1, w); GRU (2, w)
        dx = self._input_gradients(dpre2, m)
        if db is not None:  # column sums in a fixed order (rows in order; over many rows, fixed chunks: sum_partials)
            k.sum_partials(self.reshaped(dpre2, m * T, 1, w), m * T, self.first_rows(db, 1))
        if dx is not None:
            if self.reverse:
                k.reverse_steps(dx, flipped := self.view(self.dxrev, (m,) + self.in_shape))
                dx = flipped
        if self.gru:  # the h̃ block's recurrent gradient replaces e: dU and the recurrent bias row read (dz, dr, r·e)
            k.copy_columns(self.view(self.drec, (m * T, u)), dpre2, 2 * u)
            if db is not None:
                k.sum_partials(dpre2.reshape(m * T, 1, w), m * T, db[1:2])
        dU = self.weight(layer.recurrent_kernel, grads)
        if not per_gate:
            blas.gemm_tn(self.reshaped(hprev, m * T, u), dpre2, dU)
            return dx
        states, block, state, dUk = hprev.reshape(m * T, w), self._block(m), self._block(m, "state_k"), self._dWk(u)
        for gate in range(layer.gates):  # each gate's states under its own mask
            k.take_columns(dpre2, gate * u, block)
            k.take_columns(states, gate * u, state)
            blas.gemm_tn(state, block, dUk)
            k.copy_columns(dUk, dU, gate * u)
        return dx

    def _block(self, m, name="block"):
        return getattr(self, name)[:m * self.steps * self.units].reshape(m * self.steps, self.units)

    def _dWk(self, rows):
        return self.dWk[:rows * self.units].reshape(rows, self.units)

    def _input_gradients(self, dpre2, m):
        """dW (into the gradients) and dx (m, T, f) in the loops' order, or None when the layer reads the model
        input: one GEMM each, or one a gate when each gate read its own dropped inputs; dx through the input masks."""
        layer, k, blas, x4 = self.layer, self.ctx.k, self.ctx.blas, self.x4
        T, f, u = self.steps, self.features, self.units
        dW, W = self.weight(layer.kernel, self.ctx.grads), self.weight(layer.kernel, self.ctx.values)
        dx = None if self.dx is None else self.view(self.dx, (m * T, f))
        masked = self.dropping and bool(self.rate_in)
        if x4.shape[0] == 1:
            blas.gemm_tn(self.reshaped(x4, m * T, f), dpre2, dW)
            if dx is None:
                return None
            blas.gemm_nt(dpre2, W, dx)
            if masked:
                k.scale_channels(dx.reshape(m, T, f), self.drop_in[0], dx.reshape(m, T, f))
            return self.reshaped(dx, (m,) + self.in_shape)
        block, dWk, Wk = self._block(m), self._dWk(f), self.Wk.reshape(f, u)
        for gate in range(x4.shape[0]):
            k.take_columns(dpre2, gate * u, block)
            blas.gemm_tn(x4[gate].reshape(m * T, f), block, dWk)
            k.copy_columns(dWk, dW, gate * u)
            if dx is not None:  # Σ over the gates, in gate order, of (dpre_k · W_kᵀ) ⊙ the gate's input mask
                k.take_columns(W, gate * u, Wk)
                part = dx if gate == 0 else self.view(self.dxk, (m * T, f))
                blas.gemm_nt(block, Wk, part)
                k.scale_channels(part.reshape(m, T, f), self.drop_in[gate], part.reshape(m, T, f))
                if gate:
                    k.add(dx.reshape(m * T * f), part.reshape(m * T * f), dx.reshape(m * T * f))
        return None if dx is None else dx.reshape((m,) + self.in_shape)


class BidirectionalOp(Op):
    """Bidirectional: its forward copy and its backward copy (reversed in time), merged as the layer's merge_mode
    says (concat: side by side; sum, ave, mul: element-wise, as the CPU layer computes them); the gradient goes
    back to each copy, their input gradients added."""

    def __init__(self, ctx, layer, index):
        super().__init__(ctx, layer, index)
        self.ahead = RecurrentOp(ctx, layer.forward_layer, index)
        self.back = RecurrentOp(ctx, layer.backward_layer, index, restore_order=True)
        self.units, self.mode = layer.forward_layer.units, layer.merge_mode
        self.rows_per_sample = self.in_shape[0] if layer.return_sequences else 1
        width = 2 * self.units if self.mode == "concat" else self.units
        self.y = self.buffer((self.rows_per_sample, width))
        self.halves = [self.buffer((self.rows_per_sample, self.units)) for _ in range(2)]
        self.half = (ctx.cuda.to_device(np.full(ctx.batch_size * self.rows_per_sample * self.units, 0.5, np.float32))
                     if self.mode == "ave" else None)
        self.dx = self.buffer(self.in_shape) if self.needs_dx else None
        self.penalties = self.ahead.penalties + self.back.penalties

    def out_mask(self, mask):
        return mask if self.layer.return_sequences else None

    def forward(self, x, m, training):
        rows, u, k = m * self.rows_per_sample, self.units, self.ctx.k
        outputs = []
        for op in (self.ahead, self.back):
            op.in_mask = self.in_mask
            outputs.append(op.forward(x, m, training).reshape(rows * u))
        y = self.y[:rows * (2 * u if self.mode == "concat" else u)]
        if self.mode == "concat":
            for part, col0 in zip(outputs, (0, u)):
                k.copy_columns(part.reshape(rows, u), y.reshape(rows, 2 * u), col0)
        elif self.mode == "mul":
            k.multiply(outputs[0], outputs[1], y)
        else:
            k.add(outputs[0], outputs[1], y)
            if self.mode == "ave":  # (ahead + back) · 0.5, as the CPU's
                k.multiply(y, self.half[:rows * u], y)
        self.outputs = outputs  # mul's gradient reads them (before either copy's backward reuses its buffers)
        return y.reshape((m,) + self.out_shape)

    def backward(self, dy, m, fused=False):
        rows, u, k = m * self.rows_per_sample, self.units, self.ctx.k
        halves = [half[:rows * u] for half in self.halves]
        flat = dy.reshape(-1)
        if self.mode == "concat":
            for half, col0 in zip(halves, (0, u)):
                k.take_columns(dy.reshape(rows, 2 * u), col0, half.reshape(rows, u))
        elif self.mode == "mul":  # d_ahead = dy · back, d_back = dy · ahead
            k.multiply(flat, self.outputs[1], halves[0])
            k.multiply(flat, self.outputs[0], halves[1])
        elif self.mode == "ave":
            k.multiply(flat, self.half[:rows * u], halves[0])
            halves[1] = halves[0]
        else:
            halves = [flat, flat]
        grads = [op.backward(half.reshape((m,) + op.out_shape), m) for op, half in zip((self.ahead, self.back), halves)]
        if self.dx is None:
            return None
        size = m * _size(self.in_shape)
        k.add(grads[0].reshape(size), grads[1].reshape(size), self.dx[:size])
        return self.dx[:size].reshape((m,) + self.in_shape)
