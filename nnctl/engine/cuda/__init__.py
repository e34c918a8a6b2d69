"""CUDA kernels (numba-cuda), the twins of nnctl/engine/cpu/'s by name and argument order (DESIGN.md, Engine).

Imported only when a CUDA backend is asked for; `import nnctl` and every CPU command never load it. Issue #20
so far: the dense family's kernels, the sparse input's, the losses, the optimizers (dense and row-sparse), the
embedding, normalization, pooling and convolution families, each checked under NUMBA_ENABLE_CUDASIM=1 against
the same NumPy oracles as the CPU kernels. `PENDING_FAMILIES` names the CPU kernel families without twins
yet, so a new CPU kernel without one fails a test.
"""

from nnctl.engine.cuda import conv, dense, embedding, losses, normalization, optim, optim_rows, pooling, sparse

MODULES = (dense, losses, optim, sparse, embedding, optim_rows, normalization, pooling, conv)
KERNELS = tuple(name for module in MODULES for name in module.KERNELS)
globals().update({name: getattr(module, name) for module in MODULES for name in module.KERNELS})
PENDING = ()  # flat CPU kernels without a twin (none now); and the N-d families not ported yet:
PENDING_FAMILIES = ("recurrent",)

__all__ = [*KERNELS, "KERNELS", "MODULES", "PENDING", "PENDING_FAMILIES"]
