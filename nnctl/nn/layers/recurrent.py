"""Recurrent layers: SimpleRNN, LSTM and GRU (reset_after), as in Keras 3; their shared machinery is
nnctl/nn/layers/rnn.py, Bidirectional is in wrappers.py and Masking in core.py.
"""

from __future__ import annotations

import numpy as np

from nnctl.errors import ArgumentError
from nnctl.nn.initializers import INITIALIZERS, Initializer
from nnctl.nn.layers.arguments import Bool, Literal, NamedSpec, Optional, Rate, Text, Width, check_bool
from nnctl.nn.layers.rnn import Recurrent


class _UnitForgetBias(Initializer):
    """LSTM's bias with unit_forget_bias: the bias initializer's values, with the forget gate's block set to
    ones (Keras: concatenate(init(units), ones(units), init(2·units)))."""

    def __init__(self, base, units):
        self.base, self.units = INITIALIZERS.get(base), units

    def __call__(self, shape, rng):
        u = self.units
        return np.concatenate([self.base((u,), rng), np.ones(u, np.float32), self.base((2 * u,), rng)])


class SimpleRNN(Recurrent):
    """A fully-connected RNN: h_t = activation(x_t·kernel + h_{t−1}·recurrent_kernel + bias)."""

    type_name = "simple_rnn"
    has_recurrent_activation = False

    def __init__(self, units: Width, activation: Optional[Text] = "tanh", use_bias: Bool = True,
                 kernel_initializer: NamedSpec = "glorot_uniform", recurrent_initializer: NamedSpec = "orthogonal",
                 bias_initializer: NamedSpec = "zeros", kernel_regularizer: Optional[NamedSpec] = None,
                 recurrent_regularizer: Optional[NamedSpec] = None, bias_regularizer: Optional[NamedSpec] = None,
                 dropout: Rate = 0.0, recurrent_dropout: Rate = 0.0, return_sequences: Bool = False,
                 go_backwards: Bool = False, **kwargs):
        super().__init__(**kwargs)
        self._configure(units, activation, "sigmoid", use_bias, kernel_initializer, recurrent_initializer,
                        bias_initializer, kernel_regularizer, recurrent_regularizer, bias_regularizer, dropout,
                        recurrent_dropout, return_sequences, go_backwards)

    def _loop_forward(self, first, count):
        act, _ = self._codes()
        self.backend.simple_rnn_forward(self.x, self.kernel.value, self.in_bias, self.recurrent_kernel.value,
                                        self.h0, self.step_mask, self.rmask, act, first, count, self.hs)

    def _loop_backward(self, first, count):
        act, _ = self._codes()
        self.backend.simple_rnn_backward(self.dhs, self.hs, self.UT, self.step_mask, self.rmask, act, first, count,
                                         self.dpre, self.dh0)


class LSTM(Recurrent):
    """Long short-term memory (Hochreiter 1997), Keras's gate order i, f, c, o along the 4·units axis."""

    type_name = "lstm"
    gates = 4

    def __init__(self, units: Width, activation: Optional[Text] = "tanh",
                 recurrent_activation: Optional[Text] = "sigmoid", use_bias: Bool = True,
                 kernel_initializer: NamedSpec = "glorot_uniform", recurrent_initializer: NamedSpec = "orthogonal",
                 bias_initializer: NamedSpec = "zeros", unit_forget_bias: Bool = True,
                 kernel_regularizer: Optional[NamedSpec] = None, recurrent_regularizer: Optional[NamedSpec] = None,
                 bias_regularizer: Optional[NamedSpec] = None, dropout: Rate = 0.0, recurrent_dropout: Rate = 0.0,
                 return_sequences: Bool = False, go_backwards: Bool = False, **kwargs):
        super().__init__(**kwargs)
        self._configure(units, activation, recurrent_activation, use_bias, kernel_initializer,
                        recurrent_initializer, bias_initializer, kernel_regularizer, recurrent_regularizer,
                        bias_regularizer, dropout, recurrent_dropout, return_sequences, go_backwards)
        self.unit_forget_bias = check_bool("unit_forget_bias", unit_forget_bias)

    def _bias_init(self):
        return _UnitForgetBias(self.bias_initializer, self.units) if self.unit_forget_bias else self.bias_initializer

    def _extra_config(self):
        return {"unit_forget_bias": self.unit_forget_bias}

    def _state_buffers(self, n, steps):
        self.cs = self._buffer("cs", (n, steps, self.units))
        self.c0 = self._zeros("c0", (n, self.units))

    def _grad_buffers(self, n, steps):
        self.dc0 = self._buffer("dc0", (n, self.units))
        self.dc_last = self._zeros("dc_last", (n, self.units))

    def _loop_forward(self, first, count):
        act, ract = self._codes()
        self.backend.lstm_forward(self.x, self.kernel.value, self.in_bias, self.recurrent_kernel.value, self.h0,
                                  self.c0, self.step_mask, self.rmask, act, ract, first, count, self.cell_gates,
                                  self.hs, self.cs)

    def _loop_backward(self, first, count):
        act, ract = self._codes()
        self.backend.lstm_backward(self.dhs, self.dc_last, self.cs, self.c0, self.UT, self.step_mask, self.rmask,
                                   act, ract, first, count, self.cell_gates, self.dh0, self.dc0)


class GRU(Recurrent):
    """Gated recurrent unit, Keras 3's default `reset_after` form (the cuDNN one): gates z, r, h along the
    3·units axis; `bias` is (2, 3·units): the input bias row, then the recurrent one."""

    type_name = "gru"
    gates = 3

    def __init__(self, units: Width, activation: Optional[Text] = "tanh",
                 recurrent_activation: Optional[Text] = "sigmoid", use_bias: Bool = True,
                 kernel_initializer: NamedSpec = "glorot_uniform", recurrent_initializer: NamedSpec = "orthogonal",
                 bias_initializer: NamedSpec = "zeros", kernel_regularizer: Optional[NamedSpec] = None,
                 recurrent_regularizer: Optional[NamedSpec] = None, bias_regularizer: Optional[NamedSpec] = None,
                 dropout: Rate = 0.0, recurrent_dropout: Rate = 0.0, return_sequences: Bool = False,
                 go_backwards: Bool = False, reset_after: Literal[True] = True, **kwargs):
        super().__init__(**kwargs)
        self._configure(units, activation, recurrent_activation, use_bias, kernel_initializer,
                        recurrent_initializer, bias_initializer, kernel_regularizer, recurrent_regularizer,
                        bias_regularizer, dropout, recurrent_dropout, return_sequences, go_backwards)
        if reset_after is not True:
            raise ArgumentError("`reset_after` must be true: nnctl runs Keras 3's default GRU (reset gate applied "
                                "after the recurrent product), got false.")
        self.reset_after = True

    def _bias_shape(self):
        return (2, 3 * self.units)

    def _bias_rows(self):
        return (2, 3 * self.units)

    def _input_bias(self):
        return None if self.bias is None else self.bias.value[0]

    def _recurrent_bias(self):
        return self._zeros("rbias", (3 * self.units,)) if self.bias is None else self.bias.value[1]

    def _bias_partial(self, rows, out):
        self._column_sums(self.dpre.reshape(-1, self.dpre.shape[-1])[rows], out[0])
        out[1, :2 * self.units] = out[0, :2 * self.units]
        self._column_sums(self.drec.reshape(-1, self.units)[rows], out[1, 2 * self.units:])

    def _grad_buffers(self, n, steps):
        # The h̃ gate's recurrent part has its own gradient (r·e); z's and r's are dpre's.
        self.drec = self._buffer("drec", (n, steps, self.units))

    def _recurrent_gradient(self, k, dpre2):
        if k < 2:
            return dpre2, self._gate(k)
        return self.drec.reshape(-1, self.units), slice(None)

    def _extra_config(self):
        return {"reset_after": True}

    def _state_buffers(self, n, steps):
        self.hu = self._buffer("hu", (n, steps, self.units))

    def _loop_forward(self, first, count):
        act, ract = self._codes()
        self.backend.gru_forward(self.x, self.kernel.value, self.in_bias, self.recurrent_kernel.value,
                                 self._recurrent_bias(), self.h0, self.step_mask, self.rmask, act, ract, first,
                                 count, self.cell_gates, self.hs, self.hu)

    def _loop_backward(self, first, count):
        act, ract = self._codes()
        self.backend.gru_backward(self.dhs, self.hs, self.hu, self.h0, self.UT, self.step_mask, self.rmask, act,
                                  ract, first, count, self.cell_gates, self.drec, self.dh0)
