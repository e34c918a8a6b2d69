"""CPU kernels (Numba `@njit`, cached), exported by name: the CUDA backend must mirror this list.

Arrays are float32 NumPy arrays; each kernel documents its loop and argument shapes.
"""

import sys

from nnctl.engine import settings
from nnctl.engine.cpu.dense import (
    ACTIVATION_CODES, BIAS_ACT_BACKWARD, BIAS_ACT_FORWARD, bias_act_backward, bias_act_forward, dropout_forward,
    matmul, matmul_nt, matmul_tn, multiply, take_rows,
)
from nnctl.engine.cpu.losses import LOSS_CODES, LOSS_KERNELS, loss_forward_backward
from nnctl.engine.cpu.optim import (
    OPTIMIZER_CODES, OPTIMIZER_KERNELS, clip_gradients, optimizer_step, regularize, sum_squares,
)
from nnctl.engine.cpu.sparse import (
    csc_t_matmul, csc_t_matmul_split, csr_matmul, csr_matmul_split, csr_t_matmul, csr_transpose_rows,
)

# The N-d layer families keep their kernels in their own modules; each lists its exports in `KERNELS`.
from nnctl.engine.cpu import conv, embedding, normalization, optim_rows, pooling, recurrent, conv3x3  # noqa: E402

FAMILIES = (conv, pooling, normalization, embedding, optim_rows, recurrent, conv3x3)
globals().update({name: getattr(family, name) for family in FAMILIES for name in family.KERNELS})


def prepare() -> None:
    """Called once by get_backend("cpu"), before any kernel is compiled or loaded.

    With settings.NUMBA_SCIPY off, loads Numba's CPU target while `scipy.linalg.cython_blas` cannot be
    imported: Numba then marks BLAS as unavailable to jitted code (no kernel here calls it), and the module
    can be imported normally again afterwards. Without scipy installed, or once Numba's target is loaded,
    this changes nothing.
    """
    if settings.NUMBA_SCIPY:
        return
    from numba.core.registry import cpu_target

    name = "scipy.linalg.cython_blas"
    if name in sys.modules:  # already imported: nothing left to save
        return
    sys.modules[name] = None  # makes `import scipy.linalg.cython_blas` raise ImportError
    try:
        cpu_target.target_context.refresh()
    finally:
        del sys.modules[name]


# The kernels by name. bias_act_forward/backward, loss_forward_backward and optimizer_step take a code and call
# that activation's, loss's or optimizer's own kernel (BIAS_ACT_FORWARD[code], …), so that only the ones a
# model uses are ever compiled.
KERNELS = (
    "bias_act_forward", "bias_act_backward", "matmul", "matmul_nt", "matmul_tn", "take_rows",
    "dropout_forward", "multiply", "csr_matmul", "csr_t_matmul", "csr_transpose_rows", "csc_t_matmul",
    "csr_matmul_split", "csc_t_matmul_split",
    "loss_forward_backward",
    "optimizer_step", "clip_gradients", "regularize", "sum_squares",
    *(name for family in FAMILIES for name in family.KERNELS),
)
CODED_KERNELS = (*BIAS_ACT_FORWARD, *BIAS_ACT_BACKWARD, *LOSS_KERNELS, *OPTIMIZER_KERNELS)
__all__ = [*KERNELS, "ACTIVATION_CODES", "LOSS_CODES", "OPTIMIZER_CODES", "KERNELS", "CODED_KERNELS",
           "BIAS_ACT_FORWARD", "BIAS_ACT_BACKWARD", "LOSS_KERNELS", "OPTIMIZER_KERNELS"]
