"""CUDA twins of nnctl/engine/cpu/recurrent.py: SimpleRNN here, the LSTM in recurrent_lstm.py and the GRU in
recurrent_gru.py (over this module's helpers), forward and backward through time, and the recurrent GEMM's inputs
— same names, arguments and shapes as the CPU kernels (their comment block there is this module's too).

The input projection x_s·W + bias of every step is one launch over samples × steps × gate columns, written
into the buffer the time loop then reads (`gates`; SimpleRNN's `hs`). The time loop runs one thread per
(sample, unit), computing every gate of its unit. A step needs the previous step's state of its own sample
only, so the whole loop is **one launch** (`_*_sequence`): a block holds every unit of a few samples and
walks the steps, a `syncthreads` between them making each step's states visible to the next (Python launches
cost tens of microseconds each: 500 steps a batch would dominate an epoch). Where the recurrent kernel and two
rows of state a sample fit in shared memory (`STAGED`, `_staged_bytes`), the whole loop stages them there
(`_*_sequence_staged`): each step reads h_{s−1} (the walk back: step s + 1's gate gradients) and U from shared
memory, not from global memory just written by the block's other threads. Where a sample's units do not fit
one block (units > 1024), or with `WHOLE_SEQUENCE = False`, the loop is one launch per step (`_*_step`). The
forms share each cell's function (`_*_unit`, handed the previous row and the flattened weights wherever they
live), so all three give the same bytes. The backward fuses step s's cell with step s + 1's
state gradient (Σ_k d_k·U_kᵀ ⊙ m_k, which needs every unit's d of step s + 1), one step of the walk per step
plus a last one for step 0's, carrying the running dh (and the LSTM's dc) in the `dh0` (`dc0`) outputs. Sums
run over the units in order.
"""

from __future__ import annotations

import math

import numba
from numba import cuda

from nnctl.engine.cpu.fastmath import HARD_SIGMOID, RELU, SIGMOID, TANH
from nnctl.engine.cuda import blas
from nnctl.engine.cuda.dense import sigmoid
from nnctl.engine.cuda.launch import KERNEL, SIMULATED, TILE, cells, grid2, on, view, wide

WHOLE_SEQUENCE = True  # one launch per time loop where a sample's units fit one block (tests turn it off)
# A whole loop keeps the recurrent kernel and its block's states in shared memory where they fit (an LSTM of up
# to 54 units): each step reads h_{s−1} and U there instead of from global memory, which other threads of the
# block have just written. Same cells, same order: the same bytes (tests turn it off to compare).
STAGED = True
SHARED_BYTES = 48 * 1024  # dynamic shared memory a block gets without opting in
MAX_BLOCK = 1024  # CUDA's threads per block
# Threads a block aims at: few samples a block spread the batch over many multiprocessors (each block walks its
# samples' steps alone); the simulator runs each thread as an OS thread.
SEQUENCE_BLOCK = 8 if SIMULATED else 64


def flat(array):
    """The array as one row (the loops' flattened weights), made once per array."""
    return view(array, "flat", lambda a: a.reshape(a.size))


def _staged_bytes(weights: int, threads, row: int) -> int:
    """The dynamic shared memory a staged whole loop needs — the recurrent kernel's `weights` floats and two rows
    of `row` floats for each of the block's samples — or 0 where that does not fit (STAGED off: 0)."""
    size = 4 * (weights + 2 * threads[1] * row)
    return size if STAGED and size <= SHARED_BYTES else 0


def time_loop(kernels, weights, units: int, row: int, steps: int, backward: bool, before: tuple, after: tuple = ()):
    """One time loop in the form that fits (the module's docstring): `kernels` = (staged, whole, step). Staged in
    shared memory where `weights` (U, or Uᵀ walking back) and two rows of `row` floats a sample fit, else the whole
    loop in one launch, else one launch a step — forward over steps 0…T−1, backward over T−1…0 and then −1 (step
    0's state gradient alone). The kernels take `before` + `after`, the step kernel s between them; `before` ends
    with the batch part's count."""
    staged_kernel, whole_kernel, step_kernel = kernels
    whole, blocks, threads = _geometry(before[-1], units)
    if whole:
        size = _staged_bytes(weights.size, threads, row)
        if size:
            staged_kernel[on(blocks, threads, size)](*before, *after)
        else:
            whole_kernel[on(blocks, threads)](*before, *after)
        return
    for s in range(steps - 1, -2, -1) if backward else range(steps):
        step_kernel[on(blocks, threads)](*before, s, *after)


def _geometry(count: int, units: int):
    """(one launch for the whole loop?, blocks, threads). Whole-loop blocks are (units, samples) threads:
    a warp runs along the units, so a step's state writes and U's columns are read and written in a row."""
    if WHOLE_SEQUENCE and units <= MAX_BLOCK:
        per = max(1, min(count, SEQUENCE_BLOCK // units))
        return True, ((count + per - 1) // per,), (units, per)
    tiles = (units + TILE - 1) // TILE, (count + TILE - 1) // TILE  # a step launch: a thread a (unit, sample)
    return False, tiles, (TILE, TILE)


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
def _live(mask, b, s):
    """Whether sample b's step s is real: its mask's entry (False for a step past either end, −1 or steps). The
    staged loops read it a step ahead, so that a step waits on no global load before its walk over shared
    memory; the units read their step's other values before that walk, whose time their waits then overlap (a
    GPU does not move a load above a loop: read after it, each would wait on its own)."""
    steps = mask.shape[1]
    return 0 <= s < steps and mask[b, min(max(s, 0), steps - 1)] != 0


@cuda.jit(device=True)
def _previous(h0, hs, b, s, m):
    return h0[b, m] if s == 0 else hs[b, s - 1, m]


@cuda.jit(device=True)
def _incoming(dhs, b, s, steps, j):
    """The loss gradient w.r.t. hs[b, s, j]; dhs (n, 1, u) holds the last step's alone."""
    if dhs.shape[1] == steps:
        return dhs[b, s, j]
    return dhs[b, 0, j] if s == steps - 1 else 0.0


@cuda.jit(**KERNEL)
def _project(x, W, bias, first, count, out):
    """out[b, s, col] = x[k, b, s]·W[:, col] + bias[col], k = col's gate when x holds one input per gate."""
    col, row0, row_step = cells()
    steps = out.shape[1]
    if col < out.shape[2]:
        for row in range(row0, count * steps, row_step):
            b, s = first + row // steps, row % steps
            k = col // (W.shape[1] // x.shape[0])
            total = 0.0
            for f in range(W.shape[0]):
                total += x[k, b, s, f] * W[f, col]
            out[b, s, col] = total + bias[col]


@cuda.jit(**KERNEL)
def _add_bias(rows, bias):
    col, row0, row_step = cells()
    if col < rows.shape[1]:
        for r in range(row0, rows.shape[0], row_step):
            rows[r, col] += bias[col]


def _projection(x, W, bias, first, count, out):
    """The input projection of every step: with one input for every gate, one GEMM over samples × steps (cuBLAS
    past blas.py's size threshold) and the bias; with an input a gate (input dropout), a thread an output."""
    steps, width = out.shape[1], out.shape[2]
    if x.shape[0] == 1:
        rows = view(out, ("rows", first, count), lambda a: a[first:first + count].reshape(count * steps, width))
        inputs = view(x, ("rows", first, count), lambda a: a[0, first:first + count].reshape(count * steps, a.shape[3]))
        blas.gemm(inputs, W, rows)
        _add_bias[on(*grid2(count * steps, width))](rows, bias)
        return
    blocks, threads = grid2(count * steps, width)
    _project[on(blocks, threads)](x, W, bias, first, count, out)


@cuda.jit(**KERNEL)
def _recurrent_inputs(hs, h0, rmask, first, count, out):
    col, row0, row_step = cells()
    steps, units = hs.shape[1], hs.shape[2]
    if col < out.shape[2]:
        for row in range(row0, count * steps, row_step):
            b, s = first + row // steps, row % steps
            out[b, s, col] = _previous(h0, hs, b, s, col % units) * _dropped(rmask, b, col)


def recurrent_inputs(hs, h0, rmask, first, count, out):
    """out[b, s, gate k] = h_{s−1} ⊙ m_k: the left operand of dU's GEMM (one gate block without dropout)."""
    blocks, threads = grid2(count * hs.shape[1], out.shape[2])
    _recurrent_inputs[on(blocks, threads)](hs, h0, rmask, first, count, out)


@cuda.jit(device=True)
def _simple_rnn_unit(b, j, hp, Uf, live, rmask, act, s, hs, hn):
    """Unit j of sample b at step s (hs holding the input projection; `live`: the step is real): hp holds
    h_{s−1}, Uf the recurrent kernel flattened; h_s goes into hs and hn (a staged loop's next row)."""
    units = hs.shape[2]
    if live:  # Σ_m (h_{s−1} ⊙ m)[m] · U[m, j], in order
        x = hs[b, s, j]
        total = 0.0
        for m in range(units):
            total += hp[m] * _dropped(rmask, b, m) * Uf[m * units + j]
        hs[b, s, j] = _activate(act, x + total)
    else:
        hs[b, s, j] = hp[j]
    hn[j] = hs[b, s, j]


@cuda.jit(device=True)
def _simple_rnn_cell(i, j, hs, h0, Uf, mask, rmask, act, first, count, s):
    if i < count and j < hs.shape[2]:
        b = first + i
        _simple_rnn_unit(b, j, h0[b] if s == 0 else hs[b, s - 1], Uf, _live(mask, b, s), rmask, act, s, hs,
                         hs[b, s])


@cuda.jit(**KERNEL)
def _simple_rnn_step(hs, h0, Uf, mask, rmask, act, first, count, s):
    j, i = cuda.grid(2)  # x across the units: a warp writes a sample's state in a row
    _simple_rnn_cell(i, j, hs, h0, Uf, mask, rmask, act, first, count, s)


@wide(MAX_BLOCK)  # (an unstaged whole loop: a block of up to 1,024 units)
def _simple_rnn_sequence(hs, h0, Uf, mask, rmask, act, first, count):
    i, j = _sequence_thread()
    for s in range(hs.shape[1]):
        _simple_rnn_cell(i, j, hs, h0, Uf, mask, rmask, act, first, count, s)
        cuda.syncthreads()


@cuda.jit(device=True)
def _stage(weights, staged, per, units):
    """The block's threads copy `weights` into the start of the shared `staged` (a device function returns no
    array of its own: the caller takes the part)."""
    for e in range(cuda.threadIdx.y * units + cuda.threadIdx.x, weights.shape[0], per * units):
        staged[e] = weights[e]


@cuda.jit(device=True)
def _turn(size, s, per, y, row):
    """Where sample y's two rows of `row` floats sit in a staged loop's shared memory (after the `size` floats of
    weights), as (step s's, the other's): the rows take turns, step by step."""
    return size + ((s % 2) * per + y) * row, size + ((1 - s % 2) * per + y) * row


@cuda.jit(**KERNEL)
def _simple_rnn_sequence_staged(hs, h0, Uf, mask, rmask, act, first, count):
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
            _simple_rnn_unit(b, j, staged[before:before + units], Us, live, rmask, act, s, hs,
                             staged[now:now + units])
            live = upcoming
        cuda.syncthreads()


def simple_rnn_forward(x, W, bias, U, h0, mask, rmask, act, first, count, hs):
    """hs[b, s] = act(x_s·W + bias + (h_{s−1} ⊙ m)·U) at real steps, h_{s−1} at masked ones."""
    _projection(x, W, bias, first, count, hs)
    time_loop((_simple_rnn_sequence_staged, _simple_rnn_sequence, _simple_rnn_step), U, hs.shape[2], hs.shape[2],
              hs.shape[1], False, (hs, h0, flat(U), mask, rmask, act, first, count))


@cuda.jit(device=True)
def _simple_rnn_back_unit(b, j, dn, UTf, dhs, hs, later, live, rmask, act, s, dpre, dh0, dnow):
    """Unit j of sample b at step s of the walk back (`later`, `live`: steps s + 1 and s are real): dn holds
    step s + 1's dpre (the sample's row), UTf Uᵀ flattened; step s's dpre goes into dpre and dnow (a staged
    walk's next row)."""
    steps, units = hs.shape[1], hs.shape[2]
    t = max(s, 0)  # (at s = −1, step 0's values: read, not used)
    carried, incoming, h = dh0[b, j], _incoming(dhs, b, t, steps, j), hs[b, t, j]
    dh = 0.0
    if s + 1 < steps:
        if later:  # (d·Uᵀ)[j] ⊙ m[j], the terms in order
            total = 0.0
            for m in range(units):
                total += dn[m] * UTf[m * units + j]
            dh = total * _dropped(rmask, b, j)
        else:
            dh = carried
    if s < 0:  # the walk's last stop: step 0's state gradient alone
        dh0[b, j] = dh
        return
    g = dh + incoming
    dpre[b, s, j] = g * _derivative(act, h) if live else 0.0
    dnow[j] = dpre[b, s, j]
    dh0[b, j] = g


@cuda.jit(device=True)
def _simple_rnn_back_cell(i, j, dhs, hs, UTf, mask, rmask, act, first, count, s, dpre, dh0):
    steps = hs.shape[1]
    if i < count and j < hs.shape[2]:
        b = first + i
        _simple_rnn_back_unit(b, j, dpre[b, min(s + 1, steps - 1)], UTf, dhs, hs, _live(mask, b, s + 1),
                              _live(mask, b, s), rmask, act, s, dpre, dh0, dpre[b, max(s, 0)])


@cuda.jit(**KERNEL)
def _simple_rnn_back_step(dhs, hs, UTf, mask, rmask, act, first, count, s, dpre, dh0):
    j, i = cuda.grid(2)  # x across the units: a warp writes a sample's state in a row
    _simple_rnn_back_cell(i, j, dhs, hs, UTf, mask, rmask, act, first, count, s, dpre, dh0)


@wide(MAX_BLOCK)  # (an unstaged whole loop: a block of up to 1,024 units)
def _simple_rnn_back_sequence(dhs, hs, UTf, mask, rmask, act, first, count, dpre, dh0):
    i, j = _sequence_thread()
    for s in range(hs.shape[1] - 1, -2, -1):
        _simple_rnn_back_cell(i, j, dhs, hs, UTf, mask, rmask, act, first, count, s, dpre, dh0)
        cuda.syncthreads()


@cuda.jit(**KERNEL)
def _simple_rnn_back_sequence_staged(dhs, hs, UTf, mask, rmask, act, first, count, dpre, dh0):
    """The walk back with Uᵀ and the block's dpre rows in shared memory."""
    units, per, steps = hs.shape[2], cuda.blockDim.y, hs.shape[1]
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
            now, after = _turn(size, s, per, y, units)
            upcoming = _live(mask, b, s - 1)
            _simple_rnn_back_unit(b, j, staged[after:after + units], UTs, dhs, hs, later, live, rmask, act, s,
                                  dpre, dh0, staged[now:now + units])
            later, live = live, upcoming
        cuda.syncthreads()


def simple_rnn_backward(dhs, hs, UT, mask, rmask, act, first, count, dpre, dh0):
    """dpre = the gradient w.r.t. each step's pre-activation; dh0 = w.r.t. the initial state."""
    time_loop((_simple_rnn_back_sequence_staged, _simple_rnn_back_sequence, _simple_rnn_back_step), UT, hs.shape[2],
              hs.shape[2], hs.shape[1], True, (dhs, hs, flat(UT), mask, rmask, act, first, count), (dpre, dh0))


KERNELS = ("recurrent_inputs", "simple_rnn_forward", "simple_rnn_backward")
