"""The recurrent cells' per-sample arithmetic, called by the time loops in nnctl/engine/cpu/recurrent.py: one
sample's step forward (the gates, the new state) and back (the gates' gradients). Each element-wise loop writes
one array and reads a few, so LLVM vectorizes it without many runtime overlap checks; the LSTM's backward for
the default activations (tanh, sigmoid) is one fused loop instead, which LLVM vectorizes as well.
"""

from numba import njit

from nnctl.engine.cpu.fastmath import _ONE, _activate, _scale_by_derivative, _tanh, _times_derivative
from nnctl.engine.cpu.recurrent_blocks import _copy
from nnctl.engine.settings import KERNEL


@njit(inline="always", **KERNEL)
def _lstm_cell(act, ract, z, c_prev, c, h):
    """One sample's step from z = its gate pre-activations: z becomes the activated gates i, f, c̃, o;
    c = f·c_prev + i·c̃; h = o·act(c)."""
    units = c.shape[0]
    _activate(ract, z[:2 * units])
    _activate(act, z[2 * units:3 * units])
    _activate(ract, z[3 * units:])
    i, f, candidate, o = z[:units], z[units:2 * units], z[2 * units:3 * units], z[3 * units:]
    for j in range(units):
        c[j] = f[j] * c_prev[j] + i[j] * candidate[j]
    _copy(c, h)
    _activate(act, h)
    for j in range(units):
        h[j] *= o[j]


@njit(inline="always", **KERNEL)
def _lstm_cell_backward(act, ract, g, z, c, c_prev, dc, a, da, scaled):
    """One sample's step back: g, the gradient w.r.t. h; dc, w.r.t. c (updated to c_prev's); z, the activated
    gates, becomes the gate pre-activations' gradients. a, da: (u,) and scaled: (4u,) scratch."""
    units = c.shape[0]
    i, f, candidate, o = z[:units], z[units:2 * units], z[2 * units:3 * units], z[3 * units:]
    s_i, s_f, s_c, s_o = scaled[:units], scaled[units:2 * units], scaled[2 * units:3 * units], scaled[3 * units:]
    _copy(c, a)
    _activate(act, a)
    for j in range(units):
        da[j] = g[j] * o[j]
    _times_derivative(act, a, da)
    for j in range(units):
        dc[j] += da[j]
    for j in range(units):
        s_o[j] = g[j] * a[j]
    for j in range(units):
        s_i[j] = dc[j] * candidate[j]
    for j in range(units):
        s_f[j] = dc[j] * c_prev[j]
    for j in range(units):
        s_c[j] = dc[j] * i[j]
    for j in range(units):
        dc[j] *= f[j]
    _scale_by_derivative(ract, z[:2 * units], scaled[:2 * units])
    _scale_by_derivative(act, candidate, s_c)
    _scale_by_derivative(ract, o, s_o)


@njit(inline="always", **KERNEL)
def _lstm_cell_backward_default(g, z, c, c_prev, dc):
    """_lstm_cell_backward for act = tanh and ract = sigmoid (Keras's defaults), in one loop: every gate's
    derivative from its activated value, no scratch rows (−15 % of the backward loop's time here)."""
    units = c.shape[0]
    for j in range(units):
        i, f, candidate, o = z[j], z[units + j], z[2 * units + j], z[3 * units + j]
        a = _tanh(c[j])
        d = dc[j] + g[j] * o * (_ONE - a * a)
        z[j] = d * candidate * (i * (_ONE - i))
        z[units + j] = d * c_prev[j] * (f * (_ONE - f))
        z[2 * units + j] = d * i * (_ONE - candidate * candidate)
        z[3 * units + j] = g[j] * a * (o * (_ONE - o))
        dc[j] = d * f


@njit(inline="always", **KERNEL)
def _gru_cell(act, ract, z, rec_h, rbias, h_prev, h):
    """One sample's step: z holds x·W + bias + (h ⊙ rmask)·U for the z and r gates and x·W + bias for h̃,
    rec_h the h̃ gate's recurrent product; adds the recurrent bias, then z becomes the activated z, r, h̃ and
    h = z·h_prev + (1 − z)·h̃."""
    units = h.shape[0]
    gate_z, r, candidate = z[:units], z[units:2 * units], z[2 * units:]
    gates_zr, bias_zr = z[:2 * units], rbias[:2 * units]
    for q in range(2 * units):
        gates_zr[q] += bias_zr[q]
    _activate(ract, gates_zr)
    bias_h = rbias[2 * units:]
    for j in range(units):
        rec_h[j] += bias_h[j]
    for j in range(units):
        candidate[j] += r[j] * rec_h[j]
    _activate(act, candidate)
    for j in range(units):
        h[j] = gate_z[j] * h_prev[j] + (_ONE - gate_z[j]) * candidate[j]


@njit(inline="always", **KERNEL)
def _gru_cell_backward(act, ract, g, z, rec_h, h_prev, rec, drec_h, dh, e, scaled):
    """One sample's step back: g, the gradient w.r.t. h; z, the activated gates, becomes the gradient w.r.t.
    x·W + bias; writes rec (3u,), the gradient w.r.t. the recurrent pre-activation, into drec_h too (all of it,
    or its h̃ block alone: the only one that differs from z's), and dh = g·z, the gradient reaching h_prev
    directly.
    e: (u,) and scaled: (2u,) scratch."""
    units = g.shape[0]
    gate_z, r, candidate = z[:units], z[units:2 * units], z[2 * units:]
    s_z, s_r, rec_part = scaled[:units], scaled[units:], rec[2 * units:]
    for j in range(units):
        s_z[j] = g[j] * (h_prev[j] - candidate[j])
    for j in range(units):
        e[j] = g[j] * (_ONE - gate_z[j])
    for j in range(units):
        dh[j] = g[j] * gate_z[j]
    _times_derivative(act, candidate, e)
    for j in range(units):
        s_r[j] = e[j] * rec_h[j]
    for j in range(units):
        rec_part[j] = e[j] * r[j]
    _copy(e, candidate)
    _scale_by_derivative(ract, z[:2 * units], scaled)
    _copy(z[:2 * units], rec[:2 * units])
    _copy(rec[3 * units - drec_h.shape[0]:], drec_h)
