"""CUDA twins of nnctl/engine/cpu/recurrent.py: SimpleRNN, LSTM and (in recurrent_gru.py) GRU, forward and
backward through time, and the recurrent GEMM's inputs — same names, arguments and shapes as the CPU kernels
(their comment block there is this module's too).

The input projection x_s·W + bias of every step is one launch over samples × steps × gate columns, written
into the buffer the time loop then reads (`gates`; SimpleRNN's `hs`). The time loop runs one thread per
(sample, unit), computing every gate of its unit. A step needs the previous step's state of its own sample
only, so the whole loop is **one launch** (`_*_sequence`): a block holds every unit of a few samples and
walks the steps, a `syncthreads` between them making each step's states visible to the next (Python launches
cost tens of microseconds each: 500 steps a batch would dominate an epoch). Where a sample's units do not fit
one block (units > 1024), or with `WHOLE_SEQUENCE = False`, the loop is one launch per step (`_*_step`) over
the same cell functions, so both forms give the same bytes. The backward fuses step s's cell with step s + 1's
state gradient (Σ_k d_k·U_kᵀ ⊙ m_k, which needs every unit's d of step s + 1), one step of the walk per step
plus a last one for step 0's, carrying the running dh (and the LSTM's dc) in the `dh0` (`dc0`) outputs. Sums
run over the units in order.
"""

from __future__ import annotations

import math

from numba import cuda

from nnctl.engine.cpu.fastmath import HARD_SIGMOID, RELU, SIGMOID, TANH
from nnctl.engine.cuda import blas
from nnctl.engine.cuda.dense import sigmoid
from nnctl.engine.cuda.launch import KERNEL, SIMULATED, grid2

WHOLE_SEQUENCE = True  # one launch per time loop where a sample's units fit one block (tests turn it off)
MAX_BLOCK = 1024  # CUDA's threads per block
# Threads a block aims at: few samples a block spread the batch over many multiprocessors (each block walks its
# samples' steps alone); the simulator runs each thread as an OS thread.
SEQUENCE_BLOCK = 8 if SIMULATED else 64


def _geometry(count: int, units: int):
    """(one launch for the whole loop?, blocks, threads). Whole-loop blocks are (units, samples) threads:
    a warp runs along the units, so a step's state writes and U's columns are read and written in a row."""
    if WHOLE_SEQUENCE and units <= MAX_BLOCK:
        per = max(1, min(count, SEQUENCE_BLOCK // units))
        return True, ((count + per - 1) // per,), (units, per)
    blocks, threads = grid2(count, units)
    return False, blocks, threads


@cuda.jit(device=True)
def _sequence_thread():
    """(sample within the part, unit) of a whole-loop thread."""
    return cuda.blockIdx.x * cuda.blockDim.y + cuda.threadIdx.y, cuda.threadIdx.x


@cuda.jit(device=True)
def _activate(code, v):
    if code == RELU:
        return v if v > 0 else 0.0
    if code == SIGMOID:
        return sigmoid(v)
    if code == TANH:
        return math.tanh(v)
    if code == HARD_SIGMOID:
        return min(max(v + 3.0, 0.0), 6.0) / 6.0
    return v


@cuda.jit(device=True)
def _derivative(code, y):
    """The activation's derivative as a function of its output y."""
    if code == RELU:
        return 1.0 if y > 0 else 0.0
    if code == SIGMOID:
        return y * (1.0 - y)
    if code == TANH:
        return 1.0 - y * y
    if code == HARD_SIGMOID:
        return 1.0 / 6.0 if 0 < y < 1 else 0.0
    return 1.0


@cuda.jit(device=True)
def _dropped(rmask, b, col):
    """The recurrent-dropout multiplier of h's entry feeding gate column `col` (1 without dropout)."""
    return rmask[b, col] if rmask.shape[0] > 0 else 1.0


@cuda.jit(device=True)
def _previous(h0, hs, b, s, m):
    return h0[b, m] if s == 0 else hs[b, s - 1, m]


@cuda.jit(device=True)
def _recurrent_product(h0, hs, U, rmask, b, s, col):
    """Σ_m (h_{s−1} ⊙ m_k)[m] · U[m, col], gate k being col's."""
    units = U.shape[0]
    k0 = col - col % units
    total = 0.0
    for m in range(units):
        total += _previous(h0, hs, b, s, m) * _dropped(rmask, b, k0 + m) * U[m, col]
    return total


@cuda.jit(device=True)
def _gate_gradient(d, col, b, s, UT, gate, rmask, j):
    """(d_k·U_kᵀ)[j] ⊙ m_k[j] for gate k = `gate`, d_k in d[b, s, col : col + units]."""
    units = UT.shape[1]
    total = 0.0
    for m in range(units):
        total += d[b, s, col + m] * UT[gate * units + m, j]
    return total * _dropped(rmask, b, gate * units + j)


@cuda.jit(device=True)
def _incoming(dhs, b, s, steps, j):
    """The loss gradient w.r.t. hs[b, s, j]; dhs (n, 1, u) holds the last step's alone."""
    if dhs.shape[1] == steps:
        return dhs[b, s, j]
    return dhs[b, 0, j] if s == steps - 1 else 0.0


@cuda.jit(**KERNEL)
def _project(x, W, bias, first, count, out):
    """out[b, s, col] = x[k, b, s]·W[:, col] + bias[col], k = col's gate when x holds one input per gate."""
    row, col = cuda.grid(2)
    steps = out.shape[1]
    if row < count * steps and col < out.shape[2]:
        b, s = first + row // steps, row % steps
        k = col // (W.shape[1] // x.shape[0])
        total = 0.0
        for f in range(W.shape[0]):
            total += x[k, b, s, f] * W[f, col]
        out[b, s, col] = total + bias[col]


@cuda.jit(**KERNEL)
def _add_bias(rows, bias):
    r, col = cuda.grid(2)
    if r < rows.shape[0] and col < rows.shape[1]:
        rows[r, col] += bias[col]


def _projection(x, W, bias, first, count, out):
    """The input projection of every step: with one input for every gate, one GEMM over samples × steps (cuBLAS
    past blas.py's size threshold) and the bias; with an input a gate (input dropout), a thread an output."""
    steps, width = out.shape[1], out.shape[2]
    if x.shape[0] == 1:
        rows = out[first:first + count].reshape(count * steps, width)
        blas.gemm(x[0, first:first + count].reshape(count * steps, x.shape[3]), W, rows)
        _add_bias[grid2(count * steps, width)](rows, bias)
        return
    blocks, threads = grid2(count * steps, width)
    _project[blocks, threads](x, W, bias, first, count, out)


@cuda.jit(**KERNEL)
def _recurrent_inputs(hs, h0, rmask, first, count, out):
    row, col = cuda.grid(2)
    steps, units = hs.shape[1], hs.shape[2]
    if row < count * steps and col < out.shape[2]:
        b, s = first + row // steps, row % steps
        out[b, s, col] = _previous(h0, hs, b, s, col % units) * _dropped(rmask, b, col)


def recurrent_inputs(hs, h0, rmask, first, count, out):
    """out[b, s, gate k] = h_{s−1} ⊙ m_k: the left operand of dU's GEMM (one gate block without dropout)."""
    blocks, threads = grid2(count * hs.shape[1], out.shape[2])
    _recurrent_inputs[blocks, threads](hs, h0, rmask, first, count, out)


@cuda.jit(device=True)
def _simple_rnn_cell(i, j, hs, h0, U, mask, rmask, act, first, count, s):
    if i < count and j < hs.shape[2]:
        b = first + i
        if mask[b, s] != 0:
            hs[b, s, j] = _activate(act, hs[b, s, j] + _recurrent_product(h0, hs, U, rmask, b, s, j))
        else:
            hs[b, s, j] = _previous(h0, hs, b, s, j)


@cuda.jit(**KERNEL)
def _simple_rnn_step(hs, h0, U, mask, rmask, act, first, count, s):
    i, j = cuda.grid(2)
    _simple_rnn_cell(i, j, hs, h0, U, mask, rmask, act, first, count, s)


@cuda.jit(**KERNEL)
def _simple_rnn_sequence(hs, h0, U, mask, rmask, act, first, count):
    i, j = _sequence_thread()
    for s in range(hs.shape[1]):
        _simple_rnn_cell(i, j, hs, h0, U, mask, rmask, act, first, count, s)
        cuda.syncthreads()


def simple_rnn_forward(x, W, bias, U, h0, mask, rmask, act, first, count, hs):
    """hs[b, s] = act(x_s·W + bias + (h_{s−1} ⊙ m)·U) at real steps, h_{s−1} at masked ones."""
    _projection(x, W, bias, first, count, hs)
    whole, blocks, threads = _geometry(count, hs.shape[2])
    if whole:
        _simple_rnn_sequence[blocks, threads](hs, h0, U, mask, rmask, act, first, count)
        return
    for s in range(hs.shape[1]):
        _simple_rnn_step[blocks, threads](hs, h0, U, mask, rmask, act, first, count, s)


@cuda.jit(device=True)
def _simple_rnn_back_cell(i, j, dhs, hs, UT, mask, rmask, act, first, count, s, dpre, dh0):
    steps = hs.shape[1]
    if i < count and j < hs.shape[2]:
        b = first + i
        dh = 0.0
        if s + 1 < steps:
            dh = _gate_gradient(dpre, 0, b, s + 1, UT, 0, rmask, j) if mask[b, s + 1] != 0 else dh0[b, j]
        if s < 0:  # the last launch: step 0's state gradient alone
            dh0[b, j] = dh
            return
        g = dh + _incoming(dhs, b, s, steps, j)
        dpre[b, s, j] = g * _derivative(act, hs[b, s, j]) if mask[b, s] != 0 else 0.0
        dh0[b, j] = g


@cuda.jit(**KERNEL)
def _simple_rnn_back_step(dhs, hs, UT, mask, rmask, act, first, count, s, dpre, dh0):
    i, j = cuda.grid(2)
    _simple_rnn_back_cell(i, j, dhs, hs, UT, mask, rmask, act, first, count, s, dpre, dh0)


@cuda.jit(**KERNEL)
def _simple_rnn_back_sequence(dhs, hs, UT, mask, rmask, act, first, count, dpre, dh0):
    i, j = _sequence_thread()
    for s in range(hs.shape[1] - 1, -2, -1):
        _simple_rnn_back_cell(i, j, dhs, hs, UT, mask, rmask, act, first, count, s, dpre, dh0)
        cuda.syncthreads()


def simple_rnn_backward(dhs, hs, UT, mask, rmask, act, first, count, dpre, dh0):
    """dpre = the gradient w.r.t. each step's pre-activation; dh0 = w.r.t. the initial state."""
    whole, blocks, threads = _geometry(count, hs.shape[2])
    if whole:
        _simple_rnn_back_sequence[blocks, threads](dhs, hs, UT, mask, rmask, act, first, count, dpre, dh0)
        return
    for s in range(hs.shape[1] - 1, -2, -1):
        _simple_rnn_back_step[blocks, threads](dhs, hs, UT, mask, rmask, act, first, count, s, dpre, dh0)


@cuda.jit(device=True)
def _lstm_cell(i, j, h0, c0, U, mask, rmask, act, ract, first, count, s, gates, hs, cs):
    units = hs.shape[2]
    if i < count and j < units:
        b = first + i
        c_prev = c0[b, j] if s == 0 else cs[b, s - 1, j]
        if mask[b, s] == 0:
            hs[b, s, j], cs[b, s, j] = _previous(h0, hs, b, s, j), c_prev
            return
        # The four gates' recurrent sums in one walk over h (each in order, as _recurrent_product's: the same
        # bytes): four independent chains a quarter as long, and h read once a unit.
        p_i = p_f = p_c = p_o = 0.0
        for m in range(units):
            h = _previous(h0, hs, b, s, m)
            p_i += h * _dropped(rmask, b, m) * U[m, j]
            p_f += h * _dropped(rmask, b, units + m) * U[m, units + j]
            p_c += h * _dropped(rmask, b, 2 * units + m) * U[m, 2 * units + j]
            p_o += h * _dropped(rmask, b, 3 * units + m) * U[m, 3 * units + j]
        z_i, z_f = gates[b, s, j] + p_i, gates[b, s, units + j] + p_f
        z_c, z_o = gates[b, s, 2 * units + j] + p_c, gates[b, s, 3 * units + j] + p_o
        gi, gf, gc, go = _activate(ract, z_i), _activate(ract, z_f), _activate(act, z_c), _activate(ract, z_o)
        c = gf * c_prev + gi * gc
        hs[b, s, j], cs[b, s, j] = go * _activate(act, c), c
        gates[b, s, j], gates[b, s, units + j], gates[b, s, 2 * units + j], gates[b, s, 3 * units + j] = (
            gi, gf, gc, go)


@cuda.jit(**KERNEL)
def _lstm_step(h0, c0, U, mask, rmask, act, ract, first, count, s, gates, hs, cs):
    i, j = cuda.grid(2)
    _lstm_cell(i, j, h0, c0, U, mask, rmask, act, ract, first, count, s, gates, hs, cs)


@cuda.jit(**KERNEL)
def _lstm_sequence(h0, c0, U, mask, rmask, act, ract, first, count, gates, hs, cs):
    i, j = _sequence_thread()
    for s in range(hs.shape[1]):
        _lstm_cell(i, j, h0, c0, U, mask, rmask, act, ract, first, count, s, gates, hs, cs)
        cuda.syncthreads()


def lstm_forward(x, W, bias, U, h0, c0, mask, rmask, act, ract, first, count, gates, hs, cs):
    """The LSTM's states and activated gates (i, f, c̃, o) at every step."""
    _projection(x, W, bias, first, count, gates)
    whole, blocks, threads = _geometry(count, hs.shape[2])
    if whole:
        _lstm_sequence[blocks, threads](h0, c0, U, mask, rmask, act, ract, first, count, gates, hs, cs)
        return
    for s in range(hs.shape[1]):
        _lstm_step[blocks, threads](h0, c0, U, mask, rmask, act, ract, first, count, s, gates, hs, cs)


@cuda.jit(device=True)
def _lstm_back_cell(i, j, dhs, dc_last, cs, c0, UT, mask, rmask, act, ract, first, count, s, gates, dh0, dc0):
    steps, units = gates.shape[1], UT.shape[1]
    if i < count and j < units:
        b = first + i
        dh = 0.0
        if s + 1 < steps:
            if mask[b, s + 1] != 0:  # Σ_k (d_k·U_kᵀ)[j] ⊙ m_k[j], the four sums in one walk (as _gate_gradient's)
                t_i = t_f = t_c = t_o = 0.0
                for m in range(units):
                    t_i += gates[b, s + 1, m] * UT[m, j]
                    t_f += gates[b, s + 1, units + m] * UT[units + m, j]
                    t_c += gates[b, s + 1, 2 * units + m] * UT[2 * units + m, j]
                    t_o += gates[b, s + 1, 3 * units + m] * UT[3 * units + m, j]
                dh += t_i * _dropped(rmask, b, j)
                dh += t_f * _dropped(rmask, b, units + j)
                dh += t_c * _dropped(rmask, b, 2 * units + j)
                dh += t_o * _dropped(rmask, b, 3 * units + j)
            else:
                dh = dh0[b, j]
        if s < 0:
            dh0[b, j] = dh
            return
        g = dh + _incoming(dhs, b, s, steps, j)
        dc = dc_last[b, j] if s == steps - 1 else dc0[b, j]
        dh0[b, j] = g
        if mask[b, s] == 0:
            for k in range(4):
                gates[b, s, k * units + j] = 0.0
            dc0[b, j] = dc
            return
        gi, gf = gates[b, s, j], gates[b, s, units + j]
        gc, go = gates[b, s, 2 * units + j], gates[b, s, 3 * units + j]
        c_prev = c0[b, j] if s == 0 else cs[b, s - 1, j]
        a = _activate(act, cs[b, s, j])
        dc_here = dc + g * go * _derivative(act, a)
        gates[b, s, j] = dc_here * gc * _derivative(ract, gi)
        gates[b, s, units + j] = dc_here * c_prev * _derivative(ract, gf)
        gates[b, s, 2 * units + j] = dc_here * gi * _derivative(act, gc)
        gates[b, s, 3 * units + j] = g * a * _derivative(ract, go)
        dc0[b, j] = dc_here * gf


@cuda.jit(**KERNEL)
def _lstm_back_step(dhs, dc_last, cs, c0, UT, mask, rmask, act, ract, first, count, s, gates, dh0, dc0):
    i, j = cuda.grid(2)
    _lstm_back_cell(i, j, dhs, dc_last, cs, c0, UT, mask, rmask, act, ract, first, count, s, gates, dh0, dc0)


@cuda.jit(**KERNEL)
def _lstm_back_sequence(dhs, dc_last, cs, c0, UT, mask, rmask, act, ract, first, count, gates, dh0, dc0):
    i, j = _sequence_thread()
    for s in range(gates.shape[1] - 1, -2, -1):
        _lstm_back_cell(i, j, dhs, dc_last, cs, c0, UT, mask, rmask, act, ract, first, count, s, gates, dh0, dc0)
        cuda.syncthreads()


def lstm_backward(dhs, dc_last, cs, c0, UT, mask, rmask, act, ract, first, count, gates, dh0, dc0):
    """Overwrites gates with dpre; dh0, dc0 = the gradients w.r.t. the initial states."""
    whole, blocks, threads = _geometry(count, UT.shape[1])
    if whole:
        _lstm_back_sequence[blocks, threads](dhs, dc_last, cs, c0, UT, mask, rmask, act, ract, first, count, gates,
                                             dh0, dc0)
        return
    for s in range(gates.shape[1] - 1, -2, -1):
        _lstm_back_step[blocks, threads](dhs, dc_last, cs, c0, UT, mask, rmask, act, ract, first, count, s, gates,
                                         dh0, dc0)


KERNELS = ("recurrent_inputs", "simple_rnn_forward", "simple_rnn_backward", "lstm_forward", "lstm_backward")
