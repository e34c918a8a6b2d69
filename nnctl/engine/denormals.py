"""Denormal floats flushed to zero while nnctl computes, as TensorFlow (Keras's CPU backend) does.

A denormal (|x| < 1.18e-38 in float32) costs an x86 core a microcode assist per operation: on an Intel Xeon here a
(4000 × 64)ᵀ·(4000 × 128) sgemm took 0.63 ms with normal inputs and 74 ms with denormal ones. Back-propagation
through long sequences makes them routinely: IMDB's LSTM gradients fade over its 500 steps, and its training step
took 230–400 ms with them and 59 ms without (one thread). So fit/evaluate/predict/compute_gradients set the
SSE control register's flush-to-zero (FTZ: denormal results become 0) and denormals-are-zero (DAZ: denormal
inputs read as 0) bits on the calling thread and restore the caller's bits on the way out
(`threads.blas_policy`); the chunk pool's helper threads and the `prange` kernels' threads take the calling
thread's bits for each call, so the bytes never depend on which thread ran a chunk. TensorFlow's executor does the
same (tensorflow/core/platform/denormal.h, ScopedFlushDenormal, restored after each op); PyTorch leaves denormals
on unless `torch.set_flush_denormal(True)`. NNCTL_FLUSH_DENORMALS=0 keeps IEEE denormals.

Only x86-64 has the switch here; elsewhere (ARM cores handle denormals at full speed) these are no-ops.
"""

from __future__ import annotations

import contextlib
import os
import platform
import threading

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

FLUSH = 0x8040  # MXCSR's FTZ (bit 15) and DAZ (bit 6)
X86 = platform.machine().lower() in ("x86_64", "amd64")
ENABLED = X86 and os.environ.get("NNCTL_FLUSH_DENORMALS", "1").strip() != "0"


def _csr_call(builder, name, slot):
    fnty = ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer()])
    fn = cgutils.get_or_insert_function(builder.module, fnty, name)
    builder.call(fn, [builder.bitcast(slot, ir.IntType(8).as_pointer())])


@intrinsic
def _swap_flush_bits(typingctx, bits):
    """Sets MXCSR's FTZ and DAZ bits to `bits` (an int64 holding FLUSH or 0) and returns their old value."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        slot = cgutils.alloca_once(builder, i32)
        _csr_call(builder, "llvm.x86.sse.stmxcsr", slot)
        old = builder.load(slot)
        width = args[0].type.width
        want = args[0] if width == 32 else builder.trunc(args[0], i32) if width > 32 else builder.zext(args[0], i32)
        mask = ir.Constant(i32, FLUSH)
        new = builder.or_(builder.and_(old, ir.Constant(i32, ~FLUSH & 0xFFFFFFFF)), builder.and_(want, mask))
        builder.store(new, slot)
        _csr_call(builder, "llvm.x86.sse.ldmxcsr", slot)
        return builder.zext(builder.and_(old, mask), ir.IntType(64))

    return types.int64(bits), codegen


if X86:
    @njit(cache=True, nogil=True)
    def swap_flush_bits(bits):
        """This thread's FTZ/DAZ bits become `bits` (FLUSH or 0); returns the ones it had."""
        return _swap_flush_bits(bits)

    @njit(cache=True, nogil=True)
    def flush_bits():
        """This thread's FTZ/DAZ bits (FLUSH, 0, or one of them if someone else set it)."""
        old = _swap_flush_bits(0)
        _swap_flush_bits(old)
        return old
else:
    @njit(cache=True, nogil=True)
    def swap_flush_bits(bits):
        return 0

    @njit(cache=True, nogil=True)
    def flush_bits():
        return 0


@contextlib.contextmanager
def flushed():
    """FTZ and DAZ on for this thread while the block runs (unless NNCTL_FLUSH_DENORMALS=0); the caller's bits
    after it."""
    if not ENABLED:
        yield
        return
    old = swap_flush_bits(FLUSH)
    try:
        yield
    finally:
        swap_flush_bits(old)


_thread = threading.local()


def adopt(bits: int) -> None:
    """A helper thread takes the bits of the thread that handed it work (kept for the thread's life: pool
    threads run nothing but nnctl's chunks)."""
    if getattr(_thread, "bits", None) != bits:
        swap_flush_bits(bits)
        _thread.bits = bits
