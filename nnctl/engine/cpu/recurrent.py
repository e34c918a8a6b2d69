"""CPU kernels of the recurrent layers (SimpleRNN, LSTM, GRU): each time loop, forward and back, in one call.

Each kernel documents its loop and argument shapes; its NumPy oracle is in nnctl/engine/reference_recurrent.py.
"""

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

# simd.py's LLVM-IR helpers: the group product below is one more block of the same kind.
from nnctl.engine.cpu.simd import (
    LANES, _as_intp, _fma, _intp, _lane_mask, _load_block, _splat, _store_block, _vector,
)
from nnctl.engine.settings import KERNEL

LINEAR, RELU, SIGMOID, TANH, HARD_SIGMOID = range(5)
RECURRENT_ACTIVATIONS = {"linear": LINEAR, "relu": RELU, "sigmoid": SIGMOID, "tanh": TANH,
                         "hard_sigmoid": HARD_SIGMOID}

# Shared arguments (n samples, t steps, u units, g gates: 1 SimpleRNN, 4 LSTM, 3 GRU; float32, or float64 for
# gradient checks):
#   xw: (n, t, g·u), x_s·W + input bias for every step, gates in Keras's order (LSTM i, f, c, o; GRU z, r, h).
#       The LSTM and GRU forward kernels overwrite it with the activated gates (unspecified at masked steps),
#       and their backward kernels overwrite those with dpre: one buffer serves the three, two n·t·g·u arrays
#       fewer to allocate and to stream through memory (64 MB for the book's LSTM batch);
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
# dpre (n, t, g·u) = the loss gradient w.r.t. each step's pre-activations, which is also its gradient w.r.t. xw
# (0 at masked steps). The backward kernels never sum over samples or steps: the layer forms
# dU[:, gate k] = Σ_{b,s} recurrent_inputs[b, s, gate k]ᵀ · dpre[b, s, gate k] (GRU: drec for the h̃ gate; one
# GEMM per gate with recurrent dropout, one in all without), dW = xᵀ·dpre and db = Σ dpre with BLAS, in a fixed
# order.

# float32 transcendentals that vectorize. Numba's math.exp/math.tanh call libm one value at a time (~17 ns a
# tanh here, no SVML in llvmlite's wheels); these are exp(x) = 2^k · p(r), r = x − k·ln 2 (Cephes expf's
# polynomial), and Cephes tanhf's odd polynomial near 0, where tanh = 1 − 2/(e^{2|x|} + 1) would cancel.
# Max relative error against float64 on [−30, 30]: see tests/engine/test_recurrent_kernels.py.
_F = np.float32
_ZERO, _HALF, _ONE, _TWO, _THREE, _SIX = _F(0), _F(0.5), _F(1), _F(2), _F(3), _F(6)
# exp's argument range: 2^k stays a normal float for k in [−125, 127] (x in [−87, 88]), so nothing overflows.
_EXP_LO, _EXP_HI = _F(-87.0), _F(88.0)
_LOG2E, _LN2_HI, _LN2_LO = _F(1.44269504088896341), _F(0.693359375), _F(-2.12194440e-4)
_EXP_P = (_F(1.9875691500e-4), _F(1.3981999507e-3), _F(8.3334519073e-3), _F(4.1665795894e-2),
          _F(1.6666665459e-1), _F(5.0000001201e-1))
_TANH_P = (_F(-5.70498872745e-3), _F(2.06390887954e-2), _F(-5.37397155531e-2), _F(1.33314422036e-1),
           _F(-3.33332819422e-1))
_TANH_SMALL = _F(0.625)
# Without `reassoc`: it would let LLVM fold r = (x − k·ln2_hi) − k·ln2_lo into x − k·(ln2_hi + ln2_lo), which
# loses the bits the two-part ln 2 is there to keep.
EXACT = {**KERNEL, "fastmath": {"contract", "nsz"}}


@intrinsic
def _pow2(typingctx, k):
    """2^k as a float32, for a float32 k holding an integer in [−126, 127]: the exponent bits, no libm."""
    if k != types.float32:
        return None

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        biased = builder.add(builder.fptosi(args[0], i32), ir.Constant(i32, 127))
        return builder.bitcast(builder.shl(biased, ir.Constant(i32, 23)), ir.FloatType())

    return types.float32(k), codegen


@njit(**EXACT)
def exp32(x):
    """e^x for float32 x (clamped to [−87, 88])."""
    p0, p1, p2, p3, p4, p5 = _EXP_P
    x = min(max(x, _EXP_LO), _EXP_HI)
    k = np.floor(x * _LOG2E + _HALF)
    r = x - k * _LN2_HI
    r = r - k * _LN2_LO
    p = ((((p0 * r + p1) * r + p2) * r + p3) * r + p4) * r + p5
    return (p * (r * r) + r + _ONE) * _pow2(k)


@njit(**EXACT)
def sigmoid32(x):
    return _ONE / (_ONE + exp32(-x))


@njit(**EXACT)
def tanh32(x):
    t0, t1, t2, t3, t4 = _TANH_P
    z = x * x
    small = ((((t0 * z + t1) * z + t2) * z + t3) * z + t4) * z * x + x
    large = _ONE - _TWO / (exp32(abs(x) + abs(x)) + _ONE)
    large = large if x >= _ZERO else -large
    return small if abs(x) < _TANH_SMALL else large


def _sigmoid(x):
    """Compiled code only: sigmoid32 for float32, exact math for float64 (the gradient checks)."""


def _tanh(x):
    """Compiled code only: tanh32 for float32, math.tanh for float64."""


@overload(_sigmoid)
def _sigmoid_by_type(x):
    if x == types.float32:
        return lambda x: sigmoid32(x)
    return lambda x: 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


@overload(_tanh)
def _tanh_by_type(x):
    if x == types.float32:
        return lambda x: tanh32(x)
    return lambda x: math.tanh(x)


# The element-wise loops take whole 1-D views and index them from 0: with an index that may be negative
# (range(lo, hi)), Numba's wraparound check kept LLVM from vectorizing them (5 ns a tanh instead of ~1).

@njit(inline="always", **KERNEL)
def _activate(code, x):
    """x = act(x) in place; one loop per activation, so each vectorizes."""
    if code == TANH:
        for j in range(x.shape[0]):
            x[j] = _tanh(x[j])
    elif code == SIGMOID:
        for j in range(x.shape[0]):
            x[j] = _sigmoid(x[j])
    elif code == RELU:
        for j in range(x.shape[0]):
            x[j] = x[j] if x[j] > _ZERO else _ZERO
    elif code == HARD_SIGMOID:  # Keras 3: relu6(x + 3) / 6
        for j in range(x.shape[0]):
            x[j] = min(max(x[j] + _THREE, _ZERO), _SIX) / _SIX


@njit(inline="always", **KERNEL)
def _times_derivative(code, y, d):
    """d *= act'(·), from the activated values y (same length)."""
    if code == TANH:
        for j in range(d.shape[0]):
            d[j] *= _ONE - y[j] * y[j]
    elif code == SIGMOID:
        for j in range(d.shape[0]):
            d[j] *= y[j] * (_ONE - y[j])
    elif code == RELU:
        for j in range(d.shape[0]):
            d[j] = d[j] if y[j] > _ZERO else _ZERO
    elif code == HARD_SIGMOID:
        for j in range(d.shape[0]):
            d[j] = d[j] / _SIX if _ZERO < y[j] < _ONE else _ZERO


@njit(inline="always", **KERNEL)
def _scale_by_derivative(code, d, s):
    """d = s ⊙ act'(d) in place, d holding activated values on entry (the backward turns a gate row into its
    gradient row without a second array)."""
    if code == LINEAR:
        for j in range(d.shape[0]):
            d[j] = s[j]
    elif code == TANH:
        for j in range(d.shape[0]):
            d[j] = s[j] * (_ONE - d[j] * d[j])
    elif code == SIGMOID:
        for j in range(d.shape[0]):
            d[j] = s[j] * (d[j] * (_ONE - d[j]))
    elif code == RELU:
        for j in range(d.shape[0]):
            d[j] = s[j] if d[j] > _ZERO else _ZERO
    elif code == HARD_SIGMOID:
        for j in range(d.shape[0]):
            d[j] = s[j] / _SIX if _ZERO < d[j] < _ONE else _ZERO


# ---- The recurrent products: a group of samples at a time ------------------------------------------------
# One sample's product h·U is a chain of u dependent FMAs per output vector: one sample at a time waited out
# the FMA latency (a 32×32 SimpleRNN step took ~55 ns). A group of GROUP samples shares each U block load and
# keeps 2·GROUP independent sums in flight, enough for both FMA pipes; a batch's last count % GROUP samples run
# one at a time.
GROUP = 4


def _rows_block(rows, masked):
    """block(h, src, start, end, col, init, out, out_col, count): for p < rows,
    out[p, out_col : +W] = init[p, out_col : +W] + Σ_{k=start}^{end−1} h[p, k] · src[k, col : +W], W = LANES
    (masked: the first `count` lanes only). src: C-contiguous 2-D; h, init, out: 2-D views of any row stride
    whose rows are contiguous (a step's rows of (n, t, ·) arrays); init may be None (zeros). One running sum
    per row, added in k order."""
    @intrinsic
    def block(typingctx, h, src, start, end, col, init, out, out_col, count):
        arrays = (h, src, out) if isinstance(init, types.NoneType) else (h, src, out, init)
        if not all(isinstance(a, types.Array) and a.ndim == 2 and a.dtype == out.dtype for a in arrays):
            return None
        if not isinstance(out.dtype, types.Float) or src.layout != "C":
            return None
        sig = types.void(h, src, start, end, col, init, out, out_col, count)

        def codegen(context, builder, signature, args):
            h_t, src_t, start_t, end_t, col_t, init_t, out_t, out_col_t, count_t = signature.args
            h_v, src_v, start_v, end_v, col_v, init_v, out_v, out_col_v, count_v = args
            start, end, col, out_col, count = (_as_intp(context, builder, args[i], signature.args[i])
                                               for i in (2, 3, 4, 7, 8))
            lanes = _lane_mask(builder, count) if masked else None
            vector_ptr = _vector(context, out_t.dtype).as_pointer()

            def pointer(arytype, ary, row, column):
                array = context.make_array(arytype)(context, builder, ary)
                item = cgutils.get_item_pointer(context, builder, arytype, array, [row, column])
                return builder.bitcast(item, vector_ptr)

            sums = []
            for p in range(rows):
                row = _intp(context, p)
                start_value = (ir.Constant(_vector(context, out_t.dtype), None) if isinstance(init_t, types.NoneType)
                               else _load_block(builder, pointer(init_t, init_v, row, out_col), lanes))
                sums.append(cgutils.alloca_once_value(builder, start_value))
            with cgutils.for_range_slice(builder, start, end, _intp(context, 1)) as (k, _):
                block_k = _load_block(builder, pointer(src_t, src_v, k, col), lanes)
                for p, total in enumerate(sums):
                    h_array = context.make_array(h_t)(context, builder, h_v)
                    item = cgutils.get_item_pointer(context, builder, h_t, h_array, [_intp(context, p), k])
                    scale = _splat(context, builder, builder.load(item), h_t.dtype, out_t.dtype)
                    builder.store(_fma(builder, scale, block_k, builder.load(total)), total)
            for p, total in enumerate(sums):
                _store_block(builder, builder.load(total), pointer(out_t, out_v, _intp(context, p), out_col), lanes)
            return context.get_dummy_value()

        return sig, codegen

    return block


_group_block, _group_block_masked = _rows_block(GROUP, False), _rows_block(GROUP, True)
_single_block, _single_block_masked = _rows_block(1, False), _rows_block(1, True)


@intrinsic
def _borrowed(typingctx, array):
    """The same array without its reference count (meminfo NULL), so the views the time loops take of it cost no
    atomic increment and decrement: those lock-prefixed instructions, a few per sample-step, also waited for
    every pending store, and took an LSTM backward from 385 to 527 ns a sample-step (n=128, t=500, u=32). The
    caller keeps the array alive for the whole kernel call (a kernel's own scratch: see _keep_alive)."""
    if not isinstance(array, types.Array):
        return None

    def codegen(context, builder, signature, args):
        source = context.make_array(signature.args[0])(context, builder, args[0])
        view = context.make_array(signature.return_type)(context, builder)
        for field in ("parent", "nitems", "itemsize", "data", "shape", "strides"):
            setattr(view, field, getattr(source, field))
        view.meminfo = ir.Constant(view.meminfo.type, None)
        return view._getvalue()

    return array(array), codegen


@intrinsic
def _keep_alive(typingctx, array):
    """A last use of a kernel's own scratch array, whose _borrowed views the loops use: Numba frees a local
    array right after its last use in the code."""
    if not isinstance(array, types.Array):
        return None
    return types.void(array), lambda context, builder, signature, args: context.get_dummy_value()


@njit(inline="always", **KERNEL)
def _rows_product(rows, h, src, start, end, col, width, init, out, out_col):
    """out[p, out_col : +width] = init[p, …] + Σ_{k=start}^{end−1} h[p, k] · src[k, col : +width] for p < rows
    (rows: GROUP or 1), in blocks of LANES columns, the last one masked."""
    done = 0
    while done + LANES <= width:
        if rows == GROUP:
            _group_block(h, src, start, end, col + done, init, out, out_col + done, LANES)
        else:
            _single_block(h, src, start, end, col + done, init, out, out_col + done, LANES)
        done += LANES
    if done < width:
        if rows == GROUP:
            _group_block_masked(h, src, start, end, col + done, init, out, out_col + done, width - done)
        else:
            _single_block_masked(h, src, start, end, col + done, init, out, out_col + done, width - done)


@njit(inline="always", **KERNEL)
def _previous(initial, states, b, s):
    """Sample b's state before step s: initial[b] or states[b, s − 1], a contiguous row (the group's rows as a
    2-D slice have a runtime row stride, and a loop over one such row ran scalar)."""
    return initial[b] if s == 0 else states[b, s - 1]


@njit(inline="always", **KERNEL)
def _forward_products(rows, h0, hs, s, U, rmask, b0, dropped_h, col, width, init, out, out_col):
    """out[p, out_col : +width] = init[p, …] + h[p]·U[:, col : +width] for the group's rows, h[p] the state of
    sample b0 + p before step s; with recurrent dropout gate by gate, (h[p] ⊙ rmask[b0 + p, gate k])·U[:, gate k].
    dropped_h: (GROUP, u) scratch."""
    units = U.shape[0]
    if rmask.shape[0] == 0:
        h = h0[b0:b0 + rows] if s == 0 else hs[b0:b0 + rows, s - 1]
        _rows_product(rows, h, U, 0, units, col, width, init, out, out_col)
        return
    for k in range(col // units, (col + width) // units):
        for p in range(rows):
            h, m, dropped = _previous(h0, hs, b0 + p, s), rmask[b0 + p, k * units:(k + 1) * units], dropped_h[p]
            for j in range(units):
                dropped[j] = h[j] * m[j]
        _rows_product(rows, dropped_h, U, 0, units, k * units, units, init, out, out_col + k * units - col)


@njit(inline="always", **KERNEL)
def _state_gradients(rows, d, UT, rmask, b0, part, dh):
    """dh[p] += d[p]·Uᵀ for the group's rows; with recurrent dropout dh[p] += (d[p, gate k]·U[:, gate k]ᵀ) ⊙
    rmask[b0 + p, gate k] gate after gate. d: the rows' pre-activation gradients; part: (GROUP, u) scratch."""
    units = UT.shape[1]
    if rmask.shape[0] == 0:
        _rows_product(rows, d, UT, 0, UT.shape[0], 0, units, dh, dh, 0)
        return
    for k in range(UT.shape[0] // units):
        _rows_product(rows, d, UT, k * units, (k + 1) * units, 0, units, None, part, 0)
        for p in range(rows):
            total, piece, m = dh[p], part[p], rmask[b0 + p, k * units:(k + 1) * units]
            for j in range(units):
                total[j] += piece[j] * m[j]


@njit(inline="always", **KERNEL)
def _group_rows(b0, end):
    """How many samples the group starting at b0 runs: GROUP, or 1 for a batch part's last samples."""
    return GROUP if b0 + GROUP <= end else 1


@njit(inline="always", **KERNEL)
def _any_real(mask, b0, rows, s):
    for p in range(rows):
        if mask[b0 + p, s]:
            return True
    return False


@njit(inline="always", **KERNEL)
def _incoming(dh, dhs, b, s, steps, g):
    """g = dh + the loss gradient w.r.t. hs[b, s] (dhs (n, 1, u) holds the last step's alone)."""
    if dhs.shape[1] == steps:
        _add(dh, dhs[b, s], g)
    elif s == steps - 1:
        _add(dh, dhs[b, 0], g)
    else:
        _copy(dh, g)


@njit(inline="always", **KERNEL)
def _copy(src, dst):
    """dst = src (1-D, same length): a plain loop, cheaper than a slice assignment's broadcasting."""
    for j in range(dst.shape[0]):
        dst[j] = src[j]


@njit(inline="always", **KERNEL)
def _add(a, b, out):
    """out = a + b (1-D, same length)."""
    for j in range(out.shape[0]):
        out[j] = a[j] + b[j]


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
def simple_rnn_forward(xw, U, h0, mask, rmask, act, first, count, hs):
    """SimpleRNN, forward in time. xw: (n, t, u); U: (u, u); h0: (n, u); hs: (n, t, u).

        for b, s:  h = act(xw[b, s] + (h ⊙ rmask[b])·U) where mask[b, s];  hs[b, s] = h
    """
    xw, U, h0, mask, rmask, hs = _borrowed(xw), _borrowed(U), _borrowed(h0), _borrowed(mask), _borrowed(rmask), \
        _borrowed(hs)
    owner = np.empty((GROUP, U.shape[0]), xw.dtype)
    dropped_h = _borrowed(owner)
    b0, end = first, first + count
    while b0 < end:
        rows = _group_rows(b0, end)
        for s in range(xw.shape[1]):
            if _any_real(mask, b0, rows, s):
                _forward_products(rows, h0, hs, s, U, rmask, b0, dropped_h, 0, U.shape[1], xw[b0:b0 + rows, s],
                                  hs[b0:b0 + rows, s], 0)
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


@njit(**KERNEL)
def lstm_forward(xw, U, h0, c0, mask, rmask, act, ract, first, count, hs, cs):
    """LSTM, forward in time. xw: (n, t, 4u), overwritten with the activated gates i, f, c̃, o (the backward's
    input; unspecified at masked steps); U: (u, 4u); h0, c0: (n, u); hs, cs: (n, t, u), the states and
    carries after each step (cs[:, -1]: the final carry).

        for b, s where mask[b, s]:
            z = xw[b, s] + (h ⊙ rmask[b])·U      (per gate with recurrent dropout)
            i, f, c̃, o = ract(z_i), ract(z_f), act(z_c), ract(z_o);  c = f·c + i·c̃;  h = o·act(c)
            xw[b, s] = [i, f, c̃, o]
        hs[b, s], cs[b, s] = h, c
    """
    xw, U, h0, c0, mask, rmask = _borrowed(xw), _borrowed(U), _borrowed(h0), _borrowed(c0), _borrowed(mask), \
        _borrowed(rmask)
    hs, cs = _borrowed(hs), _borrowed(cs)
    owner = np.empty((GROUP, U.shape[0]), xw.dtype)
    dropped_h = _borrowed(owner)
    b0, end = first, first + count
    while b0 < end:
        rows = _group_rows(b0, end)
        for s in range(xw.shape[1]):
            if _any_real(mask, b0, rows, s):
                z_rows = xw[b0:b0 + rows, s]
                _forward_products(rows, h0, hs, s, U, rmask, b0, dropped_h, 0, U.shape[1], z_rows, z_rows, 0)
            for p in range(rows):
                b = b0 + p
                if mask[b, s]:
                    _lstm_cell(act, ract, xw[b, s], _previous(c0, cs, b, s), cs[b, s], hs[b, s])
                else:
                    _copy(_previous(h0, hs, b, s), hs[b, s])
                    _copy(_previous(c0, cs, b, s), cs[b, s])
        b0 += rows
    _keep_alive(owner)


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
                    _lstm_cell_backward(act, ract, g, gates[b, s], cs[b, s], _previous(c0, cs, b, s), dc[p], a, da,
                                        scaled)
                    dh[p] = 0.0
                else:
                    _copy(g, dh[p])
                    gates[b, s] = 0.0
            if _any_real(mask, b0, rows, s):
                _state_gradients(rows, gates[b0:b0 + rows, s], UT, rmask, b0, part, dh)
        b0 += rows
    _keep_alive(owner)


@njit(inline="always", **KERNEL)
def _gru_cell(act, ract, z, rec_h, rbias, h_prev, h):
    """One sample's step: z holds xw + (h ⊙ rmask)·U for the z and r gates and xw for h̃, rec_h the h̃ gate's
    recurrent product; adds the recurrent bias, then z becomes the activated z, r, h̃ and
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


@njit(**KERNEL)
def gru_forward(xw, U, rbias, h0, mask, rmask, act, ract, first, count, hs, hu):
    """GRU (reset_after, Keras 3's default), forward in time. xw: (n, t, 3u), with the input bias, overwritten
    with the activated gates z, r, h̃ (the backward's input; unspecified at masked steps); U: (u, 3u);
    rbias: (3u,), the recurrent bias; h0: (n, u); hs: (n, t, u); hu: (n, t, u), the recurrent part of h̃'s
    pre-activation (for the backward; unspecified at masked steps).

        for b, s where mask[b, s]:
            rec = (h ⊙ rmask[b])·U + rbias      (per gate with recurrent dropout)
            z, r = ract(xw_z + rec_z), ract(xw_r + rec_r);  h̃ = act(xw_h + r·rec_h);  h = z·h + (1 − z)·h̃
            xw[b, s] = [z, r, h̃];  hu[b, s] = rec_h
        hs[b, s] = h
    """
    xw, U, rbias, h0 = _borrowed(xw), _borrowed(U), _borrowed(rbias), _borrowed(h0)
    mask, rmask, hs, hu = _borrowed(mask), _borrowed(rmask), _borrowed(hs), _borrowed(hu)
    units = U.shape[0]
    owner = np.empty((GROUP, units), xw.dtype)
    dropped_h = _borrowed(owner)
    b0, end = first, first + count
    while b0 < end:
        rows = _group_rows(b0, end)
        for s in range(xw.shape[1]):
            if _any_real(mask, b0, rows, s):
                z_rows = xw[b0:b0 + rows, s]
                _forward_products(rows, h0, hs, s, U, rmask, b0, dropped_h, 0, 2 * units, z_rows, z_rows, 0)
                _forward_products(rows, h0, hs, s, U, rmask, b0, dropped_h, 2 * units, units, None,
                                  hu[b0:b0 + rows, s], 0)
            for p in range(rows):
                b = b0 + p
                if mask[b, s]:
                    _gru_cell(act, ract, xw[b, s], hu[b, s], rbias, _previous(h0, hs, b, s), hs[b, s])
                else:
                    _copy(_previous(h0, hs, b, s), hs[b, s])
        b0 += rows
    _keep_alive(owner)


@njit(inline="always", **KERNEL)
def _gru_cell_backward(act, ract, g, z, rec_h, h_prev, rec, drec_h, dh, e, scaled):
    """One sample's step back: g, the gradient w.r.t. h; z, the activated gates, becomes the gradient w.r.t. xw;
    writes rec (3u,), the gradient w.r.t. the recurrent pre-activation, into drec_h too (all of it, or its h̃ block
    alone: the only one that differs from z's), and dh = g·z, the gradient reaching h_prev directly.
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
