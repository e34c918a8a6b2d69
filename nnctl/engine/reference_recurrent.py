"""Plain-NumPy oracles for the recurrent kernels (nnctl/engine/cpu/recurrent.py): same names and arguments.

Written for clarity, not speed: float64 throughout, one step of the whole batch part at a time, the cell's
equations as Keras 3 writes them (keras/src/layers/rnn/simple_rnn.py, lstm.py, gru.py).
"""

import numpy as np

ACTIVATIONS = {
    0: lambda v: v,
    1: lambda v: np.maximum(v, 0.0),
    2: lambda v: 1.0 / (1.0 + np.exp(-v)),
    3: np.tanh,
    4: lambda v: np.clip(v + 3.0, 0.0, 6.0) / 6.0,
}
# The derivative as a function of the activated value y.
DERIVATIVES = {
    0: lambda y: np.ones_like(y),
    1: lambda y: (y > 0).astype(np.float64),
    2: lambda y: y * (1.0 - y),
    3: lambda y: 1.0 - y * y,
    4: lambda y: ((y > 0) & (y < 1)) / 6.0,
}


def _parts(array, gates):
    """The gate blocks of the last axis."""
    return np.split(array, gates, axis=-1)


def _dropped(h, rmask, rows, gates):
    """h ⊙ each gate's recurrent-dropout mask (h itself per gate when rmask has no rows)."""
    if rmask.shape[0] == 0:
        return [h] * gates
    return [h * m for m in _parts(rmask[rows].astype(np.float64), gates)]


def _product(h, U, rmask, rows):
    """[(h ⊙ m_k)·U_k for each gate k], concatenated."""
    gates = U.shape[1] // U.shape[0]
    return np.concatenate([hk @ Uk for hk, Uk in zip(_dropped(h, rmask, rows, gates), _parts(U, gates))], axis=1)


def _state_grad(d, U, rmask, rows):
    """Σ_k (d_k·U_kᵀ) ⊙ m_k: the gradient w.r.t. the state that fed every gate's product."""
    gates = U.shape[1] // U.shape[0]
    ones = np.ones((len(rows), U.shape[0]))
    masks = [ones] * gates if rmask.shape[0] == 0 else _parts(rmask[rows].astype(np.float64), gates)
    return sum(dk @ Uk.T * mk for dk, Uk, mk in zip(_parts(d, gates), _parts(U, gates), masks))


def _incoming(dhs, rows, s, steps):
    """The loss gradient w.r.t. hs[rows, s]; dhs (n, 1, u) holds the last step's alone."""
    if dhs.shape[1] == steps:
        return dhs[rows, s]
    return dhs[rows, 0] if s == steps - 1 else np.zeros_like(dhs[rows, 0])


def recurrent_inputs(hs, h0, rmask, first, count, out):
    rows = np.arange(first, first + count)
    prev = np.concatenate([h0[rows, None], hs[rows, :-1]], axis=1).astype(np.float64)
    gates = 1 if rmask.shape[0] == 0 else rmask.shape[1] // h0.shape[1]
    masks = np.ones((count, 1, out.shape[2])) if rmask.shape[0] == 0 else rmask[rows, None]
    out[rows] = np.concatenate([prev] * gates, axis=2) * masks


def _projection(x, W, bias):
    """x_s·W + bias for every step, (n, t, g·u); gate k reads x[k] when x holds one input per gate."""
    width = W.shape[1] // x.shape[0]  # the columns each input feeds: all, or its gate's
    parts = [x[k].astype(np.float64) @ W[:, k * width:(k + 1) * width].astype(np.float64) for k in range(len(x))]
    return np.concatenate(parts, axis=-1) + bias.astype(np.float64)


def simple_rnn_forward(x, W, bias, U, h0, mask, rmask, act, first, count, hs):
    rows = np.arange(first, first + count)
    xw = _projection(x, W, bias)
    h, U = h0[rows].astype(np.float64), U.astype(np.float64)
    for s in range(xw.shape[1]):
        new = ACTIVATIONS[act](xw[rows, s] + _product(h, U, rmask, rows))
        h = np.where(mask[rows, s, None] != 0, new, h)
        hs[rows, s] = h


def simple_rnn_backward(dhs, hs, UT, mask, rmask, act, first, count, dpre, dh0):
    rows = np.arange(first, first + count)
    U = UT.T.astype(np.float64)
    dh = np.zeros((count, U.shape[0]))
    for s in reversed(range(hs.shape[1])):
        g = dh + _incoming(dhs, rows, s, hs.shape[1])
        real = mask[rows, s, None] != 0
        d = np.where(real, g * DERIVATIVES[act](hs[rows, s].astype(np.float64)), 0.0)
        dpre[rows, s] = d
        dh = np.where(real, _state_grad(d, U, rmask, rows), g)
    dh0[rows] = dh


def lstm_forward(x, W, bias, U, h0, c0, mask, rmask, act, ract, first, count, gates, hs, cs):
    rows = np.arange(first, first + count)
    xw = _projection(x, W, bias)
    h, c, U = h0[rows].astype(np.float64), c0[rows].astype(np.float64), U.astype(np.float64)
    for s in range(xw.shape[1]):
        zi, zf, zc, zo = _parts(xw[rows, s] + _product(h, U, rmask, rows), 4)
        i, f, o = ACTIVATIONS[ract](zi), ACTIVATIONS[ract](zf), ACTIVATIONS[ract](zo)
        candidate = ACTIVATIONS[act](zc)
        new_c = f * c + i * candidate
        new_h = o * ACTIVATIONS[act](new_c)
        real = mask[rows, s, None] != 0
        h, c = np.where(real, new_h, h), np.where(real, new_c, c)
        hs[rows, s], cs[rows, s] = h, c
        gates[rows, s] = np.where(real, np.concatenate([i, f, candidate, o], axis=1), gates[rows, s])


def lstm_backward(dhs, dc_last, cs, c0, UT, mask, rmask, act, ract, first, count, gates, dh0, dc0):
    rows = np.arange(first, first + count)
    U = UT.T.astype(np.float64)
    dh, dc = np.zeros((count, U.shape[0])), dc_last[rows].astype(np.float64)
    for s in reversed(range(gates.shape[1])):
        g = dh + _incoming(dhs, rows, s, gates.shape[1])
        i, f, candidate, o = _parts(gates[rows, s].astype(np.float64), 4)
        c = cs[rows, s].astype(np.float64)
        c_prev = (c0[rows] if s == 0 else cs[rows, s - 1]).astype(np.float64)
        a = ACTIVATIONS[act](c)
        dc_here = dc + g * o * DERIVATIVES[act](a)
        d = np.concatenate([dc_here * candidate * DERIVATIVES[ract](i), dc_here * c_prev * DERIVATIVES[ract](f),
                            dc_here * i * DERIVATIVES[act](candidate), g * a * DERIVATIVES[ract](o)], axis=1)
        real = mask[rows, s, None] != 0
        d = np.where(real, d, 0.0)
        gates[rows, s] = d
        dh = np.where(real, _state_grad(d, U, rmask, rows), g)
        dc = np.where(real, dc_here * f, dc)
    dh0[rows], dc0[rows] = dh, dc


def gru_forward(x, W, bias, U, rbias, h0, mask, rmask, act, ract, first, count, gates, hs, hu):
    rows = np.arange(first, first + count)
    xw = _projection(x, W, bias)
    h, U = h0[rows].astype(np.float64), U.astype(np.float64)
    for s in range(xw.shape[1]):
        x_z, x_r, x_h = _parts(xw[rows, s].astype(np.float64), 3)
        rec_z, rec_r, rec_h = _parts(_product(h, U, rmask, rows) + rbias, 3)
        z, r = ACTIVATIONS[ract](x_z + rec_z), ACTIVATIONS[ract](x_r + rec_r)
        candidate = ACTIVATIONS[act](x_h + r * rec_h)
        new_h = z * h + (1.0 - z) * candidate  # the undropped h_tm1, as Keras 3's GRUCell.call
        real = mask[rows, s, None] != 0
        h = np.where(real, new_h, h)
        hs[rows, s] = h
        gates[rows, s] = np.where(real, np.concatenate([z, r, candidate], axis=1), gates[rows, s])
        hu[rows, s] = np.where(real, rec_h, hu[rows, s])


def gru_backward(dhs, hs, hu, h0, UT, mask, rmask, act, ract, first, count, gates, drec, dh0):
    rows = np.arange(first, first + count)
    U = UT.T.astype(np.float64)
    dh = np.zeros((count, U.shape[0]))
    for s in reversed(range(gates.shape[1])):
        g = dh + _incoming(dhs, rows, s, gates.shape[1])
        z, r, candidate = _parts(gates[rows, s].astype(np.float64), 3)
        rec_h = hu[rows, s].astype(np.float64)
        h_prev = (h0[rows] if s == 0 else hs[rows, s - 1]).astype(np.float64)
        e = g * (1.0 - z) * DERIVATIVES[act](candidate)
        dz = g * (h_prev - candidate) * DERIVATIVES[ract](z)
        dr = e * rec_h * DERIVATIVES[ract](r)
        real = mask[rows, s, None] != 0
        d = np.where(real, np.concatenate([dz, dr, e], axis=1), 0.0)
        d_rec = np.where(real, np.concatenate([dz, dr, e * r], axis=1), 0.0)
        gates[rows, s], drec[rows, s] = d, d_rec[:, d_rec.shape[1] - drec.shape[2]:]  # all, or h̃'s block
        dh = np.where(real, g * z + _state_grad(d_rec, U, rmask, rows), g)
    dh0[rows] = dh
