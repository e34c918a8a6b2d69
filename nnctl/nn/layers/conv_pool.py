"""A shallow convolution with ReLU (or no activation) and the max pooling right after it, run as one step on the
CPU: each image's convolution is pooled while it sits in the cache, and the full-size output is never stored.

In the book's convnets the first Conv2D writes its biggest array (64 × 26 × 26 × 32 floats, 5.5 MB for MNIST)
three times and reads it four: pre-activation, activation, the pooling's read, then the backward's unpooled
gradient, z and y again. Fused, one image at a time goes through the direct convolution into a per-thread
scratch (its 86 KB stay in L2), gets its bias, and is max-pooled *before* the activation: for ReLU and linear,
max(act(z)) = act(max(z)) with the same winner wherever the gradient is not zero (ReLU's ties are at 0, where
its gradient is 0), so the activation and its backward run on the pooled quarter only. The backward unpools
each image's pooled gradient into the scratch and takes that image's kernel gradient from it.

Only Sequential models pair layers (`pair`), and only a 'direct' plan (a patch of at most
convolution.DIRECT_FORWARD_MAX_DEPTH values, where the arrays are large and the arithmetic is small) fuses; the
other plans run the two layers as usual. The kernel gradient is summed image by image within a chunk, then
chunk by chunk in order: the same bytes on any number of threads. Against the unfused layers the outputs and
the kernel's gradient terms are the same numbers (the sums run in another order); a window holding a NaN
pre-activation passes no gradient (ReLU turns a NaN into 0, and the unfused pooling never sees it).
"""

from __future__ import annotations

import numpy as np

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


def fuses(conv, plan) -> bool:
    return conv.pool_after is not None and plan.method == "direct"


def forward(conv, x4):
    """The pooled output of conv → pool for x4 (n, h, w, c); keeps what the backward needs on `conv`."""
    plan, pool, backend = conv.plan, conv.pool_after, conv.backend
    n, filters, geometry = x4.shape[0], conv.filters, plan.geometry
    kernel2d, bias = conv.kernel.value.reshape(plan.depth, filters), conv._bias_value()
    zp = conv._buffer("pooled_z", (n,) + pool.out4)
    yp = zp if conv.activation == "linear" else conv._buffer("pooled_y", zp.shape)
    argmax = conv._buffer("pooled_argmax", zp.shape, np.int32)
    zero_bias = conv.__dict__.setdefault("_pooled_zero_bias", np.zeros(filters, conv.dtype))
    image = (1,) + pool.in4

    def run(index, first, count):
        z = plan._workspace("pooled_z", plan.positions, filters, x4.dtype)
        for i in range(first, first + count):
            backend.conv_direct_forward(x4, kernel2d, i, 1, geometry, z)
            backend.bias_act_forward(z, bias, LINEAR, 0.0, z)
            backend.max_pool2d_forward(z.reshape(image), *pool.window, zp[i:i + 1], argmax[i:i + 1])
        if yp is not zp:
            images = slice(first, first + count)
            backend.bias_act_forward(zp[images].reshape(-1, filters), zero_bias, conv.act_code, conv.alpha,
                                     yp[images].reshape(-1, filters))

    plan._run(run, n)
    conv.pooled = (zp, yp, argmax)
    out = yp.reshape((n,) + pool.output_shape)
    pool.prepooled = out
    return out


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
    dw_parts = conv._buffer(("pooled_dw", len(chunks)), (len(chunks), plan.depth, filters))
    dx = conv._buffer("dx", x4.shape) if conv.needs_input_grad else None

    def run(index, first, count):
        rows = slice(first * cells, (first + count) * cells)
        backend.bias_act_backward(dyp[rows], zp2[rows], yp2[rows], conv.act_code, conv.alpha, dzp[rows],
                                  db_parts[index, 0])
        dz = plan._workspace("pooled_dz", plan.positions, filters, x4.dtype)
        one = plan._workspace("pooled_dw", plan.depth, filters, x4.dtype)
        for i in range(first, first + count):
            backend.max_pool_backward(dzp[i * cells:(i + 1) * cells].reshape(1, -1), argmax2[i:i + 1],
                                      dz.reshape(1, -1))
            backend.conv_direct_weight_grad(x4, dz, i, 1, geometry, dw_parts[index] if i == first else one)
            if i > first:
                np.add(dw_parts[index], one, out=dw_parts[index])
            if dx is not None:
                columns = plan._workspace("pooled_dcols", plan.positions, plan.depth, x4.dtype)
                backend.gemm_nt(dz, kernel2d, columns)
                backend.col2im(columns, i, 1, geometry, dx)

    plan._run(run, n)
    backend.sum_partials(dw_parts, len(chunks), conv.kernel.grad.reshape(plan.depth, filters))
    db = conv.bias.grad if conv.bias is not None else conv._buffer("db", (filters,))
    backend.sum_partials(db_parts, len(chunks), db.reshape(1, filters))
    return None if dx is None else dx.reshape((n,) + tuple(conv.input_shape))
