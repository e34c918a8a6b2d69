"""CUDA kernels (numba-cuda), the twins of nnctl/engine/cpu/'s by name and argument order (DESIGN.md, Engine).

Imported only when a CUDA backend is asked for; `import nnctl` and every CPU command never load it. This is
the first part of issue #20: the dense family's kernels, the sparse input's, the losses, the optimizers
(dense and row-sparse) and the embedding family's, checked under
NUMBA_ENABLE_CUDASIM=1 against the same NumPy oracles as the CPU kernels. `PENDING` names the CPU kernels
without a twin yet, so a new CPU kernel without one fails a test.
"""

from nnctl.engine.cuda.dense import (bias_act_backward, bias_act_forward, dropout_forward, matmul, matmul_nt,
                                     matmul_tn, multiply, take_rows)
from nnctl.engine.cuda.dense import KERNELS as _DENSE
from nnctl.engine.cuda.losses import KERNELS as _LOSSES
from nnctl.engine.cuda.losses import loss_forward_backward
from nnctl.engine.cuda.optim import KERNELS as _OPTIM
from nnctl.engine.cuda.optim import clip_gradients, optimizer_step, regularize, sum_squares
from nnctl.engine.cuda.sparse import KERNELS as _SPARSE
from nnctl.engine.cuda.sparse import (csc_t_matmul, csc_t_matmul_split, csr_matmul, csr_matmul_split, csr_t_matmul,
                                      csr_transpose_rows)

from nnctl.engine.cuda.embedding import KERNELS as _EMBEDDING
from nnctl.engine.cuda.embedding import embedding_gather, embedding_scatter_add, scale_channels

from nnctl.engine.cuda.optim_rows import KERNELS as _ROWS
from nnctl.engine.cuda.optim_rows import rmsprop_rows_step, rows_flush, sgd_rows_step

KERNELS = (*_DENSE, *_LOSSES, *_OPTIM, *_SPARSE, *_EMBEDDING, *_ROWS)
PENDING = ()  # besides the N-d families not ported yet (PENDING_FAMILIES)
PENDING_FAMILIES = ("conv", "pooling", "normalization", "recurrent")

__all__ = ["KERNELS", "PENDING", "bias_act_backward", "bias_act_forward", "dropout_forward", "matmul", "matmul_nt",
           "matmul_tn", "multiply", "take_rows", "loss_forward_backward", "clip_gradients", "optimizer_step",
           "regularize", "sum_squares", "csc_t_matmul", "csc_t_matmul_split", "csr_matmul", "csr_matmul_split",
           "csr_t_matmul", "csr_transpose_rows", "embedding_gather", "embedding_scatter_add", "scale_channels",
           "PENDING_FAMILIES", "rmsprop_rows_step", "rows_flush", "sgd_rows_step"]
