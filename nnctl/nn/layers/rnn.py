"""The base of the recurrent layers (nnctl/nn/layers/recurrent.py): arguments, weights, masks, dropout masks,
and the chunked forward and backward around the compiled time loops (nnctl/engine/cpu/recurrent.py).

The whole sequence runs in one compiled call per chunk of sequences, forward (each step's input projection
x_s·W + bias and recurrence h·U inside the time loop) and BPTT backward. A batch is cut into fixed chunks of
sequences (from the batch size alone) that run on the chunk pool with no barrier per step: each chunk recurs
and back-propagates its own sequences, and its weight-gradient partials are added in chunk order, so the bytes
never depend on the threads. go_backwards reverses the sequence (and its mask) before the loop, and returns
the outputs in that reversed order, as Keras does.
"""

from __future__ import annotations

import numpy as np

from nnctl.engine.chunks import run_chunks
from nnctl.engine.cpu.recurrent_blocks import GROUP
from nnctl.errors import ArgumentError, ShapeError, check_float_range, check_positive_int
from nnctl.nn.activations import resolve_activation
from nnctl.nn.layers.arguments import check_bool, check_initializer, check_regularizer
from nnctl.nn.layers.base import Layer

# A batch runs as chunks of about 1/CHUNKS of its sequences, a multiple of the kernels' group of 4 (a group's
# sequences share each load of the recurrent kernel), so that a chunk's arrays stay in cache between the
# projection, the loop and the gradient GEMMs; two threads share the chunks (a busy core takes fewer) ...
CHUNKS = 16
# ... on the chunk pool when the step has at least this many multiply-adds (a hand-off costs ~20 µs).
POOL_MIN_MACS = 1 << 21


class Recurrent(Layer):
    """The shared layer: arguments, weights, masks, dropout masks, the chunked forward and backward.

    A subclass names its `gates` (g), its kernels, and runs one chunk's compiled loops in `_loop_forward` /
    `_loop_backward` over views of the batch arrays it allocated in `_state_buffers`.
    """

    gates = 1
    supports_masking = True
    has_recurrent_activation = True

    def _configure(self, units, activation, recurrent_activation, use_bias, kernel_initializer,
                   recurrent_initializer, bias_initializer, kernel_regularizer, recurrent_regularizer,
                   bias_regularizer, dropout, recurrent_dropout, return_sequences, go_backwards):
        self.units = check_positive_int("units", units)
        self.activation = resolve_activation(activation)
        self.recurrent_activation = resolve_activation(recurrent_activation)
        for name, value in (("activation", self.activation), ("recurrent_activation", self.recurrent_activation)):
            if value not in self.backend_activations():
                raise ArgumentError(f"`{name}` of a recurrent layer must be one of "
                                    f"{', '.join(self.backend_activations())}, got {value!r}.")
        for part, initializer, regularizer in (("kernel", kernel_initializer, kernel_regularizer),
                                               ("recurrent", recurrent_initializer, recurrent_regularizer),
                                               ("bias", bias_initializer, bias_regularizer)):
            setattr(self, f"{part}_initializer", check_initializer(f"{part}_initializer", initializer))
            setattr(self, f"{part}_regularizer", check_regularizer(f"{part}_regularizer", regularizer))
        for name, rate in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
            setattr(self, name, check_float_range(name, rate, 0.0, 1.0, high_open=True))
        self.use_bias, self.return_sequences, self.go_backwards = (
            check_bool(name, value) for name, value in (("use_bias", use_bias), ("return_sequences",
                                                        return_sequences), ("go_backwards", go_backwards)))
        # Bidirectional asks its layers to give zeros at masked steps (Keras's zero_output_for_mask).
        self.zero_output_for_mask = False

    @staticmethod
    def backend_activations():
        from nnctl.engine.cpu.recurrent import RECURRENT_ACTIVATIONS

        return tuple(RECURRENT_ACTIVATIONS)

    # ---- shapes and weights -------------------------------------------------------------------
    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != 2:
            raise ShapeError(f"{self.type_name} `{self.name or self.type_name}` takes inputs of shape "
                             f"(steps, features), got {input_shape}")
        return (input_shape[0], self.units) if self.return_sequences else (self.units,)

    def compute_mask(self, mask):
        return mask if self.return_sequences else None

    def build(self, input_shape):
        super().build(input_shape)
        width = self.gates * self.units
        self.kernel = self.add_weight("kernel", (input_shape[-1], width), self.kernel_initializer,
                                      self.kernel_regularizer)
        self.recurrent_kernel = self.add_weight("recurrent_kernel", (self.units, width), self.recurrent_initializer,
                                                self.recurrent_regularizer)
        self.bias = (self.add_weight("bias", self._bias_shape(), self._bias_init(), self.bias_regularizer)
                     if self.use_bias else None)

    def _bias_shape(self):
        return (self.gates * self.units,)

    def _bias_init(self):
        return self.bias_initializer

    # ---- forward ------------------------------------------------------------------------------
    def forward(self, x, training):
        run, chunks = self.forward_work(x, training)
        run_chunks(run, chunks, parallel=self._parallel(self.n))
        return self._outputs()

    def forward_work(self, x, training):
        """Prepares the forward pass and returns its (run(index, first, count), chunks) for the chunk pool;
        `_outputs()` gives the layer's output once they have run."""
        n, steps, features = x.shape
        x = np.ascontiguousarray(x, dtype=self.dtype)
        mask = self.input_mask
        mask = (np.ones((n, steps), np.uint8) if mask is None
                else np.ascontiguousarray(mask.reshape(n, steps), dtype=np.uint8))
        if self.go_backwards:
            x, mask = np.ascontiguousarray(x[:, ::-1]), np.ascontiguousarray(mask[:, ::-1])
        # Keras 3 draws one recurrent-dropout mask per gate (SimpleRNN: one): (n, g·u), or no rows when off; with
        # recurrent dropout on, each gate also reads the inputs under its own dropout mask.
        self.rec_mask = self._draw(training, self.recurrent_dropout, (n, self.gates * self.units))
        groups = self.gates if self.rec_mask is not None and self.gates > 1 else 1
        self.in_mask = self._draw(training, self.dropout, (groups, n, features))
        # The projection's inputs: (1, n, t, features) for every gate, or one per gate (g, n, t, features).
        self.x = x[None] if self.in_mask is None else x[None] * self.in_mask[:, :, None, :]
        self.inputs = [part.reshape(n * steps, features) for part in self.x]  # the dW GEMMs' view
        self.step_mask, self.n, self.steps = mask, n, steps
        width, units = self.gates * self.units, self.units
        # LSTM and GRU: the forward's activated gates, which the backward overwrites with dpre.
        self.cell_gates = self._buffer("gates", (n, steps, width)) if self.gates > 1 else None
        self.hs = self._buffer("hs", (n, steps, units))
        self.h0 = self._zeros("h0", (n, units))
        self.rmask = self.rec_mask if self.rec_mask is not None else np.empty((0, width), self.dtype)
        bias = self._input_bias()
        self.in_bias = self._zeros("no_bias", (width,)) if bias is None else bias
        self._state_buffers(n, steps)
        return (lambda index, first, count: self._loop_forward(first, count)), self._chunks(n)

    def _outputs(self):
        hs = self.hs
        if self.zero_output_for_mask:
            hs = hs * self.step_mask[:, :, None]
        return hs if self.return_sequences else hs[:, -1]

    def _draw(self, training, rate, shape):
        """A dropout multiplier drawn once per sequence from the run's generator (Keras's dropout masks), or
        None outside training or at rate 0."""
        if not training or rate == 0:
            return None
        keep = self.rng.random(shape, dtype=np.float32) >= rate
        return (keep / (1.0 - rate)).astype(self.dtype)

    def _zeros(self, key, shape):
        buf = self._buffer(key, shape)
        buf[...] = 0
        return buf

    def _chunks(self, n):
        size = -(-n // CHUNKS)
        size += -size % GROUP
        return [(first, min(size, n - first)) for first in range(0, n, size)]

    def _parallel(self, n):
        width = self.gates * self.units
        return n * self.steps * width * (self.input_shape[-1] + self.units) >= POOL_MIN_MACS

    def _input_bias(self):
        return None if self.bias is None else self.bias.value

    # ---- backward -----------------------------------------------------------------------------
    def backward(self, dy):
        run, chunks = self.backward_work(dy)
        run_chunks(run, chunks, parallel=self._parallel(self.n))
        return self.backward_finish()

    def backward_work(self, dy):
        """Prepares the backward pass and returns its (run(index, first, count), chunks) for the chunk pool;
        `backward_finish()` adds the chunks' weight-gradient partials and gives the input gradient."""
        n, steps, units, width = self.n, self.steps, self.units, self.gates * self.units
        # The loss gradient w.r.t. every state, or (n, 1, u) w.r.t. the last one only.
        dhs = np.ascontiguousarray(dy, dtype=self.dtype).reshape(n, steps if self.return_sequences else 1, units)
        if self.zero_output_for_mask:
            dhs = dhs * (self.step_mask[:, :, None] if self.return_sequences else self.step_mask[:, -1:, None])
        self.dhs = dhs
        features = self.input_shape[-1]
        chunks = self._chunks(n)
        # LSTM and GRU overwrite their stored gates with dpre; SimpleRNN writes it apart.
        self.dpre = self._buffer("dpre", (n, steps, width)) if self.gates == 1 else self.cell_gates
        self._grad_buffers(n, steps)
        per_gate = self.rmask.shape[0] > 0 and self.gates > 1
        # One input and one state per step for every gate (no per-gate dropout; not the GRU, whose h̃ block has
        # its own recurrent gradient): dW and dU come from one GEMM, [x | h_prev]ᵀ·dpre, one pass over dpre.
        joint = len(self.inputs) == 1 and not per_gate and self.gates != 3
        # The states each step's recurrent product read, after the step's inputs when joint.
        self.hprev = self._buffer("hprev", (n, steps, (features if joint else 0) + (width if per_gate else units)))
        hprev_states = self.hprev[:, :, features:] if joint else self.hprev
        self.dh0 = self._buffer("dh0", (n, units))
        dx = self._buffer("dx", (n, steps, features)) if self.needs_input_grad else None
        parts = len(chunks)
        dweights = self._buffer(("dWU", parts), (parts, features + units, width))
        dkernel, drecurrent = dweights[:, :features], dweights[:, features:]
        dbias = self._buffer(("db", parts), (parts,) + self._bias_rows())
        kernel = self.kernel.value
        dpre2, hprev2 = self.dpre.reshape(n * steps, width), self.hprev.reshape(n * steps, -1)
        dx2 = None if dx is None else dx.reshape(n * steps, features)
        self.UT = np.ascontiguousarray(self.recurrent_kernel.value.T)
        backend = self.backend

        def run(index, first, count):
            rows = slice(first * steps, (first + count) * steps)
            self._loop_backward(first, count)
            backend.recurrent_inputs(self.hs, self.h0, self.rmask, first, count, hprev_states)
            if len(self.inputs) == 1:
                if joint:
                    self.hprev[first:first + count, :, :features] = self.x[0, first:first + count]
                    backend.gemm_tn(hprev2[rows], dpre2[rows], dweights[index])
                else:
                    backend.gemm_tn(self.inputs[0][rows], dpre2[rows], dkernel[index])
                if dx2 is not None:
                    backend.gemm_nt(dpre2[rows], kernel, dx2[rows])
                    if self.in_mask is not None:
                        dx[first:first + count] *= self.in_mask[0, first:first + count, None, :]
            else:  # each gate read its own dropped inputs
                if dx2 is not None:
                    dx2[rows] = 0
                for k, inputs in enumerate(self.inputs):
                    block = self._gate(k)
                    dkernel[index][:, block] = inputs[rows].T @ dpre2[rows, block]
                    if dx2 is not None:
                        part = (dpre2[rows, block] @ kernel[:, block].T).reshape(count, steps, features)
                        dx[first:first + count] += part * self.in_mask[k, first:first + count, None, :]
            for k in range(self.gates) if per_gate or self.gates == 3 else ():
                source, cols = self._recurrent_gradient(k, dpre2)  # each gate's state under its own mask
                state = hprev2[rows, self._gate(k)] if per_gate else hprev2[rows]
                drecurrent[index][:, self._gate(k)] = state.T @ source[rows, cols]
            if self.bias is not None:
                self._bias_partial(rows, dbias[index])

        self.partials = (parts, dkernel, drecurrent, dbias, dx)
        return run, chunks

    def backward_finish(self):
        parts, dkernel, drecurrent, dbias, dx = self.partials
        backend = self.backend
        backend.sum_partials(dkernel, parts, self.kernel.grad)
        backend.sum_partials(drecurrent, parts, self.recurrent_kernel.grad)
        if self.bias is not None:
            backend.sum_partials(dbias.reshape(parts, 1, -1), parts, self.bias.grad.reshape(1, -1))
        if dx is None:
            return None
        return np.ascontiguousarray(dx[:, ::-1]) if self.go_backwards else dx

    def _gate(self, k):
        return slice(k * self.units, (k + 1) * self.units)

    def _recurrent_gradient(self, k, dpre2):
        """(array, columns) holding the loss gradient w.r.t. gate k's recurrent pre-activation."""
        return dpre2, self._gate(k)

    def _bias_rows(self):
        return (self.gates * self.units,)

    def _bias_partial(self, rows, out):
        self._column_sums(self.dpre.reshape(-1, self.dpre.shape[-1])[rows], out)

    def _column_sums(self, rows2d, out):
        """out = rows2d's column sums, row after row (sum_partials: 2× NumPy's axis-0 sum here)."""
        self.backend.sum_partials(rows2d.reshape(len(rows2d), 1, -1), len(rows2d), out.reshape(1, -1))

    def _state_buffers(self, n, steps):
        """Allocates what the subclass's loops store for the backward pass (LSTM: cells and gates)."""

    def _grad_buffers(self, n, steps):
        """Allocates the subclass's extra gradient buffers (LSTM: the carry's)."""

    def _loop_forward(self, first, count):
        raise NotImplementedError

    def _loop_backward(self, first, count):
        raise NotImplementedError

    # ---- config -------------------------------------------------------------------------------
    def get_config(self):
        config = {"units": self.units, "activation": self.activation}
        if self.has_recurrent_activation:
            config["recurrent_activation"] = self.recurrent_activation
        config.update({
            "use_bias": self.use_bias, "kernel_initializer": self.kernel_initializer,
            "recurrent_initializer": self.recurrent_initializer, "bias_initializer": self.bias_initializer})
        config.update(self._extra_config())
        config.update({
            "kernel_regularizer": self.kernel_regularizer, "recurrent_regularizer": self.recurrent_regularizer,
            "bias_regularizer": self.bias_regularizer, "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout, "return_sequences": self.return_sequences,
            "go_backwards": self.go_backwards, **self.base_config()})
        return config

    def _extra_config(self):
        return {}

    def _codes(self):
        from nnctl.engine.cpu.recurrent import RECURRENT_ACTIVATIONS

        return RECURRENT_ACTIVATIONS[self.activation], RECURRENT_ACTIVATIONS[self.recurrent_activation]
