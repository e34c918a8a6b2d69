"""`device: cuda`: a dataset (or an inference input) on the device — copied once and kept while it is in use, token
ids checked against the vocabulary then; or, when it does not fit in the GPU's memory, streamed a batch at a time
through page-locked buffers (`Staging`). CSR input is always copied whole (it is compact)."""

from __future__ import annotations

import numpy as np

from nnctl.engine.csr import CSRMatrix
from nnctl.nn.cudaops_nested import embeddings

# A dataset larger than this share of the GPU's free memory stays on the host and is streamed a batch at a time
# (`Staging`); STREAM_BYTES, when set, is a fixed budget instead (tests).
STREAM_SHARE = 0.5
STREAM_BYTES: int | None = None


class Staging:
    """A dataset streamed to the device: each step gathers its batch's rows on the host into page-locked (pinned)
    buffers and copies them into device buffers of one batch, which the step then reads. The copies go to the
    default stream, behind the previous step's kernels, so reusing the buffers is safe; they are not overlapped
    with the computation yet."""

    def __init__(self, cuda, batch_size: int, arrays: dict):
        self.host = arrays
        self.pinned = {name: cuda.pinned_array((batch_size,) + a.shape[1:], a.dtype) for name, a in arrays.items()}
        self.device = {name: cuda.device_array((batch_size,) + a.shape[1:], a.dtype) for name, a in arrays.items()}

    def load(self, rows) -> dict:
        """{name: the device rows of this batch}, `rows` being host row numbers."""
        m, out = rows.shape[0], {}
        for name, array in self.host.items():
            np.take(array, rows, axis=0, out=self.pinned[name][:m])
            self.device[name][:m].copy_to_device(self.pinned[name][:m])
            out[name] = self.device[name][:m]
        return out


def on_device(ctx, host, xs: list, parts=None) -> dict:
    """The device copies of one dataset (or inference input) for `ctx` (a CudaPath), made once and kept while it
    is in use (the last two seen); or, when it does not fit in the GPU's memory, its `Staging`. `xs`: the inputs
    in order; `parts`: each head's (targets, labels, weights), None for inference."""
    for seen, copies in ctx.data_copies:
        if seen is host:
            return copies
    to, n, arrays = ctx.cuda.to_device, len(xs[0]), {}
    for op, k in embeddings(ctx.ops, ctx.sources):
        op.check_ids(xs[k])
    for k, (x, ids) in enumerate(zip(xs, ctx.ids)):
        if not isinstance(x, CSRMatrix):
            arrays[f"x{k}"] = np.ascontiguousarray(x, np.int32 if ids else np.float32).reshape(n, -1)
    for index, (head, part) in enumerate(zip(ctx.heads, parts or [])):
        arrays.update(head.arrays(index, *part, n))
    copies = {}
    if isinstance(xs[0], CSRMatrix):
        copies = {"indptr": to(xs[0].indptr), "indices": to(xs[0].indices), "values": to(xs[0].values)}
    elif not _fits(ctx.cuda, sum(array.nbytes for array in arrays.values())):
        copies = {"staging": Staging(ctx.cuda, ctx.batch_size, arrays)}
        arrays = {}
    copies.update({name: to(array) for name, array in arrays.items()})
    ctx.data_copies = [*ctx.data_copies[-1:], (host, copies)]
    return copies


def _fits(cuda, nbytes: int) -> bool:
    if STREAM_BYTES is not None:
        return nbytes <= STREAM_BYTES
    free, _ = cuda.current_context().get_memory_info()
    return nbytes <= STREAM_SHARE * free


def host_arrays(data) -> tuple:
    """(the inputs in order, each head's (targets, labels, weights)) of a Dataset or a MultiDataset; for an
    inference input (an array or NamedArrays), (the inputs, None)."""
    from nnctl.named import NamedArrays

    if hasattr(data, "parts"):
        return data.x.values(), [(p.target, p.labels, p.weight) for p in data.parts]
    if hasattr(data, "target"):
        return [data.x], [(data.target, data.labels, data.weight)]
    return (data.values() if isinstance(data, NamedArrays) else [data]), None
