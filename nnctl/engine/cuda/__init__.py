"""CUDA kernels (numba-cuda), the twins of nnctl/engine/cpu/'s by name and argument order (DESIGN.md, Engine).

Imported only when a CUDA backend is asked for; `import nnctl` and every CPU command never load it. Every CPU
kernel family has its twin here (dense, sparse input, losses, optimizers dense and row-sparse, embedding,
normalization, pooling, convolution, recurrent), each checked under NUMBA_ENABLE_CUDASIM=1 against the same
NumPy oracles as the CPU kernels and compiled for sm_90 with `cuda.compile_ptx` where the cu12 wheels are
installed (tests/engine/test_cuda_sim.py). `PENDING` and `PENDING_FAMILIES` name CPU kernels without a twin,
so a new CPU kernel without one fails a test: only the CPU's conv + max pooling fusion (nnctl/nn/layers/
conv_pool.py, with its Winograd kernels), which the GPU path does not run (nnctl/nn/cudapath.py runs the two layers apart). `dropout_counter_forward` is the GPU's own (its masks
come from a counter-based generator, nnctl/engine/cuda/dropout.py), and so are the Keras-mask kernels of masks.py
and a few reshuffles in dense.py.
"""

from nnctl.engine.cuda import (conv, dense, dropout, embedding, losses, masks, normalization, optim, optim_rows,
                               pooling, recurrent, recurrent_gru, sparse)

MODULES = (dense, dropout, losses, optim, sparse, embedding, optim_rows, normalization, pooling, conv, recurrent,
           recurrent_gru, masks)
KERNELS = tuple(name for module in MODULES for name in module.KERNELS)
globals().update({name: getattr(module, name) for module in MODULES for name in module.KERNELS})
PENDING = ("conv_direct_pool_forward", "conv_direct_pool_weight_grad", "conv_pooled_weight_grad",
           "conv_pooled_columns_grad")
PENDING_FAMILIES = ("conv3x3",)

__all__ = [*KERNELS, "KERNELS", "MODULES", "PENDING", "PENDING_FAMILIES"]
