"""CPU kernels (Numba `@njit`, cached), exported by name: the CUDA backend must mirror this list.

Arrays are float32 NumPy arrays; each kernel documents its loop and argument shapes.
"""

from nnctl.engine.cpu.dense import (
    ACTIVATION_CODES, bias_act_backward, bias_act_forward, matmul, matmul_nt, matmul_tn, take_rows,
    dropout_forward, multiply,
)
from nnctl.engine.cpu.sparse import (
    csc_t_matmul, csc_t_matmul_split, csr_matmul, csr_matmul_split, csr_t_matmul, csr_transpose_rows,
)
from nnctl.engine.cpu.losses import (
    LOSS_CODES, loss_forward_backward,
)
from nnctl.engine.cpu.optim import (
    OPTIMIZER_CODES, optimizer_step, regularize, sum_squares,
)

KERNELS = (
    "bias_act_forward", "bias_act_backward", "matmul", "matmul_nt", "matmul_tn", "take_rows",
    "dropout_forward", "multiply", "csr_matmul", "csr_t_matmul", "csr_transpose_rows", "csc_t_matmul",
    "csr_matmul_split", "csc_t_matmul_split",
    "loss_forward_backward",
    "optimizer_step", "regularize", "sum_squares",
)
__all__ = [*KERNELS, "ACTIVATION_CODES", "LOSS_CODES", "OPTIMIZER_CODES", "KERNELS"]
