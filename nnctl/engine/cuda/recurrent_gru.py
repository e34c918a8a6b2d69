"""CUDA twins of the GRU's kernels (nnctl/engine/cpu/recurrent.py's `gru_forward` and `gru_backward`): the same
two forms of the time loop as recurrent.py's SimpleRNN and LSTM (one launch for the whole loop, or one a step),
over the same helpers."""

from __future__ import annotations

from numba import cuda

from nnctl.engine.cuda.launch import KERNEL
from nnctl.engine.cuda.recurrent import (_activate, _derivative, _dropped, _geometry, _incoming, _previous,
                                         _projection, _sequence_thread)


@cuda.jit(device=True)
def _gru_cell(i, j, U, rbias, h0, mask, rmask, act, ract, first, count, s, gates, hs, hu):
    units = hs.shape[2]
    if i < count and j < units:
        b = first + i
        h_prev = _previous(h0, hs, b, s, j)
        if mask[b, s] == 0:
            hs[b, s, j] = h_prev
            return
        p_z = p_r = p_h = 0.0  # the three recurrent sums in one walk over h (each as _recurrent_product's)
        for m in range(units):
            h = _previous(h0, hs, b, s, m)
            p_z += h * _dropped(rmask, b, m) * U[m, j]
            p_r += h * _dropped(rmask, b, units + m) * U[m, units + j]
            p_h += h * _dropped(rmask, b, 2 * units + m) * U[m, 2 * units + j]
        rec_z, rec_r, rec_h = p_z + rbias[j], p_r + rbias[units + j], p_h + rbias[2 * units + j]
        z = _activate(ract, gates[b, s, j] + rec_z)
        r = _activate(ract, gates[b, s, units + j] + rec_r)
        candidate = _activate(act, gates[b, s, 2 * units + j] + r * rec_h)
        hs[b, s, j] = z * h_prev + (1.0 - z) * candidate  # the undropped h_tm1, as Keras 3's GRUCell.call
        gates[b, s, j], gates[b, s, units + j], gates[b, s, 2 * units + j] = z, r, candidate
        hu[b, s, j] = rec_h


@cuda.jit(**KERNEL)
def _gru_step(U, rbias, h0, mask, rmask, act, ract, first, count, s, gates, hs, hu):
    i, j = cuda.grid(2)
    _gru_cell(i, j, U, rbias, h0, mask, rmask, act, ract, first, count, s, gates, hs, hu)


@cuda.jit(**KERNEL)
def _gru_sequence(U, rbias, h0, mask, rmask, act, ract, first, count, gates, hs, hu):
    i, j = _sequence_thread()
    for s in range(hs.shape[1]):
        _gru_cell(i, j, U, rbias, h0, mask, rmask, act, ract, first, count, s, gates, hs, hu)
        cuda.syncthreads()


def gru_forward(x, W, bias, U, rbias, h0, mask, rmask, act, ract, first, count, gates, hs, hu):
    """The GRU's states, activated gates (z, r, h̃) and recurrent h̃ products (hu) at every step."""
    _projection(x, W, bias, first, count, gates)
    whole, blocks, threads = _geometry(count, hs.shape[2])
    if whole:
        _gru_sequence[blocks, threads](U, rbias, h0, mask, rmask, act, ract, first, count, gates, hs, hu)
        return
    for s in range(hs.shape[1]):
        _gru_step[blocks, threads](U, rbias, h0, mask, rmask, act, ract, first, count, s, gates, hs, hu)


@cuda.jit(device=True)
def _gru_back_cell(i, j, dhs, hs, hu, h0, UT, mask, rmask, act, ract, first, count, s, gates, drec, dh0):
    steps, units = gates.shape[1], UT.shape[1]
    if i < count and j < units:
        b = first + i
        dh = 0.0
        if s + 1 < steps:
            dh = dh0[b, j]  # step s + 1 left g·z there (g at a masked step)
            if mask[b, s + 1] != 0:  # d_rec = (dz, dr, e·r): the first two in gates, e·r in drec's last block
                last = drec.shape[2] - units  # the three sums in one walk (each as _gate_gradient's)
                t_z = t_r = t_h = 0.0
                for m in range(units):
                    t_z += gates[b, s + 1, m] * UT[m, j]
                    t_r += gates[b, s + 1, units + m] * UT[units + m, j]
                    t_h += drec[b, s + 1, last + m] * UT[2 * units + m, j]
                dh += t_z * _dropped(rmask, b, j)
                dh += t_r * _dropped(rmask, b, units + j)
                dh += t_h * _dropped(rmask, b, 2 * units + j)
        if s < 0:
            dh0[b, j] = dh
            return
        g = dh + _incoming(dhs, b, s, steps, j)
        full = drec.shape[2] == 3 * units
        if mask[b, s] == 0:
            for k in range(3):
                gates[b, s, k * units + j] = 0.0
                if full or k == 2:
                    drec[b, s, drec.shape[2] - (3 - k) * units + j] = 0.0
            dh0[b, j] = g
            return
        z, r, candidate = gates[b, s, j], gates[b, s, units + j], gates[b, s, 2 * units + j]
        h_prev = _previous(h0, hs, b, s, j)
        e = g * (1.0 - z) * _derivative(act, candidate)
        dz = g * (h_prev - candidate) * _derivative(ract, z)
        dr = e * hu[b, s, j] * _derivative(ract, r)
        gates[b, s, j], gates[b, s, units + j], gates[b, s, 2 * units + j] = dz, dr, e
        if full:
            drec[b, s, j], drec[b, s, units + j] = dz, dr
        drec[b, s, drec.shape[2] - units + j] = e * r
        dh0[b, j] = g * z


@cuda.jit(**KERNEL)
def _gru_back_step(dhs, hs, hu, h0, UT, mask, rmask, act, ract, first, count, s, gates, drec, dh0):
    i, j = cuda.grid(2)
    _gru_back_cell(i, j, dhs, hs, hu, h0, UT, mask, rmask, act, ract, first, count, s, gates, drec, dh0)


@cuda.jit(**KERNEL)
def _gru_back_sequence(dhs, hs, hu, h0, UT, mask, rmask, act, ract, first, count, gates, drec, dh0):
    i, j = _sequence_thread()
    for s in range(gates.shape[1] - 1, -2, -1):
        _gru_back_cell(i, j, dhs, hs, hu, h0, UT, mask, rmask, act, ract, first, count, s, gates, drec, dh0)
        cuda.syncthreads()


def gru_backward(dhs, hs, hu, h0, UT, mask, rmask, act, ract, first, count, gates, drec, dh0):
    """Overwrites gates with dpre; drec = the recurrent products' gradients (all gates, or h̃'s block);
    dh0 = the gradient w.r.t. the initial state."""
    whole, blocks, threads = _geometry(count, UT.shape[1])
    if whole:
        _gru_back_sequence[blocks, threads](dhs, hs, hu, h0, UT, mask, rmask, act, ract, first, count, gates, drec,
                                            dh0)
        return
    for s in range(gates.shape[1] - 1, -2, -1):
        _gru_back_step[blocks, threads](dhs, hs, hu, h0, UT, mask, rmask, act, ract, first, count, s, gates, drec,
                                        dh0)


KERNELS = ("gru_forward", "gru_backward")
