"""Vector blocks for the sparse kernels and the small dense products, written as LLVM IR through `@intrinsic`.

Numba's own code for `o[:] += s * w[k, :]` checks at run time, for every few non-zeros, whether o overlaps
the weight rows, and reloads o each time: about 8 cycles a non-zero for IMDB's 16 units. These blocks keep a
block of 16 output columns in a vector register across all of a row's terms, then store it once: 2.5-3×
faster. A row's last columns (fewer than 16) are one masked block. Every product is a fused multiply-add (llvm.fma), so the bytes never depend on what LLVM contracts.
The forward blocks keep several running sums per block; the weight gradient's gather form keeps one, adding
in index order exactly as the scatter form does, so the two forms give the same bytes.
"""

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from nnctl.engine.settings import KERNEL

LANES = 16  # one 512-bit register of float32 (two 256-bit ones where AVX-512 is missing)
_I32 = ir.IntType(32)


def _vector(context, dtype):
    return ir.VectorType(context.get_value_type(dtype), LANES)


def _matrices(*arrays) -> bool:
    """Typing guard: the blocks address rows by shape alone, so they need C-contiguous 2-D float arrays of one
    dtype (float32 in training, float64 in gradient checks)."""
    return all(isinstance(a, types.Array) and a.ndim == 2 and a.layout == "C" and a.dtype == arrays[0].dtype
               and isinstance(a.dtype, types.Float) for a in arrays)


def _as_intp(context, builder, value, typ):
    return context.cast(builder, value, typ, types.intp)


def _intp(context, value):
    return context.get_constant(types.intp, value)


def _load_element(context, builder, arytype, ary, index):
    """ary[index] for a 1-D array of any layout (a strided column a[:, p] too)."""
    a = context.make_array(arytype)(context, builder, ary)
    return builder.load(cgutils.get_item_pointer(context, builder, arytype, a, [index]))


def _block_pointer(context, builder, arytype, ary, row, col):
    """A <LANES x dtype>* at ary[row, col] of a C-contiguous 2-D array."""
    a = context.make_array(arytype)(context, builder, ary)
    offset = builder.add(builder.mul(row, builder.extract_value(a.shape, 1)), col)
    return builder.bitcast(builder.gep(a.data, [offset]), _vector(context, arytype.dtype).as_pointer())


def _lane_mask(builder, count):
    """<LANES x i1>: lanes 0..count-1 on (count an intp)."""
    lanes = ir.VectorType(count.type, LANES)
    splat = builder.shuffle_vector(builder.insert_element(ir.Constant(lanes, ir.Undefined), count, ir.Constant(_I32, 0)),
                                   ir.Constant(lanes, ir.Undefined), ir.Constant(ir.VectorType(_I32, LANES), [0] * LANES))
    return builder.icmp_unsigned("<", ir.Constant(lanes, list(range(LANES))), splat)


def _load_block(builder, ptr, mask):
    """The vector at ptr; with a mask, only its lanes are read (no fault past the end) and the rest are 0."""
    if mask is None:
        return builder.load(ptr, align=4)
    vec = ptr.type.pointee
    fnty = ir.FunctionType(vec, [ptr.type, _I32, mask.type, vec])
    fn = cgutils.get_or_insert_function(builder.module, fnty, f"llvm.masked.load.{_suffix(vec)}.p0")
    return builder.call(fn, [ptr, ir.Constant(_I32, 4), mask, ir.Constant(vec, None)])


def _store_block(builder, value, ptr, mask):
    """Stores value at ptr; with a mask, only its lanes."""
    if mask is None:
        builder.store(value, ptr, align=4)
        return
    fnty = ir.FunctionType(ir.VoidType(), [value.type, ptr.type, _I32, mask.type])
    fn = cgutils.get_or_insert_function(builder.module, fnty, f"llvm.masked.store.{_suffix(value.type)}.p0")
    builder.call(fn, [value, ptr, ir.Constant(_I32, 4), mask])


def _suffix(vec):
    return f"v{LANES}{'f32' if isinstance(vec.element, ir.FloatType) else 'f64'}"


def _splat(context, builder, scalar, from_type, dtype):
    """A vector of LANES copies of scalar, converted to dtype."""
    vec = _vector(context, dtype)
    one = builder.insert_element(ir.Constant(vec, ir.Undefined), context.cast(builder, scalar, from_type, dtype),
                                 ir.Constant(_I32, 0))
    return builder.shuffle_vector(one, ir.Constant(vec, ir.Undefined), ir.Constant(ir.VectorType(_I32, LANES), [0] * LANES))


def _fma(builder, a, b, c):
    """a·b + c with one rounding (llvm.fma), so every caller gets the same bytes."""
    name = f"llvm.fma.{_suffix(a.type)}"
    fnty = ir.FunctionType(a.type, [a.type] * 3)
    return builder.call(cgutils.get_or_insert_function(builder.module, fnty, name), [a, b, c])


def _gather(blocks, partials, masked=False):
    """gather(src, rows, scales, start, end, out, b, col, count): out[b, col:col+W] = Σ_k scales[k] ·
    src[rows[k], col:col+W] for k in start..end-1, W = blocks·LANES (masked: one block, its first `count`
    lanes, count < LANES: a row's last columns; unmasked blocks ignore count); rows=None reads src[k] (a dense product). Each block's sum is
    split into `partials` running sums (k mod partials, added pairwise at the end), because one running sum
    waits out an FMA's latency per k."""
    @intrinsic
    def gather(typingctx, src, rows, scales, start, end, out, b, col, count):
        if not _matrices(src, out):
            return None
        sig = types.void(src, rows, scales, start, end, out, b, col, count)

        def codegen(context, builder, signature, args):
            src_t, rows_t, scales_t, start_t, end_t, out_t, b_t, col_t = signature.args[:8]
            src_v, rows_v, scales_v, start_v, end_v, out_v, b_v, col_v = args[:8]
            mask = _lane_mask(builder, _as_intp(context, builder, args[8], signature.args[8])) if masked else None
            col = _as_intp(context, builder, col_v, col_t)
            cols = [builder.add(col, _intp(context, LANES * i)) for i in range(blocks)]
            zero = ir.Constant(_vector(context, src_t.dtype), None)
            sums = [[cgutils.alloca_once_value(builder, zero) for _ in range(partials)] for _ in range(blocks)]
            start, end = _as_intp(context, builder, start_v, start_t), _as_intp(context, builder, end_v, end_t)

            def add(k, partial):
                if isinstance(rows_t, types.NoneType):
                    row = k
                else:
                    row = _as_intp(context, builder, _load_element(context, builder, rows_t, rows_v, k), rows_t.dtype)
                scale = _splat(context, builder, _load_element(context, builder, scales_t, scales_v, k),
                               scales_t.dtype, src_t.dtype)
                for c, block_sums in zip(cols, sums):
                    block = _load_block(builder, _block_pointer(context, builder, src_t, src_v, row, c), mask)
                    total = block_sums[partial]
                    builder.store(_fma(builder, scale, block, builder.load(total)), total)

            whole = builder.add(start, builder.mul(builder.sdiv(builder.sub(end, start), _intp(context, partials)),
                                                   _intp(context, partials)))
            with cgutils.for_range_slice(builder, start, whole, _intp(context, partials)) as (k, _):
                for partial in range(partials):
                    add(builder.add(k, _intp(context, partial)), partial)
            with cgutils.for_range_slice(builder, whole, end, _intp(context, 1)) as (k, _):
                add(k, 0)
            b = _as_intp(context, builder, b_v, b_t)
            for c, block_sums in zip(cols, sums):
                values = [builder.load(total) for total in block_sums]
                while len(values) > 1:
                    values = [builder.fadd(values[i], values[i + 1]) for i in range(0, len(values), 2)]
                _store_block(builder, values[0], _block_pointer(context, builder, out_t, out_v, b, c), mask)
            return context.get_dummy_value()

        return sig, codegen

    return gather


def _scatter(masked=False):
    """scatter(dy, b, col, cols, scales, start, end, dw, count): dw[cols[k], col:col+16] += scales[k] ·
    dy[b, col:col+16] for k in start..end-1 (masked: only the first `count` lanes; unmasked ignores count). dy, dw: C-contiguous 2-D
    float arrays; cols, scales: 1-D."""
    @intrinsic
    def scatter(typingctx, dy, b, col, cols, scales, start, end, dw, count):
        if not _matrices(dy, dw):
            return None
        sig = types.void(dy, b, col, cols, scales, start, end, dw, count)

        def codegen(context, builder, signature, args):
            dy_t, b_t, col_t, cols_t, scales_t, start_t, end_t, dw_t = signature.args[:8]
            dy_v, b_v, col_v, cols_v, scales_v, start_v, end_v, dw_v = args[:8]
            mask = _lane_mask(builder, _as_intp(context, builder, args[8], signature.args[8])) if masked else None
            col = _as_intp(context, builder, col_v, col_t)
            row = _as_intp(context, builder, b_v, b_t)
            grad = _load_block(builder, _block_pointer(context, builder, dy_t, dy_v, row, col), mask)
            start, end = _as_intp(context, builder, start_v, start_t), _as_intp(context, builder, end_v, end_t)
            with cgutils.for_range_slice(builder, start, end, _intp(context, 1)) as (k, _):
                c = _as_intp(context, builder, _load_element(context, builder, cols_t, cols_v, k), cols_t.dtype)
                scale = _splat(context, builder, _load_element(context, builder, scales_t, scales_v, k),
                               scales_t.dtype, dy_t.dtype)
                target = _block_pointer(context, builder, dw_t, dw_v, c, col)
                _store_block(builder, _fma(builder, scale, grad, _load_block(builder, target, mask)), target, mask)
            return context.get_dummy_value()

        return sig, codegen

    return scatter


scatter_16 = _scatter()
scatter_masked = _scatter(masked=True)


# The forward product's blocks (and the small dense products'), widest first: enough running sums in each to
# keep both FMA pipes busy.
gather_128 = _gather(8, 1)
gather_64 = _gather(4, 2)
gather_16 = _gather(1, 4)
# The weight gradient's (csc_t_matmul): one running sum per block, adding in the order of csr_t_matmul's
# scatter, so both give the same bytes.
gather_in_order_64 = _gather(4, 1)
gather_in_order_16 = _gather(1, 1)
# A row's last units % 16 columns, as one masked block.
gather_masked = _gather(1, 4, masked=True)
gather_in_order_masked = _gather(1, 1, masked=True)


@njit(inline="always", **KERNEL)
def gather_row(src, rows, scales, start, end, out, b):
    """out[b, :] = Σ scales[k] · src[rows[k], :] for k in start..end-1 (src[k] with rows=None). src, out: C 2-D;
    rows, scales: 1-D (scales may be strided: a column of a matrix)."""
    gather_cols(src, rows, scales, start, end, out, b, 0, src.shape[1])


@njit(inline="always", **KERNEL)
def gather_cols(src, rows, scales, start, end, out, b, col, stop):
    """gather_row over columns [col, stop) only (a slab of src small enough to stay in L1 while many rows
    of out are summed from it)."""
    while col + 128 <= stop:
        gather_128(src, rows, scales, start, end, out, b, col, LANES)
        col += 128
    if col + 64 <= stop:
        gather_64(src, rows, scales, start, end, out, b, col, LANES)
        col += 64
    while col + LANES <= stop:
        gather_16(src, rows, scales, start, end, out, b, col, LANES)
        col += LANES
    if col < stop:
        gather_masked(src, rows, scales, start, end, out, b, col, stop - col)


@njit(**KERNEL)
def gather_row_in_order(src, rows, scales, start, end, out, b):
    """gather_row with each sum added in k order (csr_t_matmul's scatter order)."""
    units = src.shape[1]
    col = 0
    while col + 64 <= units:
        gather_in_order_64(src, rows, scales, start, end, out, b, col, LANES)
        col += 64
    while col + LANES <= units:
        gather_in_order_16(src, rows, scales, start, end, out, b, col, LANES)
        col += LANES
    if col < units:
        gather_in_order_masked(src, rows, scales, start, end, out, b, col, units - col)
