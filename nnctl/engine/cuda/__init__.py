"""CUDA kernels (numba-cuda), the twins of nnctl/engine/cpu/'s by name and argument order (DESIGN.md, Engine).

Imported only when a CUDA backend is asked for; `import nnctl` and every CPU command never load it. Every CPU
kernel has its twin here (dense, sparse input, losses, optimizers dense and row-sparse, embedding, normalization,
pooling, convolution, the conv + max pooling fusions with their Winograd stages, recurrent), each checked under
NUMBA_ENABLE_CUDASIM=1 against the same NumPy oracles as the CPU kernels and compiled for sm_90 with
`cuda.compile_ptx` where the cu12 wheels are installed (tests/engine/test_cuda_sim.py). `PENDING` (kernels) and
`PENDING_FAMILIES` (cpu modules) would name CPU kernels still without a twin, so that a new CPU kernel without one
fails a test; both are empty. `dropout_counter_forward` is the GPU's own (its masks come from a counter-based
generator, nnctl/engine/cuda/dropout.py), and so are the Keras-mask kernels of masks.py, the Dot merge's and mask
joins of merge.py, the loss weighting of per-step and several outputs in losses.py, shuffles.py's reshuffles,
fused.py's whole steps of a Dense model in one launch, columns.py's sums down tall columns, graphs.py's step
bookkeeping for a step replayed as a CUDA graph (and optim.py's `optimizer_step_at`), and elementwise.py's maps,
reductions and gathers behind the NumPy-like GpuArrays (ndarray.py, ndfuncs.py) that run custom layers' ops on
the GPU.
"""

import importlib
import os


def _quiet_small_grids() -> None:
    """nnctl launches small grids on purpose (a bias row, a loss's sum, a batch of 16): numba-cuda's
    low-occupancy warning would print for each such launch site, and it is checked on every launch. Left as it
    is when NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS is set."""
    if "NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS" in os.environ:
        return
    for name in ("numba.cuda.core.config", "numba.core.config"):  # numba-cuda's own config, then Numba's
        try:
            importlib.import_module(name).CUDA_LOW_OCCUPANCY_WARNINGS = 0
        except ImportError:
            pass


_quiet_small_grids()

from nnctl.engine.cuda import (  # noqa: E402 - once the warning is off
    columns, conv, conv3x3, conv_pool, dense, dropout, elementwise, embedding, fused, graphs, losses, masks, merge,
    normalization, optim, optim_rows, pooling, recurrent, recurrent_gru, recurrent_lstm, shuffles, sorting, sparse)

MODULES = (dense, dropout, losses, optim, sparse, embedding, optim_rows, normalization, pooling, conv, conv_pool,
           conv3x3, recurrent, recurrent_lstm, recurrent_gru, masks, merge, sorting, elementwise, fused, shuffles,
           graphs, columns)
KERNELS = tuple(name for module in MODULES for name in module.KERNELS)
globals().update({name: getattr(module, name) for module in MODULES for name in module.KERNELS})
PENDING: tuple[str, ...] = ()
PENDING_FAMILIES: tuple[str, ...] = ()

__all__ = [*KERNELS, "KERNELS", "MODULES", "PENDING", "PENDING_FAMILIES"]
