"""Device-neutral convolution orchestration: geometry, chunk plan, bounded workspaces, and the chunk loop that
calls `backend.im2col`/`col2im`/`gemm*` (forward, kernel gradient, input gradient).

A batch is cut into chunks of a fixed number of images chosen from the shape alone, never from the thread
count; chunks may run on a small thread pool, and the kernel gradient adds the chunks' partials in chunk
order, so the bytes are the same on 1 or 2 threads and under any load.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from nnctl.engine import settings

# A chunk's column buffer stays under this many bytes (it should sit in L2/L3 while its GEMM reads it) ...
WORKSPACE_BYTES = 4 << 20
# ... and holds about this many multiply-adds, so a batch gives the pool several chunks to share.
CHUNK_MACS = 8 << 20
# Patches at most this deep (channels · kernel taps) skip the columns: a 9-deep GEMM (MNIST's 1-channel 3×3
# first layer) spends its time writing columns and dispatching BLAS, not multiplying.
DIRECT_MAX_DEPTH = 16
# A call with fewer multiply-adds than this runs on the caller's thread (a pool hand-off costs ~10-20 µs).
POOL_MIN_MACS = 1 << 21

_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()


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
    """One convolution's geometry on (n, h, w, c) inputs, its chunking and its reusable workspaces.

    kernel2d is the Keras kernel (kh, kw, in, out) reshaped to (kh·kw·in, out); z and dz are
    (n·out_h·out_w, out) with rows ordered (image, oy, ox).
    """

    def __init__(self, backend, in_shape, kernel_size, strides, dilation, padding, filters):
        height, width, channels = in_shape
        (kh, kw), (sh, sw), (dh, dw) = kernel_size, strides, dilation
        out_h, pad_top = output_length(height, kh, sh, dh, padding[0])
        out_w, pad_left = output_length(width, kw, sw, dw, padding[1])
        self.backend = backend
        self.in_shape = (height, width, channels)
        self.out_shape = (out_h, out_w)
        self.positions = out_h * out_w
        self.depth = kh * kw * channels
        self.filters = filters
        self.geometry = tuple(int(v) for v in (kh, kw, sh, sw, dh, dw, pad_top, pad_left, out_h, out_w))
        self.direct = self.depth <= DIRECT_MAX_DEPTH
        image_bytes = self.positions * self.depth * 4
        image_macs = max(1, self.positions * self.depth * filters)
        self.chunk = int(max(1, min(WORKSPACE_BYTES // max(1, image_bytes), CHUNK_MACS // image_macs)))
        self._workspaces: dict = {}

    def chunks(self, batch: int) -> list[tuple[int, int]]:
        """(first image, count) of each chunk, a function of the batch size and the shape only."""
        return [(first, min(self.chunk, batch - first)) for first in range(0, batch, self.chunk)]

    def forward(self, x, kernel2d, z):
        """z = conv(x, kernel) without bias. x: (n, h, w, c); z: (n·positions, filters)."""
        backend, geometry, rows = self.backend, self.geometry, self.positions

        def run(index, first, count):
            out = z[first * rows:(first + count) * rows]
            if self.direct:
                backend.conv_direct_forward(x, kernel2d, first, count, geometry, out)
                return
            cols = self._workspace("cols", count * rows, self.depth, x.dtype)
            backend.im2col(x, first, count, geometry, cols)
            backend.gemm(cols, kernel2d, out)

        self._run(run, x.shape[0])

    def backward(self, x, dz, kernel2d, dkernel2d, dx=None):
        """dkernel2d = Σ over chunks (in order) of the chunk's colsᵀ·dz; dx = col2im(dz·kernelᵀ) unless None."""
        backend, geometry, rows = self.backend, self.geometry, self.positions
        chunks = self.chunks(x.shape[0])
        partials = (dkernel2d[None] if len(chunks) == 1 else
                    self._workspace("partials", len(chunks), self.depth * self.filters, x.dtype, len(chunks))
                    .reshape(len(chunks), self.depth, self.filters))

        def run(index, first, count):
            dz_chunk = dz[first * rows:(first + count) * rows]
            if self.direct:
                backend.conv_direct_weight_grad(x, dz_chunk, first, count, geometry, partials[index])
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
            backend.sum_partials(partials, len(chunks), dkernel2d)

    def _run(self, run, batch):
        """Runs every chunk: on the pool when the call is big enough and threads are allowed, else in order
        here. Either way each chunk writes only its own rows, images and partial."""
        chunks = self.chunks(batch)
        workers = settings.thread_count()
        if workers == 1 or len(chunks) == 1 or batch * self.positions * self.depth * self.filters < POOL_MIN_MACS:
            for index, (first, count) in enumerate(chunks):
                run(index, first, count)
            return
        futures = [_executor(workers).submit(run, index, first, count) for index, (first, count) in enumerate(chunks)]
        for future in futures:
            future.result()  # re-raises a chunk's exception here

    def _workspace(self, key, rows, width, dtype, least=None):
        """A (rows, width) scratch array for this thread, reused across calls; column buffers are sized for a
        full chunk at once (`least` rows otherwise)."""
        slot = (key, threading.get_ident(), np.dtype(dtype).str)
        buf = self._workspaces.get(slot)
        if buf is None or buf.shape[0] < rows or buf.shape[1] != width:
            buf = self._workspaces[slot] = np.empty((max(rows, least or self.chunk * self.positions), width), dtype)
        return buf[:rows]


def _executor(workers: int) -> ThreadPoolExecutor:
    """The process's conv thread pool, created on first use and resized if the thread count changes."""
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size != workers:
            if _pool is not None:
                _pool.shutdown(wait=True)
            _pool, _pool_size = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nnctl-conv"), workers
        return _pool
