"""CUDA twins of the GRU's kernels (nnctl/engine/cpu/recurrent.py's `gru_forward` and `gru_backward`): the same
three forms of the time loop as recurrent.py's SimpleRNN and LSTM (one launch for the whole loop, its recurrent
kernel and states staged in shared memory where they fit or not; or one launch a step), over the same helpers."""

from __future__ import annotations

import numba
from numba import cuda

from nnctl.engine.cuda.launch import KERNEL, wide
from nnctl.engine.cuda.recurrent import (MAX_BLOCK, _activate, _derivative, _dropped, _incoming, _live, _previous,
                                         _projection, _sequence_thread, _stage, _turn, flat, time_loop)


@cuda.jit(device=True)
def _gru_unit(b, j, hp, Uf, rbias, live, rmask, act, ract, s, gates, hs, hu, hn):
    """Unit j of sample b at step s (`live`: the step is real): hp holds h_{s−1}, Uf the recurrent kernel
    flattened (units × 3·units); h_s goes into hs and hn (a staged loop's next row)."""
    units = hs.shape[2]
    width = 3 * units
    h_prev = hp[j]
    if not live:
        hs[b, s, j] = h_prev
        hn[j] = h_prev
        return
    x_z, x_r, x_h = gates[b, s, j], gates[b, s, units + j], gates[b, s, 2 * units + j]  # (before the walk)
    b_z, b_r, b_h = rbias[j], rbias[units + j], rbias[2 * units + j]
    p_z = p_r = p_h = 0.0  # the three recurrent sums in one walk over h, each in order
    for m in range(units):
        h = hp[m]
        row = m * width
        p_z += h * _dropped(rmask, b, m) * Uf[row + j]
        p_r += h * _dropped(rmask, b, units + m) * Uf[row + units + j]
        p_h += h * _dropped(rmask, b, 2 * units + m) * Uf[row + 2 * units + j]
    rec_z, rec_r, rec_h = p_z + b_z, p_r + b_r, p_h + b_h
    z = _activate(ract, x_z + rec_z)
    r = _activate(ract, x_r + rec_r)
    candidate = _activate(act, x_h + r * rec_h)
    hs[b, s, j] = z * h_prev + (1.0 - z) * candidate  # the undropped h_tm1, as Keras 3's GRUCell.call
    hn[j] = hs[b, s, j]
    gates[b, s, j], gates[b, s, units + j], gates[b, s, 2 * units + j] = z, r, candidate
    hu[b, s, j] = rec_h


@cuda.jit(device=True)
def _gru_cell(i, j, Uf, rbias, h0, mask, rmask, act, ract, first, count, s, gates, hs, hu):
    if i < count and j < hs.shape[2]:
        b = first + i
        _gru_unit(b, j, h0[b] if s == 0 else hs[b, s - 1], Uf, rbias, _live(mask, b, s), rmask, act, ract, s,
                  gates, hs, hu, hs[b, s])


@cuda.jit(**KERNEL)
def _gru_step(Uf, rbias, h0, mask, rmask, act, ract, first, count, s, gates, hs, hu):
    j, i = cuda.grid(2)  # x across the units: a warp writes a sample's state in a row
    _gru_cell(i, j, Uf, rbias, h0, mask, rmask, act, ract, first, count, s, gates, hs, hu)


@wide(MAX_BLOCK)  # (an unstaged whole loop: a block of up to 1,024 units)
def _gru_sequence(Uf, rbias, h0, mask, rmask, act, ract, first, count, gates, hs, hu):
    i, j = _sequence_thread()
    for s in range(hs.shape[1]):
        _gru_cell(i, j, Uf, rbias, h0, mask, rmask, act, ract, first, count, s, gates, hs, hu)
        cuda.syncthreads()


@cuda.jit(**KERNEL)
def _gru_sequence_staged(Uf, rbias, h0, mask, rmask, act, ract, first, count, gates, hs, hu):
    """The whole loop with U and the block's states in shared memory (U, then two rows of h a sample in turn)."""
    units, per = hs.shape[2], cuda.blockDim.y
    (i, j), y = _sequence_thread(), cuda.threadIdx.y
    b, inside, live = first + i, i < count, False
    staged = cuda.shared.array(0, numba.float32)
    _stage(Uf, staged, per, units)
    size = Uf.shape[0]
    Us = staged[:size]
    if inside:
        staged[size + (per + y) * units + j] = h0[b, j]  # row 1: the state before step 0
        live = _live(mask, b, 0)
    cuda.syncthreads()
    for s in range(hs.shape[1]):
        if inside:
            now, before = _turn(size, s, per, y, units)
            upcoming = _live(mask, b, s + 1)
            _gru_unit(b, j, staged[before:before + units], Us, rbias, live, rmask, act, ract, s, gates, hs, hu,
                      staged[now:now + units])
            live = upcoming
        cuda.syncthreads()


def gru_forward(x, W, bias, U, rbias, h0, mask, rmask, act, ract, first, count, gates, hs, hu):
    """The GRU's states, activated gates (z, r, h̃) and recurrent h̃ products (hu) at every step."""
    _projection(x, W, bias, first, count, gates)
    time_loop((_gru_sequence_staged, _gru_sequence, _gru_step), U, hs.shape[2], hs.shape[2], hs.shape[1], False,
              (flat(U), rbias, h0, mask, rmask, act, ract, first, count), (gates, hs, hu))


@cuda.jit(device=True)
def _gru_back_unit(b, j, dg, dd, off, UTf, dhs, hs, hu, h0, later, live, rmask, act, ract, s, gates, drec, dh0,
                   dnow, staged):
    """Unit j of sample b at step s of the walk back (`later`, `live`: steps s + 1 and s are real): step s + 1's
    dz and dr are dg[:2·units], its e·r dd[off:off + units]; UTf is Uᵀ flattened (3·units × units). Writes step
    s's into gates and drec and, staged, into dnow as (dz, dr, e·r)."""
    steps, units = gates.shape[1], dh0.shape[1]
    t = max(s, 0)  # the step's values before the walk (at s = −1, step 0's: read, not used)
    carried, incoming = dh0[b, j], _incoming(dhs, b, t, steps, j)
    z, r, candidate = gates[b, t, j], gates[b, t, units + j], gates[b, t, 2 * units + j]
    h_prev, rec_h = _previous(h0, hs, b, t, j), hu[b, t, j]
    dh = 0.0
    if s + 1 < steps:
        dh = carried  # step s + 1 left g·z there (g at a masked step)
        if later:  # d_rec = (dz, dr, e·r): the three sums in one walk, each in order
            t_z = t_r = t_h = 0.0
            for m in range(units):
                t_z += dg[m] * UTf[m * units + j]
                t_r += dg[units + m] * UTf[(units + m) * units + j]
                t_h += dd[off + m] * UTf[(2 * units + m) * units + j]
            dh += t_z * _dropped(rmask, b, j)
            dh += t_r * _dropped(rmask, b, units + j)
            dh += t_h * _dropped(rmask, b, 2 * units + j)
    if s < 0:
        dh0[b, j] = dh
        return
    g = dh + incoming
    full = drec.shape[2] == 3 * units
    if not live:
        for k in range(3):
            gates[b, s, k * units + j] = 0.0
            if full or k == 2:
                drec[b, s, drec.shape[2] - (3 - k) * units + j] = 0.0
            if staged:
                dnow[k * units + j] = 0.0
        dh0[b, j] = g
        return
    e = g * (1.0 - z) * _derivative(act, candidate)
    dz = g * (h_prev - candidate) * _derivative(ract, z)
    dr = e * rec_h * _derivative(ract, r)
    gates[b, s, j], gates[b, s, units + j], gates[b, s, 2 * units + j] = dz, dr, e
    if full:
        drec[b, s, j], drec[b, s, units + j] = dz, dr
    drec[b, s, drec.shape[2] - units + j] = e * r
    if staged:
        dnow[j], dnow[units + j], dnow[2 * units + j] = gates[b, s, j], gates[b, s, units + j], \
            drec[b, s, drec.shape[2] - units + j]
    dh0[b, j] = g * z


@cuda.jit(device=True)
def _gru_back_cell(i, j, dhs, hs, hu, h0, UTf, mask, rmask, act, ract, first, count, s, gates, drec, dh0):
    steps = gates.shape[1]
    if i < count and j < dh0.shape[1]:
        b, later = first + i, min(s + 1, steps - 1)
        _gru_back_unit(b, j, gates[b, later], drec[b, later], drec.shape[2] - dh0.shape[1], UTf, dhs, hs, hu, h0,
                       _live(mask, b, s + 1), _live(mask, b, s), rmask, act, ract, s, gates, drec, dh0,
                       gates[b, later], False)


@cuda.jit(**KERNEL)
def _gru_back_step(dhs, hs, hu, h0, UTf, mask, rmask, act, ract, first, count, s, gates, drec, dh0):
    j, i = cuda.grid(2)  # x across the units: a warp writes a sample's state in a row
    _gru_back_cell(i, j, dhs, hs, hu, h0, UTf, mask, rmask, act, ract, first, count, s, gates, drec, dh0)


@wide(MAX_BLOCK)  # (an unstaged whole loop: a block of up to 1,024 units)
def _gru_back_sequence(dhs, hs, hu, h0, UTf, mask, rmask, act, ract, first, count, gates, drec, dh0):
    i, j = _sequence_thread()
    for s in range(gates.shape[1] - 1, -2, -1):
        _gru_back_cell(i, j, dhs, hs, hu, h0, UTf, mask, rmask, act, ract, first, count, s, gates, drec, dh0)
        cuda.syncthreads()


@cuda.jit(**KERNEL)
def _gru_back_sequence_staged(dhs, hs, hu, h0, UTf, mask, rmask, act, ract, first, count, gates, drec, dh0):
    """The walk back with Uᵀ and the block's (dz, dr, e·r) rows in shared memory."""
    units, per, steps = dh0.shape[1], cuda.blockDim.y, gates.shape[1]
    width = 3 * units
    (i, j), y = _sequence_thread(), cuda.threadIdx.y
    b, inside, later, live = first + i, i < count, False, False
    staged = cuda.shared.array(0, numba.float32)
    _stage(UTf, staged, per, units)
    size = UTf.shape[0]
    UTs = staged[:size]
    if inside:
        live = _live(mask, b, steps - 1)
    cuda.syncthreads()
    for s in range(steps - 1, -2, -1):
        if inside:
            now, after = _turn(size, s, per, y, width)
            upcoming = _live(mask, b, s - 1)
            row = staged[after:after + width]
            _gru_back_unit(b, j, row, row, 2 * units, UTs, dhs, hs, hu, h0, later, live, rmask, act, ract, s, gates,
                           drec, dh0, staged[now:now + width], True)
            later, live = live, upcoming
        cuda.syncthreads()


def gru_backward(dhs, hs, hu, h0, UT, mask, rmask, act, ract, first, count, gates, drec, dh0):
    """Overwrites gates with dpre; drec = the recurrent products' gradients (all gates, or h̃'s block);
    dh0 = the gradient w.r.t. the initial state."""
    time_loop((_gru_back_sequence_staged, _gru_back_sequence, _gru_back_step), UT, UT.shape[1], UT.shape[0],
              gates.shape[1], True, (dhs, hs, hu, h0, flat(UT), mask, rmask, act, ract, first, count),
              (gates, drec, dh0))


KERNELS = ("gru_forward", "gru_backward")
