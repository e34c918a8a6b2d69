"""CPU kernels of the recurrent layers (SimpleRNN, LSTM, GRU): each time loop, forward and back, in one call.

Each kernel documents its loop and argument shapes; its NumPy oracle is in nnctl/engine/reference_recurrent.py.
The activations are in fastmath.py, the group products and loop helpers in recurrent_blocks.py, each cell's
per-sample arithmetic in recurrent_cells.py.
"""

import numpy as np
from numba import njit

# The activation codes and float32 activations (fastmath.py) are part of this module's interface too.
from nnctl.engine.cpu.fastmath import (  # noqa: F401
    RECURRENT_ACTIVATIONS, SIGMOID, TANH, _activate, _times_derivative, exp32, sigmoid32, tanh32,
)
from nnctl.engine.cpu.recurrent_cells import (
    _gru_cell, _gru_cell_backward, _lstm_cell, _lstm_cell_backward, _lstm_cell_backward_default,
)
from nnctl.engine.cpu.recurrent_blocks import (
    GROUP, _any_real, _borrowed, _copy, _forward_products, _forward_scratch, _group_rows, _incoming, _input_products,
    _keep_alive, _previous, _state_gradients,
)
from nnctl.engine.settings import KERNEL

# Shared arguments (n samples, t steps, u units, g gates: 1 SimpleRNN, 4 LSTM, 3 GRU; float32, or float64 for
# gradient checks):
#   x: (1, n, t, f), the layer's inputs, or (g, n, t, f): gate k's own dropped inputs in x[k] (Keras 3 draws
#       one input-dropout mask per gate when recurrent dropout is on); W: (f, g·u), the input kernel; bias:
#       (g·u,), the input bias (zeros without one), gates in Keras's order (LSTM i, f, c, o; GRU z, r, h).
#       The forward kernels project each step inside the time loop (x_s·W + bias, then + h·U), so no
#       (n, t, g·u) projection is written by a GEMM and read back;
#   gates: (n, t, g·u), LSTM and GRU: the forward writes the activated gates there (unspecified at masked
#       steps), the backward overwrites them with dpre: one buffer serves both (32 MB for the book's LSTM batch);
#   U: (u, g·u), the recurrent kernel; UT: (g·u, u), its transpose, contiguous (the backward's products);
#   mask: (n, t) uint8, 0 = a masked step: the state(s) stay as they were (Keras: where(mask, new, old));
#   rmask: (n, g·u), the recurrent-dropout multipliers, gate k's in columns k·u : (k+1)·u, or an array with no
#          rows when recurrent dropout is off. Keras 3 (keras/src/layers/rnn/lstm.py and gru.py, LSTMCell.call and
#          GRUCell.call, `implementation == 1`, which recurrent_dropout > 0 forces; since keras-team/keras#20656
#          and #20663) draws one mask per gate and multiplies h_tm1 by gate k's mask before gate k's product
#          only: the LSTM carry c and the GRU's mix z·h_tm1 + (1 − z)·hh use the undropped state.
#          SimpleRNNCell.call (simple_rnn.py) draws one mask (g = 1);
#   act, ract: RECURRENT_ACTIVATIONS codes of activation and recurrent_activation;
#   first, count: the samples [first, first + count) this call runs; it writes only their rows, so parts of a
#          batch can run on threads side by side with no barrier per step;
#   hs: (n, t, u), the state after each step (at a masked step, the state carried over);
#   dhs: (n, t, u), the loss gradient w.r.t. hs, or (n, 1, u): w.r.t. the last state only (return_sequences
#          off), which saves the layer a zero-filled (n, t, u) array and the kernel reading it.
# dpre (n, t, g·u) = the loss gradient w.r.t. each step's pre-activations, which is also its gradient w.r.t.
# x_s·W + bias (0 at masked steps). The backward kernels never sum over samples or steps: the layer forms
# dU[:, gate k] = Σ_{b,s} recurrent_inputs[b, s, gate k]ᵀ · dpre[b, s, gate k] (GRU: drec for the h̃ gate; one
# GEMM per gate with recurrent dropout, one in all without), dW = xᵀ·dpre and db = Σ dpre with BLAS, in a fixed
# order.


@njit(**KERNEL)
def recurrent_inputs(hs, h0, rmask, first, count, out):
    """The states each step's recurrent product read, for the layer's dU GEMM. hs: (n, t, u); h0: (n, u);
    out: (n, t, u) without recurrent dropout, else (n, t, g·u).

        for b in first..first+count-1, s, gate k:  out[b, s, gate k] = h_{s−1} ⊙ rmask[b, gate k]
        (h_{−1} = h0[b])
    """
    hs, h0, rmask, out = _borrowed(hs), _borrowed(h0), _borrowed(rmask), _borrowed(out)
    units = h0.shape[1]
    for b in range(first, first + count):
        for s in range(hs.shape[1]):
            prev, row = _previous(h0, hs, b, s), out[b, s]
            if rmask.shape[0] == 0:
                for j in range(units):
                    row[j] = prev[j]
            else:
                for k in range(rmask.shape[1] // units):
                    gate, m = row[k * units:(k + 1) * units], rmask[b, k * units:(k + 1) * units]
                    for j in range(units):
                        gate[j] = prev[j] * m[j]


# Each kernel runs its samples GROUP at a time, all steps of a group before the next group: per step, one
# product for the group's rows, written straight into the step's rows of the output, then each sample's
# element-wise cell arithmetic on its contiguous gate rows. A group whose samples are all masked at a step
# skips the product. Each element-wise loop writes one array and reads a few: LLVM vectorizes a loop only
# when its runtime overlap checks between the views are few (a loop writing four gate rows ran scalar).

@njit(**KERNEL)
def simple_rnn_forward(x, W, bias, U, h0, mask, rmask, act, first, count, hs):
    """SimpleRNN, forward in time. x: (1, n, t, f); W: (f, u); bias: (u,); U: (u, u); h0: (n, u);
    hs: (n, t, u).

        for b, s:  h = act(x[0, b, s]·W + bias + (h ⊙ rmask[b])·U) where mask[b, s];  hs[b, s] = h
    """
    x, W, bias, U, h0, mask, rmask, hs = _borrowed(x), _borrowed(W), _borrowed(bias), _borrowed(U), _borrowed(h0), \
        _borrowed(mask), _borrowed(rmask), _borrowed(hs)
    owner, dropped_h, bias_rows = _forward_scratch(bias, U.shape[0])
    b0, end = first, first + count
    while b0 < end:
        rows = _group_rows(b0, end)
        for s in range(hs.shape[1]):
            if _any_real(mask, b0, rows, s):
                h_rows = hs[b0:b0 + rows, s]
                _input_products(rows, x, W, bias_rows, b0, s, h_rows)
                _forward_products(rows, h0, hs, s, U, rmask, b0, dropped_h, 0, U.shape[1], h_rows, h_rows, 0)
            for p in range(rows):
                h = hs[b0 + p, s]
                if mask[b0 + p, s]:
                    _activate(act, h)
                else:
                    _copy(_previous(h0, hs, b0 + p, s), h)
        b0 += rows
    _keep_alive(owner)


@njit(**KERNEL)
def simple_rnn_backward(dhs, hs, UT, mask, rmask, act, first, count, dpre, dh0):
    """SimpleRNN's BPTT. dhs: (n, t, u) or (n, 1, u); hs: the forward's; UT: (u, u); dpre: (n, t, u);
    dh0: (n, u).

        dh = 0;  for s = t−1 … 0:  g = dh + dhs[b, s]
            masked: dpre[b, s] = 0; dh = g
            else:   dpre[b, s] = g ⊙ act'(hs[b, s]); dh = (dpre[b, s]·Uᵀ) ⊙ rmask[b]
        dh0[b] = dh
    """
    dhs, hs, UT, mask, rmask = _borrowed(dhs), _borrowed(hs), _borrowed(UT), _borrowed(mask), _borrowed(rmask)
    dpre, dh0 = _borrowed(dpre), _borrowed(dh0)
    owner = np.empty((GROUP, UT.shape[1]), dhs.dtype)
    part = _borrowed(owner)
    b0, end = first, first + count
    while b0 < end:
        rows = _group_rows(b0, end)
        dh = dh0[b0:b0 + rows]
        dh[:] = 0.0
        for s in range(hs.shape[1] - 1, -1, -1):
            for p in range(rows):
                b = b0 + p
                d = dpre[b, s]
                _incoming(dh[p], dhs, b, s, hs.shape[1], d)
                if mask[b, s]:
                    _times_derivative(act, hs[b, s], d)
                    dh[p] = 0.0
                else:
                    _copy(d, dh[p])
                    d[:] = 0.0
            if _any_real(mask, b0, rows, s):
                _state_gradients(rows, dpre[b0:b0 + rows, s], UT, rmask, b0, part, dh)
        b0 += rows
    _keep_alive(owner)


@njit(**KERNEL)
def lstm_forward(x, W, bias, U, h0, c0, mask, rmask, act, ract, first, count, gates, hs, cs):
    """LSTM, forward in time. x: (1 or 4, n, t, f); W: (f, 4u); bias: (4u,); U: (u, 4u); h0, c0: (n, u);
    gates: (n, t, 4u), written with the activated gates i, f, c̃, o (the backward's input; unspecified at masked
    steps); hs, cs: (n, t, u), the states and carries after each step (cs[:, -1]: the final carry).

        for b, s where mask[b, s]:
            z = x_s·W + bias + (h ⊙ rmask[b])·U      (per gate with dropout)
            i, f, c̃, o = ract(z_i), ract(z_f), act(z_c), ract(z_o);  c = f·c + i·c̃;  h = o·act(c)
            gates[b, s] = [i, f, c̃, o]
        hs[b, s], cs[b, s] = h, c
    """
    x, W, bias, U, h0, c0 = _borrowed(x), _borrowed(W), _borrowed(bias), _borrowed(U), _borrowed(h0), _borrowed(c0)
    mask, rmask, gates, hs, cs = _borrowed(mask), _borrowed(rmask), _borrowed(gates), _borrowed(hs), _borrowed(cs)
    owner, dropped_h, bias_rows = _forward_scratch(bias, U.shape[0])
    b0, end = first, first + count
    while b0 < end:
        rows = _group_rows(b0, end)
        for s in range(hs.shape[1]):
            if _any_real(mask, b0, rows, s):
                z_rows = gates[b0:b0 + rows, s]
                _input_products(rows, x, W, bias_rows, b0, s, z_rows)
                _forward_products(rows, h0, hs, s, U, rmask, b0, dropped_h, 0, U.shape[1], z_rows, z_rows, 0)
            for p in range(rows):
                b = b0 + p
                if mask[b, s]:
                    _lstm_cell(act, ract, gates[b, s], _previous(c0, cs, b, s), cs[b, s], hs[b, s])
                else:
                    _copy(_previous(h0, hs, b, s), hs[b, s])
                    _copy(_previous(c0, cs, b, s), cs[b, s])
        b0 += rows
    _keep_alive(owner)


@njit(**KERNEL)
def lstm_backward(dhs, dc_last, cs, c0, UT, mask, rmask, act, ract, first, count, gates, dh0, dc0):
    """LSTM's BPTT. dhs: (n, t, u) or (n, 1, u); dc_last: (n, u), the loss gradient w.r.t. the final carry
    (zeros unless the carry is an output); cs: the forward's; c0: (n, u); UT: (4u, u); gates: (n, t, 4u), the
    forward's activated gates, overwritten with dpre; dh0, dc0: (n, u).

        dh, dc = 0, dc_last[b];  for s = t−1 … 0:  g = dh + dhs[b, s]
            masked: dpre[b, s] = 0; dh = g (dc unchanged);   else, with a = act(c_s) recomputed:
            dc += g·o·act'(a)
            dpre[b, s] = [dc·c̃·ract'(i), dc·c_{s−1}·ract'(f), dc·i·act'(c̃), g·a·ract'(o)]
            dc = dc·f;  dh = dpre[b, s]·Uᵀ (⊙ rmask per gate)
        dh0[b], dc0[b] = dh, dc
    """
    dhs, dc_last, cs, c0, UT = _borrowed(dhs), _borrowed(dc_last), _borrowed(cs), _borrowed(c0), _borrowed(UT)
    mask, rmask = _borrowed(mask), _borrowed(rmask)
    gates, dh0, dc0 = _borrowed(gates), _borrowed(dh0), _borrowed(dc0)
    units = UT.shape[1]
    owner = np.empty((GROUP + 7) * units, dhs.dtype)
    scratch = _borrowed(owner)
    part, rest = scratch[:GROUP * units].reshape((GROUP, units)), scratch[GROUP * units:]
    a, da, g, scaled = rest[:units], rest[units:2 * units], rest[2 * units:3 * units], rest[3 * units:]
    default = act == TANH and ract == SIGMOID
    b0, end = first, first + count
    while b0 < end:
        rows = _group_rows(b0, end)
        dh, dc = dh0[b0:b0 + rows], dc0[b0:b0 + rows]
        dh[:] = 0.0
        dc[:] = dc_last[b0:b0 + rows]
        for s in range(gates.shape[1] - 1, -1, -1):
            for p in range(rows):
                b = b0 + p
                _incoming(dh[p], dhs, b, s, gates.shape[1], g)
                if mask[b, s]:
                    if default:
                        _lstm_cell_backward_default(g, gates[b, s], cs[b, s], _previous(c0, cs, b, s), dc[p])
                    else:
                        _lstm_cell_backward(act, ract, g, gates[b, s], cs[b, s], _previous(c0, cs, b, s), dc[p], a,
                                            da, scaled)
                    dh[p] = 0.0
                else:
                    _copy(g, dh[p])
                    gates[b, s] = 0.0
            if _any_real(mask, b0, rows, s):
                _state_gradients(rows, gates[b0:b0 + rows, s], UT, rmask, b0, part, dh)
        b0 += rows
    _keep_alive(owner)


@njit(**KERNEL)
def gru_forward(x, W, bias, U, rbias, h0, mask, rmask, act, ract, first, count, gates, hs, hu):
    """GRU (reset_after, Keras 3's default), forward in time. x: (1 or 3, n, t, f); W: (f, 3u); bias: (3u,),
    the input bias; U: (u, 3u); rbias: (3u,), the recurrent bias; h0: (n, u); gates: (n, t, 3u), written with
    the activated gates z, r, h̃ (the backward's input; unspecified at masked steps); hs: (n, t, u); hu:
    (n, t, u), the recurrent part of h̃'s pre-activation (for the backward; unspecified at masked steps).

        for b, s where mask[b, s]:
            xw = x_s·W + bias;  rec = (h ⊙ rmask[b])·U + rbias      (per gate with dropout)
            z, r = ract(xw_z + rec_z), ract(xw_r + rec_r);  h̃ = act(xw_h + r·rec_h);  h = z·h + (1 − z)·h̃
            gates[b, s] = [z, r, h̃];  hu[b, s] = rec_h
        hs[b, s] = h
    """
    x, W, bias, U, rbias, h0 = _borrowed(x), _borrowed(W), _borrowed(bias), _borrowed(U), _borrowed(rbias), \
        _borrowed(h0)
    mask, rmask, gates, hs, hu = _borrowed(mask), _borrowed(rmask), _borrowed(gates), _borrowed(hs), _borrowed(hu)
    units = U.shape[0]
    owner, dropped_h, bias_rows = _forward_scratch(bias, units)
    b0, end = first, first + count
    while b0 < end:
        rows = _group_rows(b0, end)
        for s in range(hs.shape[1]):
            if _any_real(mask, b0, rows, s):
                z_rows = gates[b0:b0 + rows, s]
                _input_products(rows, x, W, bias_rows, b0, s, z_rows)
                _forward_products(rows, h0, hs, s, U, rmask, b0, dropped_h, 0, 2 * units, z_rows, z_rows, 0)
                _forward_products(rows, h0, hs, s, U, rmask, b0, dropped_h, 2 * units, units, None,
                                  hu[b0:b0 + rows, s], 0)
            for p in range(rows):
                b = b0 + p
                if mask[b, s]:
                    _gru_cell(act, ract, gates[b, s], hu[b, s], rbias, _previous(h0, hs, b, s), hs[b, s])
                else:
                    _copy(_previous(h0, hs, b, s), hs[b, s])
        b0 += rows
    _keep_alive(owner)


@njit(**KERNEL)
def gru_backward(dhs, hs, hu, h0, UT, mask, rmask, act, ract, first, count, gates, drec, dh0):
    """GRU's BPTT. dhs: (n, t, u) or (n, 1, u); hs, hu: the forward's; h0: (n, u); UT: (3u, u); gates:
    (n, t, 3u), the forward's activated gates, overwritten with dpre; drec: the gradient w.r.t. the recurrent
    pre-activation (h ⊙ rmask)·U + rbias, (n, t, 3u) = [dpre_z, dpre_r, e·r], or (n, t, u) = its h̃ block alone
    (the other two are dpre's: a third of the bytes to write; the layer's dU and recurrent-bias gradient then
    take z's and r's columns from dpre); dh0: (n, u).

        dh = 0;  for s = t−1 … 0:  g = dh + dhs[b, s]
            masked: dpre[b, s] = drec[b, s] = 0; dh = g;   else:
            e = g·(1 − z)·act'(h̃);  dpre[b, s] = [g·(h_{s−1} − h̃)·ract'(z), e·rec_h·ract'(r), e]
            drec[b, s] = [dpre_z, dpre_r, e·r] (or e·r);  dh = g·z + [dpre_z, dpre_r, e·r]·Uᵀ (⊙ rmask per gate)
        dh0[b] = dh
    """
    dhs, hs, hu, h0, UT = _borrowed(dhs), _borrowed(hs), _borrowed(hu), _borrowed(h0), _borrowed(UT)
    mask, rmask = _borrowed(mask), _borrowed(rmask)
    gates, drec, dh0 = _borrowed(gates), _borrowed(drec), _borrowed(dh0)
    units = UT.shape[1]
    owner = np.empty(GROUP * 4 * units + 4 * units, dhs.dtype)
    scratch = _borrowed(owner)
    part = scratch[:GROUP * units].reshape((GROUP, units))
    rec = scratch[GROUP * units:GROUP * 4 * units].reshape((GROUP, 3 * units))  # the product's input rows
    rest = scratch[GROUP * 4 * units:]
    g, e, scaled = rest[:units], rest[units:2 * units], rest[2 * units:]
    b0, end = first, first + count
    while b0 < end:
        rows = _group_rows(b0, end)
        dh = dh0[b0:b0 + rows]
        dh[:] = 0.0
        for s in range(gates.shape[1] - 1, -1, -1):
            for p in range(rows):
                b = b0 + p
                _incoming(dh[p], dhs, b, s, gates.shape[1], g)
                if mask[b, s]:
                    _gru_cell_backward(act, ract, g, gates[b, s], hu[b, s], _previous(h0, hs, b, s), rec[p],
                                       drec[b, s], dh[p], e, scaled)
                else:
                    _copy(g, dh[p])
                    gates[b, s] = 0.0
                    drec[b, s] = 0.0
                    rec[p] = 0.0
            if _any_real(mask, b0, rows, s):
                _state_gradients(rows, rec[:rows], UT, rmask, b0, part, dh)
        b0 += rows
    _keep_alive(owner)


KERNELS = ("recurrent_inputs", "simple_rnn_forward", "simple_rnn_backward", "lstm_forward", "lstm_backward",
           "gru_forward", "gru_backward")
