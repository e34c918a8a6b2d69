"""Engine tunables in one place: fastmath flags, the BLAS/Numba GEMM crossover, threading policy.

Change them here (or through the environment variables named below), never inside a kernel.
"""

import os

# Reassociation lets LLVM vectorize reductions; we keep IEEE NaN/inf semantics so a diverging loss is seen.
FASTMATH = {"reassoc", "contract", "nsz"}

# Options for every @njit kernel. error_model="numpy": float division by zero gives inf/nan instead of a
# Python exception; the exception check is a branch per division that stopped the optimizer loops from
# vectorizing (11 µs → 1 µs for the Boston MLP's RMSprop step).
KERNEL = {"cache": True, "fastmath": FASTMATH, "error_model": "numpy"}
# For element-wise updates whose bytes must not depend on where the kernel is compiled: with `contract`
# and `reassoc`, LLVM fused `p·keep + a·m − lr·g` differently when optimizer_step was inlined into the fast
# path's epoch loop than when compiled alone, so the two paths (and two processes that happened to load
# kernels in another order) disagreed in the last bit. Strict IEEE arithmetic still vectorizes these loops.
STRICT_KERNEL = {"cache": True, "fastmath": False, "error_model": "numpy"}

# GEMMs with fewer multiply-adds than this run in a Numba loop: a NumPy→BLAS call costs ~1–2 µs of
# dispatch, which dominates tiny layers (the book's Boston MLP at batch 1–16). Larger ones go to BLAS.
SMALL_GEMM_MACS = int(os.environ.get("NNCTL_SMALL_GEMM_MACS", 1 << 17))

# Threading policy: every Numba kernel runs on one thread. On the 2-core machines we target, a fork-join
# barrier per small kernel costs up to 10× when the other core is busy (DESIGN.md, Engine); only BLAS
# (dense GEMM large enough to amortize its barrier) may use several threads.
NUMBA_KERNELS_PARALLEL = False
