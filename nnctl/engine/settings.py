"""Engine tunables in one place: fastmath flags, the BLAS/Numba GEMM crossover, threading policy.

Change them here (or through the environment variables named below), never inside a kernel.
"""

import os

# Reassociation lets LLVM vectorize reductions; we keep IEEE NaN/inf semantics so a diverging loss is seen.
FASTMATH = {"reassoc", "contract", "nsz"}

# Options for every @njit kernel. error_model="numpy": float division by zero gives inf/nan instead of a
# Python exception; the exception check is a branch per division that stopped the optimizer loops from
# vectorizing (11 µs → 1 µs for the Boston MLP's RMSprop step).
# nogil: a kernel lets other threads run Python meanwhile (the conv chunk threads call the bias + activation
# kernels; holding the GIL serialized them: 40 % of MNIST's first conv layer).
KERNEL = {"cache": True, "fastmath": FASTMATH, "error_model": "numpy", "nogil": True}
# For element-wise updates whose bytes must not depend on where the kernel is compiled: with `contract`
# and `reassoc`, LLVM fused `p·keep + a·m − lr·g` differently when optimizer_step was inlined into the fast
# path's epoch loop than when compiled alone, so the two paths (and two processes that happened to load
# kernels in another order) disagreed in the last bit. Strict IEEE arithmetic still vectorizes these loops.
STRICT_KERNEL = {"cache": True, "fastmath": False, "error_model": "numpy", "nogil": True}
# The few kernels that split one big call over threads (a `prange` over contiguous parts; see below).
PARALLEL_KERNEL = {**KERNEL, "parallel": True}

# GEMMs with fewer multiply-adds than this run in a Numba loop: a NumPy→BLAS call costs ~1–2 µs of
# dispatch, which dominates tiny layers (the book's Boston MLP at batch 1–16). Larger ones go to BLAS.
SMALL_GEMM_MACS = int(os.environ.get("NNCTL_SMALL_GEMM_MACS", 1 << 17))

# Threading policy. On the 2-core machines we target, a fork-join barrier per small kernel costs up to 10×
# when the other core is busy (DESIGN.md, Engine), because the waiting threads spin. So:
# - every kernel is single-threaded, except the `*_split` kernels, which cut one call into contiguous parts
#   (disjoint output rows: the bytes never depend on the thread count) and run them with `prange`;
# - a call is split only when it has at least PARALLEL_MIN_MACS multiply-adds (about 50 µs of work), so the
#   fast path's tiny steps never are;
# - Numba's OpenMP threads wait passively (OMP_WAIT_POLICY=passive, set in nnctl/engine/__init__.py unless
#   the user set it): a thread that finishes early sleeps instead of spinning on a core another process needs.
#   Measured on MNIST's first layer: 1.6× faster idle, and as fast as one thread with a busy process on the
#   other core (the default spinning policy made it 1.7-3× slower than one thread there).
# - BLAS runs on BLAS_THREADS (1) threads inside fit/evaluate/predict, set through threadpoolctl and restored
#   on the way out (nnctl/engine/threads.py), so a script's `Sequential.fit` runs as the CLI does:
#   OpenBLAS's idle threads spin, so its second thread kept the other core busy exactly when a split kernel
#   needed it (MNIST epoch 0.53 s → 0.45 s with one BLAS thread), and a busy process on the other core made
#   2-thread BLAS 3.7× slower. `nnctl` also sets OPENBLAS_NUM_THREADS=1 (unless the user set it) so that
#   OpenBLAS never starts the threads. NNCTL_BLAS_THREADS=N chooses another count; 0 leaves BLAS alone.
# Threads: NNCTL_THREADS, else NUMBA_NUM_THREADS, else the cores this process may run on.
PARALLEL_MIN_MACS = int(os.environ.get("NNCTL_PARALLEL_MIN_MACS", 1 << 21))
_BLAS = os.environ.get("NNCTL_BLAS_THREADS", "").strip()
BLAS_THREADS = int(_BLAS) if _BLAS.isdigit() else 1  # anything but a count keeps the default

# Numba imports scipy.linalg (0.2-0.3 s here) the first time it compiles or loads a kernel, only to back
# np.dot and np.linalg inside jitted code, which no nnctl kernel uses. With NNCTL_NUMBA_SCIPY=0 the CPU
# backend loads Numba's CPU target without it (nnctl/engine/cpu/__init__.py); `nnctl` sets that unless the
# user did, so a library user's own jitted np.dot keeps working.
NUMBA_SCIPY = os.environ.get("NNCTL_NUMBA_SCIPY", "1") != "0"

# A 3×3 stride-1 conv (many input channels) under 2×2 max pooling runs by Winograd F(2×2, 3×3) on the CPU
# (nnctl/engine/cpu/conv3x3.py); NNCTL_WINOGRAD=0 runs it by im2col + GEMM (the rounding differs by a few ulp).
WINOGRAD = os.environ.get("NNCTL_WINOGRAD", "1") != "0"

# Dense input whose fraction of non-zeros is at most this runs as CSR through the first Dense layer (MNIST's
# pixels are 19 % non-zero: the first layer then does a fifth of the multiply-adds). 0 turns it off.
SPARSE_INPUT_DENSITY = float(os.environ.get("NNCTL_SPARSE_INPUT_DENSITY", 0.3))
# A CSR layer at least this wide computes its weight gradient column by column (csc_t_matmul) instead of
# scattering into it row by row (csr_t_matmul); both give the same bytes.
CSC_MIN_UNITS = 64


def thread_count() -> int:
    """Threads a split kernel may use: NNCTL_THREADS, else NUMBA_NUM_THREADS, else the usable cores."""
    for var in ("NNCTL_THREADS", "NUMBA_NUM_THREADS"):
        if os.environ.get(var, "").strip().isdigit():
            return max(1, int(os.environ[var]))
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

