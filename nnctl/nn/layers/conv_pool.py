"""A conv layer with ReLU (or no activation) and the max pooling right after it, run as one step on the CPU:
the conv output is pooled as each chunk of images is done, and pooled *before* the activation. For ReLU and
linear, max(act(z)) = act(max(z)) with the same winner wherever the gradient is not zero (ReLU's ties are at 0,
where its gradient is 0), so the activation and its backward run on the pooled quarter, and neither the
full-size activation nor the pooling's full-size input gradient is ever stored.

A shallow 'direct' plan (a patch of at most convolution.DIRECT_FORWARD_MAX_DEPTH values: MNIST's first Conv2D,
whose output is its biggest array, 64 × 26 × 26 × 32 floats) goes further: each image is convolved into a
per-thread scratch that stays in L2, gets its bias and is pooled there, and the backward unpools each image into
that scratch and takes its kernel gradient from it; the full-size output is never stored at all. Other plans
keep their z and run the bias + pooling on each chunk's rows as the chunk finishes, and the unpooling before
each chunk's backward (the `after`/`before` hooks of nnctl/engine/convolution.py).

A 3×3 stride-1 conv whose 2×2 pooling windows tile its output goes further still (nnctl/engine/cpu/conv3x3.py):
each window's four outputs are computed together, by Winograd F(2×2, 3×3) with many input channels (forward and
backward in the Winograd domain, `winograd_fits`) or in registers with one (`one_channel_3x3`).

Only neighbours in a Sequential model pair (`pair`; a graph runs them apart). The kernel gradient is summed
image by image within a chunk, then chunk by chunk in order: the same bytes on any number of threads. Against
the unfused layers the outputs are the same numbers (Winograd's within a few ulp) and the gradients agree to
rounding (the sums run in another order); a window holding a NaN pre-activation passes no gradient (ReLU turns a
NaN into 0, and the unfused pooling never sees it).
"""

from __future__ import annotations

import numpy as np

from nnctl.engine import settings
from nnctl.engine.cpu.dense import ACTIVATION_CODES

FUSABLE = ("relu", "linear")
LINEAR = ACTIVATION_CODES["linear"]


def pair(layers) -> None:
    """Marks each conv layer followed by a max pooling of its rank that the two can run fused (see above)."""
    from nnctl.nn.layers.conv import BaseConv
    from nnctl.nn.layers.pooling import MaxPooling1D, MaxPooling2D

    for conv, pool in zip(layers, layers[1:]):
        if isinstance(conv, BaseConv):
            fits = type(pool) in (MaxPooling1D, MaxPooling2D) and pool.rank == conv.rank
            conv.pool_after = pool if fits and conv.activation in FUSABLE and layers.count(conv) == 1 else None


def read_by(pool, out_shape):
    """(rows, columns) of a conv output of `out_shape` (2-D) that the fused max pooling `pool` reads (its last
    window's end, when that falls short: MNIST's second Conv2D gives 11 × 11, its 2×2 pooling reads 10 × 10, so
    the conv computes 17 % fewer outputs), or None: no fused pooling, or it reads them all."""
    if pool is None:
        return None
    ph, pw, sh, sw, pt, pl = pool.window
    rows = min(out_shape[0], (pool.out4[0] - 1) * sh - pt + ph)
    columns = min(out_shape[1], (pool.out4[1] - 1) * sw - pl + pw)
    return None if (rows, columns) == tuple(out_shape) else (rows, columns)


def _windows_tile(conv) -> bool:
    """A 3×3 kernel at stride 1 without dilation, and a 2×2 pooling at stride 2 whose windows tile the (cropped)
    output exactly: the kernels of nnctl/engine/cpu/conv3x3.py compute each window's four outputs together."""
    plan, pool = conv.plan, conv.pool_after
    return (plan.geometry[:6] == (3, 3, 1, 1, 1, 1) and tuple(pool.window) == (2, 2, 2, 2, 0, 0)
            and plan.out_shape == (2 * pool.out4[0], 2 * pool.out4[1]))


def winograd_fits(conv) -> bool:
    """Whether conv → pool runs by Winograd F(2×2, 3×3): a 'columns' plan whose windows tile (above), on a
    backend that has the kernels, unless NNCTL_WINOGRAD=0."""
    return (settings.WINOGRAD and hasattr(conv.backend, "winograd_input") and conv.plan.method == "columns"
            and _windows_tile(conv))


def one_channel_3x3(conv) -> bool:
    """Whether conv → pool runs on conv3x3_pool_forward/_weight_grad: a one-channel 'direct' plan whose windows
    tile (above), on a backend that has the kernels."""
    return (hasattr(conv.backend, "conv3x3_pool_forward") and conv.plan.method == "direct"
            and conv.plan.in_shape[2] == 1 and _windows_tile(conv))


def forward(conv, x4, training):
    """The pooled output of conv → pool for x4 (n, h, w, c); keeps what the backward needs on `conv`."""
    plan, pool, backend = conv.plan, conv.pool_after, conv.backend
    n, filters, geometry = x4.shape[0], conv.filters, plan.geometry
    kernel2d, bias = conv.kernel.value.reshape(plan.depth, filters), conv._bias_value()
    zp = conv._buffer("pooled_z", (n,) + pool.out4)
    yp = zp if conv.activation == "linear" else conv._buffer("pooled_y", zp.shape)
    argmax = conv._buffer("pooled_argmax", zp.shape, np.int32)
    zero_bias = conv.__dict__.setdefault("_pooled_zero_bias", np.zeros(filters, conv.dtype))
    conv.pooled = (zp, yp, argmax)
    conv.winograd = winograd_fits(conv)  # the backward follows the forward's way
    if conv.winograd:
        plan.winograd_pool_forward(x4, conv.kernel.value, bias, zp, argmax, keep=training)
        if yp is not zp:
            backend.bias_act_forward(zp.reshape(-1, filters), zero_bias, conv.act_code, conv.alpha,
                                     yp.reshape(-1, filters))
        return _handed_to(pool, yp, n)
    if plan.method != "direct":
        return _forward_whole(conv, x4, kernel2d, bias, zero_bias, training)

    windows = one_channel_3x3(conv)

    def run(index, first, count):
        if windows:
            backend.conv3x3_pool_forward(x4, kernel2d, bias, first, count, geometry, zp, argmax)
        else:
            z = plan._workspace("pooled_z", plan.positions, filters, x4.dtype)
            backend.conv_direct_pool_forward(x4, kernel2d, bias, first, count, geometry, tuple(pool.window), z,
                                             zp, argmax)
        if yp is not zp:
            images = slice(first, first + count)
            backend.bias_act_forward(zp[images].reshape(-1, filters), zero_bias, conv.act_code, conv.alpha,
                                     yp[images].reshape(-1, filters))

    plan._run(run, n)
    return _handed_to(pool, yp, n)


def _handed_to(pool, yp, n):
    """The pooled output, marked as already pooled for `pool` (which passes it on)."""
    out = yp.reshape((n,) + pool.output_shape)
    pool.prepooled = out
    return out


def _forward_whole(conv, x4, kernel2d, bias, zero_bias, training):
    """forward() for the plans that keep z: bias and pooling on each chunk's rows as soon as they are done."""
    plan, pool, backend = conv.plan, conv.pool_after, conv.backend
    (zp, yp, argmax), n, filters = conv.pooled, x4.shape[0], conv.filters
    z = conv._buffer("z", (n * plan.positions, filters))

    def pool_chunk(index, rows):
        images = slice(rows.start // plan.positions, rows.stop // plan.positions)
        backend.bias_act_forward(z[rows], bias, LINEAR, 0.0, z[rows])
        backend.max_pool2d_forward(z[rows].reshape((-1,) + plan.out_shape + (filters,)), *pool.window, zp[images],
                                   argmax[images])
        if yp is not zp:
            backend.bias_act_forward(zp[images].reshape(-1, filters), zero_bias, conv.act_code, conv.alpha,
                                     yp[images].reshape(-1, filters))

    plan.forward(x4, kernel2d, z, pool_chunk, keep=training)
    return _handed_to(pool, yp, n)


def backward(conv, dy):
    """conv's input gradient (or None) from the pooled output's gradient dy; fills the kernel and bias grads."""
    plan, pool, backend, x4 = conv.plan, conv.pool_after, conv.backend, conv.x4
    (zp, yp, argmax), geometry = conv.pooled, plan.geometry
    n, filters = x4.shape[0], conv.filters
    cells = int(np.prod(pool.out4[:-1]))  # pooled positions of one image
    dyp = np.ascontiguousarray(dy).reshape(n * cells, filters)
    zp2, yp2, argmax2 = zp.reshape(-1, filters), yp.reshape(-1, filters), argmax.reshape(n, -1)
    dzp = conv._buffer("pooled_dz", dyp.shape)
    kernel2d = conv.kernel.value.reshape(plan.depth, filters)
    chunks = plan.chunks(n)
    db_parts = conv._buffer(("pooled_db", len(chunks)), (len(chunks), 1, filters))
    dx = conv._buffer("dx", x4.shape) if conv.needs_input_grad else None
    db = conv.bias.grad if conv.bias is not None else conv._buffer("db", (filters,))
    dkernel = conv.kernel.grad.reshape(plan.depth, filters)

    def unpool(index, first, count):
        """The chunk's pooled gradient through the activation, and the chunk's part of db."""
        rows = slice(first * cells, (first + count) * cells)
        backend.bias_act_backward(dyp[rows], zp2[rows], yp2[rows], conv.act_code, conv.alpha, dzp[rows],
                                  db_parts[index, 0])

    if conv.winograd:
        plan.winograd_pool_backward(x4, dzp.reshape(n, -1), argmax2, conv.kernel.value, dkernel, dx, unpool)
        backend.sum_partials(db_parts, len(chunks), db.reshape(1, filters))
        return None if dx is None else dx.reshape((n,) + tuple(conv.input_shape))
    if plan.method == "columns":  # the GEMMs over the unpooled gradient become sums over the pooled cells
        plan.pooled_backward(x4, dzp.reshape(n, -1), argmax2, kernel2d, dkernel, dx, unpool)
        backend.sum_partials(db_parts, len(chunks), db.reshape(1, filters))
        return None if dx is None else dx.reshape((n,) + tuple(conv.input_shape))
    if plan.method != "direct":
        dz = conv._buffer("dz", (n * plan.positions, filters))

        def before(index, rows):
            first, count = rows.start // plan.positions, (rows.stop - rows.start) // plan.positions
            unpool(index, first, count)
            backend.max_pool_backward(dzp[first * cells:(first + count) * cells].reshape(count, -1),
                                      argmax2[first:first + count], dz[rows].reshape(count, -1))

        plan.backward(x4, dz, kernel2d, dkernel, dx, before)
        backend.sum_partials(db_parts, len(chunks), db.reshape(1, filters))
        return None if dx is None else dx.reshape((n,) + tuple(conv.input_shape))

    dw_parts = conv._buffer(("pooled_dw", len(chunks)), (len(chunks), plan.depth, filters))

    windows = one_channel_3x3(conv)

    def run(index, first, count):
        unpool(index, first, count)
        dz = plan._workspace("pooled_dz", plan.positions, filters, x4.dtype)
        if windows:
            backend.conv3x3_pool_weight_grad(x4, dzp.reshape(n, -1), argmax2, first, count, geometry,
                                             dw_parts[index])
        else:
            one = plan._workspace("pooled_dw", plan.depth, filters, x4.dtype)
            backend.conv_direct_pool_weight_grad(x4, dzp.reshape(n, -1), argmax2, first, count, geometry, dz, one,
                                                 dw_parts[index])
        if dx is None:  # the usual first layer
            return
        columns = plan._workspace("pooled_dcols", plan.positions, plan.depth, x4.dtype)
        for i in range(first, first + count):  # each image unpooled again into the scratch, then its dx
            backend.max_pool_backward(dzp[i * cells:(i + 1) * cells].reshape(1, -1), argmax2[i:i + 1],
                                      dz.reshape(1, -1))
            backend.gemm_nt(dz, kernel2d, columns)
            backend.col2im(columns, i, 1, geometry, dx)

    plan._run(run, n)
    backend.sum_partials(dw_parts, len(chunks), dkernel)
    backend.sum_partials(db_parts, len(chunks), db.reshape(1, filters))
    return None if dx is None else dx.reshape((n,) + tuple(conv.input_shape))
