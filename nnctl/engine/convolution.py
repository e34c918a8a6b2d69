"""Device-neutral convolution orchestration: geometry, method, chunk plan, bounded workspaces, and the chunk
loop that calls `backend.<conv kernel>` and `backend.gemm*` (forward, kernel gradient, input gradient).

A batch is cut into chunks of a number of images chosen from the batch size and the shape, never from the
thread count; chunks may run on a small thread pool, each writing only its own rows, images and partial, and
the kernel gradient adds the chunks' partials in chunk order, so the bytes are the same on 1 or 2 threads and
under any load, with no barrier but the end of the call.
"""

from __future__ import annotations

import threading

import numpy as np

from nnctl.engine.chunks import run_chunks

# A chunk's column buffer stays under this many bytes (it should sit in L2/L3 while its GEMM reads it) ...
WORKSPACE_BYTES = 4 << 20
# A batch is cut into about this many chunks, so that the pool's threads share it evenly (a busy core just
# takes fewer), unless that makes chunks smaller than MIN_CHUNK_MACS multiply-adds. Measured, one thread:
# 1M instead of 4M cost MNIST's third layer 3 % (8 chunks of 8 images, not 5 of 13) and gave two threads
# 4 + 4 chunks instead of 3 + 2.
TARGET_CHUNKS = 8
MIN_CHUNK_MACS = 1 << 20
# Direct loops instead of columns + BLAS for shallow patches (depth = channels · kernel taps). Measured, one
# thread, 64 images of 32×32, 'same': the forward breaks even at depth 9 with 32 filters (1.86 vs 1.93 ms) and
# loses from depth 18 (2.93 vs 2.39) or with narrow layers (8 filters: 4.68 vs 1.44); the kernel gradient wins
# up to depth 27 (1.15 vs 2.36 at 9, 3.29 vs 3.58 at 27) and loses at 36 (3.88 vs 3.64).
DIRECT_FORWARD_MAX_DEPTH = 9
DIRECT_FORWARD_MIN_FILTERS = 16
DIRECT_GRAD_MAX_DEPTH = 27
# A training forward keeps the whole batch's columns for its backward (no second im2col) up to this size.
KEPT_COLUMNS_BYTES = 16 << 20
# How many multiply-adds one float written and read back through a workspace costs, for choosing a method.
TRAFFIC = 8
# Winograd F(2×2, 3×3)'s kernel transform G g Gᵀ as one matrix over the 9 taps: (G ⊗ G)[4i + j, 3a + b] =
# G[i, a]·G[j, b] (nnctl/engine/cpu/conv3x3.py). Its entries (0, ¼, ½, 1) are exact in any float type.
_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float32)
KRON_G = np.kron(_G, _G)
KRON_G_T = np.ascontiguousarray(KRON_G.T)
# A call with fewer multiply-adds than this runs on the caller's thread (a pool hand-off costs ~10-20 µs).
POOL_MIN_MACS = 1 << 21


def output_length(size: int, kernel: int, stride: int, dilation: int, padding: str) -> tuple[int, int]:
    """(output length, zero padding before) along one axis, as TensorFlow/Keras compute them: 'same' pads
    max((out − 1)·stride + dilated kernel − size, 0) in total, the odd one after; 'causal' pads (k − 1)·dilation
    before. The length may be ≤ 0; the layer reports that."""
    span = (kernel - 1) * dilation + 1
    if padding == "valid":
        return (size - span) // stride + 1 if size >= span else 0, 0
    out = -(-size // stride)
    if padding == "causal":
        return out, (kernel - 1) * dilation
    total = max((out - 1) * stride + span - size, 0)
    return out, total // 2


class ConvPlan:
    """One convolution's geometry on (n, h, w, c) inputs, its method, chunking and reusable workspaces.

    Methods (chosen from the shape in `_method`): 'direct' (tiny patches: no buffer, vector loops),
    'columns' (im2col + one GEMM per chunk; col2im for dx), 'taps' (stride 1, few filters: one GEMM against
    the kernel's taps side by side, then a shifted sum; see nnctl/engine/cpu/conv.py).
    kernel2d is the Keras kernel (kh, kw, in, out) reshaped to (kh·kw·in, out); z and dz are
    (n·out_h·out_w, out) with rows ordered (image, oy, ox).
    """

    def __init__(self, backend, in_shape, kernel_size, strides, dilation, padding, filters, method=None, crop=None):
        """`crop` (rows, columns): compute only the outputs before these (a fused pooling reads no others)."""
        height, width, channels = in_shape
        (kh, kw), (sh, sw), (dh, dw) = kernel_size, strides, dilation
        out_h, pad_top = output_length(height, kh, sh, dh, padding[0])
        out_w, pad_left = output_length(width, kw, sw, dw, padding[1])
        self.crop = crop
        if crop is not None:
            out_h, out_w = min(out_h, crop[0]), min(out_w, crop[1])
        self.backend = backend
        self.in_shape = (height, width, channels)
        self.out_shape = (out_h, out_w)
        self.positions = out_h * out_w
        self.depth = kh * kw * channels
        self.filters = filters
        self.geometry = tuple(int(v) for v in (kh, kw, sh, sw, dh, dw, pad_top, pad_left, out_h, out_w))
        self.method = method or self._method(height * width, channels)  # tests force each one
        # The direct kernel gradient also serves a 'columns' plan of shallow patches.
        self.direct_grad = self.method == "direct" or (
            method is None and self.method == "columns" and self.depth <= DIRECT_GRAD_MAX_DEPTH)
        if self.method == "taps":
            self.image_bytes = height * width * kh * kw * filters * 4
            self.image_macs = height * width * self.depth * filters
        else:
            self.image_bytes = self.positions * self.depth * 4
            self.image_macs = self.positions * self.depth * filters
        self._workspaces: dict = {}
        self._kept = (None, None)  # (x, its columns) from the last training forward
        self._winograd = (None, None)  # (x, U) of the last Winograd forward that kept its tiles, V by chunk:
        self._winograd_v: dict = {}

    def _method(self, in_positions, channels):
        """'direct' for a tiny patch; 'taps' (see nnctl/engine/cpu/conv.py) at stride 1 when its GEMM and
        buffers cost less than the columns'; else 'columns' (im2col + GEMM)."""
        if self.depth <= DIRECT_FORWARD_MAX_DEPTH and self.filters >= DIRECT_FORWARD_MIN_FILTERS:
            return "direct"
        taps, filters = self.depth // channels, self.filters
        if self.geometry[2:4] != (1, 1):
            return "columns"
        # Multiply-adds plus buffer traffic (a float moved costs about TRAFFIC multiply-adds) per image.
        by_taps = in_positions * (channels * filters + TRAFFIC * filters) * taps
        by_columns = self.positions * (channels * filters + TRAFFIC * channels) * taps
        # Measured: IMDB's second Conv1D (32 → 32, by_taps 6 % above) still ran its forward 1.8× faster by taps.
        return "taps" if by_taps < 1.2 * by_columns else "columns"

    def chunk_size(self, batch: int) -> int:
        """Images a chunk: about 1/TARGET_CHUNKS of the batch (work for every thread, whatever their count),
        at least MIN_CHUNK_MACS of work (a smaller GEMM runs below BLAS's speed), at most WORKSPACE_BYTES of
        buffer. A function of the batch size and the shape only."""
        wanted = max(-(-batch // TARGET_CHUNKS), -(-MIN_CHUNK_MACS // max(1, self.image_macs)))
        return max(1, min(wanted, WORKSPACE_BYTES // max(1, self.image_bytes)))

    def chunks(self, batch: int) -> list[tuple[int, int]]:
        """(first image, count) of each chunk."""
        size = self.chunk_size(batch)
        return [(first, min(size, batch - first)) for first in range(0, batch, size)]

    def forward(self, x, kernel2d, z, after=None, keep=False):
        """z = conv(x, kernel) without bias. x: (n, h, w, c); z: (n·positions, filters). `after(index, rows)`
        runs on each chunk's rows of z as soon as they are done (the layer's bias + activation, while the rows
        are still in cache, and on the pool with the rest of the chunk's work). `keep`: a training step, whose
        backward may reuse the columns if the whole batch's fit in KEPT_COLUMNS_BYTES."""
        backend, geometry, rows = self.backend, self.geometry, self.positions
        height, width, channels = self.in_shape
        wide = self._wide_kernel(kernel2d) if self.method == "taps" else None
        kept = None
        if keep and self.method == "columns" and x.shape[0] * rows * self.depth * x.itemsize <= KEPT_COLUMNS_BYTES:
            kept = self._workspace("kept", x.shape[0] * rows, self.depth, x.dtype)
        self._kept = (x, kept)

        def run(index, first, count):
            out = z[first * rows:(first + count) * rows]
            if self.method == "direct":
                backend.conv_direct_forward(x, kernel2d, first, count, geometry, out)
            elif self.method == "taps":
                y = self._workspace("y", count * height * width, wide.shape[1], x.dtype)
                backend.gemm(x[first:first + count].reshape(-1, channels), wide, y)
                backend.conv_taps_sum(y, count, height, width, geometry, out)
            else:
                cols = (kept[first * rows:(first + count) * rows] if kept is not None else
                        self._workspace("cols", count * rows, self.depth, x.dtype))
                backend.im2col(x, first, count, geometry, cols)
                backend.gemm(cols, kernel2d, out)
            if after is not None:
                after(index, slice(first * rows, (first + count) * rows))

        self._run(run, x.shape[0])

    def backward(self, x, dz, kernel2d, dkernel2d, dx=None, before=None):
        """dkernel2d = Σ over chunks (in order) of the chunk's colsᵀ·dz; dx = col2im(dz·kernelᵀ) unless None.
        `before(index, rows)` first fills each chunk's rows of dz (the layer's activation backward)."""
        backend, geometry, rows = self.backend, self.geometry, self.positions
        height, width, channels = self.in_shape
        chunks = self.chunks(x.shape[0])
        taps = self.method == "taps"
        wide = self._wide_kernel(kernel2d) if taps else None
        shape = (channels, self.depth // channels * self.filters) if taps else (self.depth, self.filters)
        total = self._workspace("dwide", *shape, x.dtype) if taps else dkernel2d
        kept, partials = self._take_kept(x), self._partials(len(chunks), total)

        def run(index, first, count):
            if before is not None:
                before(index, slice(first * rows, (first + count) * rows))
            dz_chunk = dz[first * rows:(first + count) * rows]
            if taps:
                spread = self._workspace("spread", count * height * width, shape[1], x.dtype)
                backend.conv_taps_spread(dz_chunk, count, height, width, geometry, spread)
                backend.gemm_tn(x[first:first + count].reshape(-1, channels), spread, partials[index])
                if dx is not None:
                    backend.gemm_nt(spread, wide, dx[first:first + count].reshape(-1, channels))
                return
            if self.direct_grad:
                backend.conv_direct_weight_grad(x, dz_chunk, first, count, geometry, partials[index])
            elif kept is not None:
                backend.gemm_tn(kept[first * rows:(first + count) * rows], dz_chunk, partials[index])
            else:
                cols = self._workspace("cols", count * rows, self.depth, x.dtype)
                backend.im2col(x, first, count, geometry, cols)
                backend.gemm_tn(cols, dz_chunk, partials[index])
            if dx is not None:
                dcols = self._workspace("dcols", count * rows, self.depth, x.dtype)
                backend.gemm_nt(dz_chunk, kernel2d, dcols)
                backend.col2im(dcols, first, count, geometry, dx)

        self._run(run, x.shape[0])
        if len(chunks) > 1:
            backend.sum_partials(partials, len(chunks), total)
        if taps:  # (in, taps·filters) back to the Keras layout (taps·in, filters)
            keras = dkernel2d.reshape(-1, channels, self.filters)
            keras[...] = total.reshape(channels, -1, self.filters).transpose(1, 0, 2)

    def pooled_backward(self, x, dpooled, argmax, kernel2d, dkernel2d, dx=None, before=None):
        """backward() for a 'columns' conv whose max pooling ran fused (nnctl/nn/layers/conv_pool.py): only each
        window's winner has a gradient, so the kernel gradient and the column rows' gradient are sums over the
        pooled cells (nnctl/engine/cpu/conv.py), with no unpooled gradient in between. dpooled, argmax:
        (n, pooled cells · filters); `before(index, first, count)` first fills the chunk's rows of dpooled."""
        backend, geometry, rows = self.backend, self.geometry, self.positions
        chunks = self.chunks(x.shape[0])
        kept, partials = self._take_kept(x), self._partials(len(chunks), dkernel2d)
        kernel_t = np.ascontiguousarray(kernel2d.T) if dx is not None else None

        def run(index, first, count):
            before(index, first, count)
            if kept is not None:
                cols = kept[first * rows:(first + count) * rows]
            else:
                cols = self._workspace("cols", count * rows, self.depth, x.dtype)
                backend.im2col(x, first, count, geometry, cols)
            backend.conv_pooled_weight_grad(cols, dpooled, argmax, first, count, rows, partials[index])
            if dx is not None:
                dcols = self._workspace("dcols", count * rows, self.depth, x.dtype)
                backend.conv_pooled_columns_grad(dpooled, argmax, kernel_t, first, count, rows, dcols)
                backend.col2im(dcols, first, count, geometry, dx)

        self._run(run, x.shape[0])
        if len(chunks) > 1:
            backend.sum_partials(partials, len(chunks), dkernel2d)

    def winograd_pool_forward(self, x, kernel, bias, pooled, argmax, keep=False):
        """The 2×2-max-pooled conv(x) + bias of a 3×3 stride-1 plan whose outputs the pooling windows tile
        exactly, by Winograd F(2×2, 3×3) (nnctl/engine/cpu/conv3x3.py): per chunk, the input tiles'
        transform, one batched GEMM over the 16 tile cells, then the output transform with bias and pooling.
        kernel: (3, 3, in, filters); pooled, argmax: (n, out_h / 2, out_w / 2, filters). `keep`: a training
        step, whose backward reuses the transformed kernel and tiles (16·in floats a window)."""
        backend, channels, filters = self.backend, self.in_shape[2], self.filters
        tiles_h, tiles_w = pooled.shape[1], pooled.shape[2]
        tiles = tiles_h * tiles_w
        u = self._winograd_kernel(kernel, x.dtype)
        kept_v = self._winograd_v if keep else None
        self._winograd = (x if keep else None, u)

        def run(index, first, count):
            if kept_v is not None:  # a chunk's own buffer: its backward may run on another thread
                v = kept_v.get(index)
                if v is None or v.shape[1] != count * tiles:
                    v = kept_v[index] = np.empty((16, count * tiles, channels), x.dtype)
            else:
                v = self._workspace("winograd_v", 16 * count * tiles, channels, x.dtype).reshape(16, -1, channels)
            m = self._workspace("winograd_m", 16 * count * tiles, filters, x.dtype).reshape(16, -1, filters)
            backend.winograd_input(x, first, count, self.geometry, tiles_h, tiles_w, v)
            backend.gemm_batched(v, u, m)
            backend.winograd_output_pool(m, bias, first, count, self.out_shape[1], pooled, argmax)

        self._run(run, x.shape[0])

    def winograd_pool_backward(self, x, dpooled, argmax, kernel, dkernel, dx=None, before=None):
        """backward() for winograd_pool_forward, in the Winograd domain: per chunk, the tiles' product gradient
        dM from each window's winner (nnctl/engine/cpu/conv3x3.py), the kernel's dU = Vᵀ·dM (summed over the
        chunks in order, then brought back to the 3×3 taps by (G ⊗ G)ᵀ) and the input's dV = dM·Uᵀ folded back
        onto the image tiles. V and U come from the training forward (recomputed if it kept none). dpooled,
        argmax: (n, windows · filters); `before(index, first, count)` first fills the chunk's rows of dpooled."""
        backend, geometry, channels, filters = self.backend, self.geometry, self.in_shape[2], self.filters
        chunks, (tiles_h, tiles_w) = self.chunks(x.shape[0]), (self.out_shape[0] // 2, self.out_shape[1] // 2)
        tiles = tiles_h * tiles_w
        kept_x, u = self._winograd
        self._winograd, kept_v = (None, None), self._winograd_v
        if kept_x is not x:
            u, kept_v = self._winograd_kernel(kernel, x.dtype), None
        du = self._workspace("winograd_du", 16, channels * filters, x.dtype)
        partials = self._partials(len(chunks), du)
        u_t = np.ascontiguousarray(u.transpose(0, 2, 1)) if dx is not None else None  # 1.6× faster GEMM than a view

        def run(index, first, count):
            before(index, first, count)
            dm = self._workspace("winograd_dm", 16 * count * tiles, filters, x.dtype).reshape(16, -1, filters)
            backend.winograd_output_grad(dpooled, argmax, first, count, self.out_shape[1], tiles_h, tiles_w, dm)
            if kept_v is not None:
                v = kept_v[index]
            else:
                v = self._workspace("winograd_v", 16 * count * tiles, channels, x.dtype).reshape(16, -1, channels)
                backend.winograd_input(x, first, count, geometry, tiles_h, tiles_w, v)
            backend.gemm_batched(v.transpose(0, 2, 1), dm, partials[index].reshape(16, channels, filters))
            if dx is not None:
                dv = self._workspace("winograd_dv", 16 * count * tiles, channels, x.dtype).reshape(16, -1, channels)
                backend.gemm_batched(dm, u_t, dv)
                backend.winograd_input_grad(dv, first, count, geometry, tiles_h, tiles_w, dx)

        self._run(run, x.shape[0])
        if len(chunks) > 1:
            backend.sum_partials(partials, len(chunks), du)
        backend.gemm(KRON_G_T.astype(x.dtype, copy=False), du, dkernel.reshape(9, -1))  # (G ⊗ G)ᵀ·dU: the taps

    def _winograd_kernel(self, kernel, dtype):
        """U = (G ⊗ G)·g: u[4i + j] = (G g Gᵀ)[i, j] for every (in, filter); (16, in, filters)."""
        channels, filters = self.in_shape[2], self.filters
        u = self._workspace("winograd_u", 16, channels * filters, dtype)
        self.backend.gemm(KRON_G.astype(dtype, copy=False), kernel.reshape(9, -1), u)
        return u.reshape(16, channels, filters)

    def _take_kept(self, x):
        """The columns the training forward kept for x (None if it kept none, or for another batch); once."""
        kept = self._kept[1] if self._kept[0] is x else None
        self._kept = (None, None)
        return kept

    def _partials(self, count, total):
        """Where each of `count` chunks writes its kernel-gradient partial (shaped like `total`): `total` itself
        when there is one chunk."""
        if count == 1:
            return total[None]
        return self._workspace("partials", count, total.size, total.dtype).reshape(count, *total.shape)

    def _wide_kernel(self, kernel2d):
        """The kernel as [W_0 | W_1 | …]: (in, taps·filters), W_t the (in, filters) matrix of tap t."""
        channels = self.in_shape[2]
        wide = self._workspace("wide", channels, self.depth // channels * self.filters, kernel2d.dtype)
        wide.reshape(channels, -1, self.filters)[...] = kernel2d.reshape(-1, channels, self.filters).transpose(1, 0, 2)
        return wide

    def _run(self, run, batch):
        """Runs every chunk (nnctl/engine/chunks.py): on this thread alone for a small call (a pool hand-off
        costs ~10-20 µs), else here and on the helper threads at once."""
        big = batch * self.positions * self.depth * self.filters >= POOL_MIN_MACS
        run_chunks(run, self.chunks(batch), parallel=big)

    def _workspace(self, key, rows, width, dtype):
        """A (rows, width) scratch array for this thread, reused across calls (it grows to the largest chunk)."""
        slot = (key, threading.get_ident(), np.dtype(dtype).str)
        buf = self._workspaces.get(slot)
        if buf is None or buf.shape[0] < rows or buf.shape[1] != width:
            buf = self._workspaces[slot] = np.empty((rows, width), dtype)
        return buf[:rows]


