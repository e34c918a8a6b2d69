"""The recurrent kernels' building blocks: the group product (a few sequences' h·U at once, as LLVM-IR vector
blocks like nnctl/engine/cpu/simd.py's), borrowed array views, and the small per-row helpers of the time loops.
"""

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

# simd.py's LLVM-IR helpers: the group product below is one more block of the same kind.
from nnctl.engine.cpu.simd import (
    LANES, _as_intp, _fma, _intp, _lane_mask, _load_block, _splat, _store_block, _vector,
)
from nnctl.engine.settings import KERNEL


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
def _input_products(rows, x, W, bias_rows, b0, s, out):
    """out[p] = bias + x_s·W for the group's rows, x_s = x[0, b0 + p, s], or gate k's columns from x[k, b0 + p, s]
    when x holds one (dropped) input per gate. bias_rows: (GROUP, g·u), the bias in every row. The projection
    runs inside the time loop, so its output row is written once, hot, instead of by a GEMM over the whole
    (n·t, g·u) buffer that the loop then reads back."""
    if x.shape[0] == 1:
        _rows_product(rows, x[0, b0:b0 + rows, s], W, 0, W.shape[0], 0, W.shape[1], bias_rows, out, 0)
        return
    units = W.shape[1] // x.shape[0]
    for k in range(x.shape[0]):
        _rows_product(rows, x[k, b0:b0 + rows, s], W, 0, W.shape[0], k * units, units, bias_rows, out, k * units)


@njit(inline="always", **KERNEL)
def _forward_scratch(bias, units):
    """A forward kernel's scratch: (owner, dropped_h (GROUP, u), bias_rows (GROUP, g·u) holding the bias in every
    row). The views are _borrowed: the kernel ends with _keep_alive(owner)."""
    width = bias.shape[0]
    owner = np.empty(GROUP * (units + width), bias.dtype)
    scratch = _borrowed(owner)
    dropped_h = scratch[:GROUP * units].reshape((GROUP, units))
    bias_rows = scratch[GROUP * units:].reshape((GROUP, width))
    for p in range(GROUP):
        _copy(bias, bias_rows[p])
    return owner, dropped_h, bias_rows


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
