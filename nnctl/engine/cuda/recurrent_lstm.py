"""CUDA twins of the LSTM's kernels (nnctl/engine/cpu/recurrent.py's `lstm_forward` and `lstm_backward`): the same
three forms of the time loop as recurrent.py's SimpleRNN (one launch for the whole loop, its recurrent kernel and
states staged in shared memory where they fit or not; or one launch a step), over the same helpers."""

from __future__ import annotations

import numba
from numba import cuda

from nnctl.engine.cuda.launch import KERNEL, wide
from nnctl.engine.cuda.recurrent import (MAX_BLOCK, _activate, _derivative, _dropped, _incoming, _live,
                                         _projection, _sequence_thread, _stage, _turn, flat, time_loop)


@cuda.jit(device=True)
def _lstm_unit(b, j, hp, Uf, c_prev, live, rmask, act, ract, s, gates, hs, cs, hn):
    """Unit j of sample b at step s (`live`: its mask's entry): hp holds h_{s−1} (the sample's row), Uf the
    recurrent kernel flattened (units × 4·units); writes hs, cs, the activated gates, and h_s into hn too (a
    staged loop's next row). Returns c_s as stored (a staged loop keeps it for the next step)."""
    units = hs.shape[2]
    width = 4 * units
    if not live:
        h = hp[j]
        hs[b, s, j], cs[b, s, j] = h, c_prev
        hn[j] = h
        return cs[b, s, j]
    x_i, x_f = gates[b, s, j], gates[b, s, units + j]
    x_c, x_o = gates[b, s, 2 * units + j], gates[b, s, 3 * units + j]  # (before the walk: recurrent._live)
    # The four gates' recurrent sums in one walk over h, each in order: four independent chains a quarter as
    # long, and h read once a unit.
    p_i = p_f = p_c = p_o = 0.0
    for m in range(units):
        h = hp[m]
        row = m * width
        p_i += h * _dropped(rmask, b, m) * Uf[row + j]
        p_f += h * _dropped(rmask, b, units + m) * Uf[row + units + j]
        p_c += h * _dropped(rmask, b, 2 * units + m) * Uf[row + 2 * units + j]
        p_o += h * _dropped(rmask, b, 3 * units + m) * Uf[row + 3 * units + j]
    z_i, z_f, z_c, z_o = x_i + p_i, x_f + p_f, x_c + p_c, x_o + p_o
    gi, gf, gc, go = _activate(ract, z_i), _activate(ract, z_f), _activate(act, z_c), _activate(ract, z_o)
    c = gf * c_prev + gi * gc
    hs[b, s, j], cs[b, s, j] = go * _activate(act, c), c
    hn[j] = hs[b, s, j]
    gates[b, s, j], gates[b, s, units + j], gates[b, s, 2 * units + j], gates[b, s, 3 * units + j] = (
        gi, gf, gc, go)
    return cs[b, s, j]


@cuda.jit(device=True)
def _lstm_cell(i, j, h0, c0, Uf, mask, rmask, act, ract, first, count, s, gates, hs, cs):
    """The unit reading h_{s−1} and U from global memory."""
    if i < count and j < hs.shape[2]:
        b = first + i
        hp = h0[b] if s == 0 else hs[b, s - 1]
        c_prev = c0[b, j] if s == 0 else cs[b, s - 1, j]
        _lstm_unit(b, j, hp, Uf, c_prev, _live(mask, b, s), rmask, act, ract, s, gates, hs, cs, hs[b, s])


@cuda.jit(**KERNEL)
def _lstm_step(h0, c0, Uf, mask, rmask, act, ract, first, count, s, gates, hs, cs):
    j, i = cuda.grid(2)  # x across the units: a warp writes a sample's state in a row
    _lstm_cell(i, j, h0, c0, Uf, mask, rmask, act, ract, first, count, s, gates, hs, cs)


@wide(MAX_BLOCK)  # (an unstaged whole loop: a block of up to 1,024 units)
def _lstm_sequence(h0, c0, Uf, mask, rmask, act, ract, first, count, gates, hs, cs):
    i, j = _sequence_thread()
    for s in range(hs.shape[1]):
        _lstm_cell(i, j, h0, c0, Uf, mask, rmask, act, ract, first, count, s, gates, hs, cs)
        cuda.syncthreads()


@cuda.jit(**KERNEL)
def _lstm_sequence_staged(h0, c0, Uf, mask, rmask, act, ract, first, count, gates, hs, cs):
    """The whole loop with U and the block's states in shared memory (dynamic: U, then two rows of h a sample,
    the step's and the previous one's, in turn); c_{s−1} stays in a register."""
    units, per, steps = hs.shape[2], cuda.blockDim.y, hs.shape[1]
    (i, j), y = _sequence_thread(), cuda.threadIdx.y
    staged = cuda.shared.array(0, numba.float32)
    _stage(Uf, staged, per, units)
    size = Uf.shape[0]
    Us = staged[:size]
    b, inside = first + i, i < count
    c_prev, live = c0[first, j], False  # (a thread past the batch's samples only meets the barriers)
    if inside:
        staged[size + (per + y) * units + j] = h0[b, j]  # row 1: the state before step 0
        c_prev, live = c0[b, j], _live(mask, b, 0)
    cuda.syncthreads()
    for s in range(steps):
        if inside:
            now, before = _turn(size, s, per, y, units)
            upcoming = _live(mask, b, s + 1)
            c_prev = _lstm_unit(b, j, staged[before:before + units], Us, c_prev, live, rmask, act, ract, s, gates,
                                hs, cs, staged[now:now + units])
            live = upcoming
        cuda.syncthreads()


def lstm_forward(x, W, bias, U, h0, c0, mask, rmask, act, ract, first, count, gates, hs, cs):
    """The LSTM's states and activated gates (i, f, c̃, o) at every step."""
    _projection(x, W, bias, first, count, gates)
    time_loop((_lstm_sequence_staged, _lstm_sequence, _lstm_step), U, hs.shape[2], hs.shape[2], hs.shape[1], False,
              (h0, c0, flat(U), mask, rmask, act, ract, first, count), (gates, hs, cs))


@cuda.jit(device=True)
def _lstm_back_unit(b, j, dn, UTf, dhs, dc, carried, later, live, cs, c0, rmask, act, ract, s, gates, dh0, dc0,
                    dnow):
    """Unit j of sample b at step s of the walk back: dn holds step s + 1's gate gradients (the sample's row),
    UTf Uᵀ flattened (4·units × units); dc the cell state's gradient from step s + 1 (dc_last at the last step),
    carried the state gradient kept from step s + 1 (read where step s + 1 is masked), later and live step s + 1's
    and step s's mask entries. Writes step s's gate gradients over its gates, and into dnow too (a staged walk's
    next row); s = −1 leaves step 0's state gradient in dh0. Returns (dh0, dc0)[b, j] as stored (what a staged
    walk keeps for the next step)."""
    steps, units = gates.shape[1], dh0.shape[1]
    t = max(s, 0)
    # The step's values before the walk (recurrent._live; at s = −1, step 0's: read, not used).
    incoming = _incoming(dhs, b, t, steps, j)
    gi, gf = gates[b, t, j], gates[b, t, units + j]
    gc, go = gates[b, t, 2 * units + j], gates[b, t, 3 * units + j]
    c_prev = c0[b, j] if t == 0 else cs[b, t - 1, j]
    c_here = cs[b, t, j]
    dh = 0.0
    if s + 1 < steps:
        if later:  # Σ_k (d_k·U_kᵀ)[j] ⊙ m_k[j], the four sums in one walk, each in order
            t_i = t_f = t_c = t_o = 0.0
            for m in range(units):
                t_i += dn[m] * UTf[m * units + j]
                t_f += dn[units + m] * UTf[(units + m) * units + j]
                t_c += dn[2 * units + m] * UTf[(2 * units + m) * units + j]
                t_o += dn[3 * units + m] * UTf[(3 * units + m) * units + j]
            dh += t_i * _dropped(rmask, b, j)
            dh += t_f * _dropped(rmask, b, units + j)
            dh += t_c * _dropped(rmask, b, 2 * units + j)
            dh += t_o * _dropped(rmask, b, 3 * units + j)
        else:
            dh = carried
    if s < 0:
        dh0[b, j] = dh
        return dh0[b, j], dc0[b, j]
    g = dh + incoming
    dh0[b, j] = g
    if not live:
        for k in range(4):
            gates[b, s, k * units + j] = 0.0
            dnow[k * units + j] = 0.0
        dc0[b, j] = dc
        return dh0[b, j], dc0[b, j]
    a = _activate(act, c_here)
    dc_here = dc + g * go * _derivative(act, a)
    gates[b, s, j] = dc_here * gc * _derivative(ract, gi)
    gates[b, s, units + j] = dc_here * c_prev * _derivative(ract, gf)
    gates[b, s, 2 * units + j] = dc_here * gi * _derivative(act, gc)
    gates[b, s, 3 * units + j] = g * a * _derivative(ract, go)
    for k in range(4):
        dnow[k * units + j] = gates[b, s, k * units + j]
    dc0[b, j] = dc_here * gf
    return dh0[b, j], dc0[b, j]


@cuda.jit(device=True)
def _lstm_back_cell(i, j, dhs, dc_last, cs, c0, UTf, mask, rmask, act, ract, first, count, s, gates, dh0, dc0):
    """The unit reading step s + 1's gate gradients and Uᵀ from global memory, and its carried gradients from
    dh0 and dc0."""
    steps = gates.shape[1]
    if i < count and j < dh0.shape[1]:
        b, t = first + i, max(s, 0)
        dn = gates[b, min(s + 1, steps - 1)]
        dc = dc_last[b, j] if t == steps - 1 else dc0[b, j]
        _lstm_back_unit(b, j, dn, UTf, dhs, dc, dh0[b, j], _live(mask, b, s + 1), _live(mask, b, s), cs, c0,
                        rmask, act, ract, s, gates, dh0, dc0, gates[b, t])


@cuda.jit(**KERNEL)
def _lstm_back_step(dhs, dc_last, cs, c0, UTf, mask, rmask, act, ract, first, count, s, gates, dh0, dc0):
    j, i = cuda.grid(2)  # x across the units: a warp writes a sample's state in a row
    _lstm_back_cell(i, j, dhs, dc_last, cs, c0, UTf, mask, rmask, act, ract, first, count, s, gates, dh0, dc0)


@wide(MAX_BLOCK)  # (an unstaged whole loop: a block of up to 1,024 units)
def _lstm_back_sequence(dhs, dc_last, cs, c0, UTf, mask, rmask, act, ract, first, count, gates, dh0, dc0):
    i, j = _sequence_thread()
    for s in range(gates.shape[1] - 1, -2, -1):
        _lstm_back_cell(i, j, dhs, dc_last, cs, c0, UTf, mask, rmask, act, ract, first, count, s, gates, dh0, dc0)
        cuda.syncthreads()


@cuda.jit(**KERNEL)
def _lstm_back_sequence_staged(dhs, dc_last, cs, c0, UTf, mask, rmask, act, ract, first, count, gates, dh0, dc0):
    """The walk back with Uᵀ and the block's gate gradients in shared memory (Uᵀ, then two rows of 4·units a
    sample in turn); the carried gradients stay in registers."""
    units, per = dh0.shape[1], cuda.blockDim.y
    width = 4 * units
    (i, j), y = _sequence_thread(), cuda.threadIdx.y
    staged = cuda.shared.array(0, numba.float32)
    _stage(UTf, staged, per, units)
    size = UTf.shape[0]
    UTs = staged[:size]
    cuda.syncthreads()
    steps = gates.shape[1]
    b, inside = first + i, i < count
    carried, dc, later, live = dh0[first, j], dc_last[first, j], False, False
    if inside:
        dc, live = dc_last[b, j], _live(mask, b, steps - 1)
    for s in range(steps - 1, -2, -1):
        if inside:
            now, after = _turn(size, s, per, y, width)
            upcoming = _live(mask, b, s - 1)
            carried, dc = _lstm_back_unit(b, j, staged[after:after + width], UTs, dhs, dc, carried, later, live, cs,
                                          c0, rmask, act, ract, s, gates, dh0, dc0, staged[now:now + width])
            later, live = live, upcoming
        cuda.syncthreads()


def lstm_backward(dhs, dc_last, cs, c0, UT, mask, rmask, act, ract, first, count, gates, dh0, dc0):
    """Overwrites gates with dpre; dh0, dc0 = the gradients w.r.t. the initial states."""
    time_loop((_lstm_back_sequence_staged, _lstm_back_sequence, _lstm_back_step), UT, UT.shape[1], UT.shape[0],
              gates.shape[1], True, (dhs, dc_last, cs, c0, flat(UT), mask, rmask, act, ract, first, count),
              (gates, dh0, dc0))


KERNELS = ("lstm_forward", "lstm_backward")
