"""Embedding on the CUDA path (see nn/cudaops.py): the table's rows gathered for the ids; the gradient the whole
table's, each used row's addends summed in position order (a table shared by several nodes: nn/cudapath.py adds
its uses' gradients as it adds any shared weight's)."""

from __future__ import annotations

import numpy as np

from nnctl.nn.cudaops import Op, _size


class EmbeddingOp(Op):
    """The layer of a text model that reads its input: int32 ids → rows of the table; with mask_zero, the mask of
    the ids that are not 0 for the layers after it. The ids are checked once per dataset (`check_ids`), not per
    step; the gradient is the whole table's (`embedding_table_grad`: each used row's addends summed in position
    order, as the CPU's scatter sums them, the other rows 0, every stage in parallel), and the optimizer steps the
    table as a dense weight, which the CPU's by-rows update equals to float32 rounding
    (nnctl/engine/cpu/optim_rows.py)."""

    def __init__(self, ctx, layer, index):
        super().__init__(ctx, layer, index)
        self.steps, self.width = _size(self.in_shape), layer.output_dim
        self.y = self.buffer((self.steps, self.width))
        self.mask = self.buffer((self.steps,), np.uint8) if layer.mask_zero else None

    def check_ids(self, x) -> None:
        """A ShapeError naming the first id outside [0, input_dim), as the CPU layer's."""
        from nnctl.errors import ShapeError

        flat = np.asarray(x).reshape(-1)
        bad = np.flatnonzero((flat < 0) | (flat >= self.layer.input_dim))
        if bad.size:
            raise ShapeError(f"layer '{self.layer.name}' (Embedding) got token id {int(flat[bad[0]])}, outside its "
                             f"vocabulary [0, {self.layer.input_dim}): raise `input_dim` or cap the ids (num_words)")

    def forward(self, x, m, training):
        self.ids = self.reshaped(x, m * self.steps)
        out = self.view(self.y, (m * self.steps, self.width))
        self.ctx.k.embedding_gather(self.ids, self.weight(self.layer.embeddings, self.ctx.values), out, check=False)
        if self.mask is not None:
            self.ctx.k.id_mask(self.ids, self.mask[:m * self.steps])
        return self.reshaped(out, (m,) + self.out_shape)

    def out_mask(self, mask):
        return None if self.mask is None else self.mask[:self.ids.shape[0]].reshape((-1,) + self.in_shape)

    def backward(self, dy, m, fused=False):
        self.ctx.k.embedding_table_grad(self.ids, self.reshaped(dy, m * self.steps, self.width),
                                        self.weight(self.layer.embeddings, self.ctx.grads))
        return None


class ComputedIdsOp(EmbeddingOp):
    """An Embedding reading ids another layer computes (float values, cast to int32 as the CPU layer casts them).
    They cannot be checked once per dataset: each step's are checked on the device, and the run's first id
    outside the vocabulary is raised as the CPU raises it (a ShapeError naming it) when the runner call ends —
    before its weights come back, so the host keeps the last good ones. Its input gets no gradient (ids have
    none), as on the CPU."""

    NONE = np.iinfo(np.int64).max

    def __init__(self, ctx, layer, index):
        super().__init__(ctx, layer, index)
        self.int_ids = self.buffer((self.steps,), np.int32)
        self.status, self.base = ctx.empty(2, np.int64), 0
        ctx.id_checks.append(self)

    def start(self) -> None:
        self.status.copy_to_device(np.array([self.NONE, 0], np.int64))
        self.base = 0

    def finish(self) -> None:
        from nnctl.errors import ShapeError

        first, value = (int(v) for v in self.status.copy_to_host())
        if first != self.NONE:
            raise ShapeError(f"layer '{self.layer.name}' (Embedding) got token id {value}, outside its vocabulary "
                             f"[0, {self.layer.input_dim}): raise `input_dim` or cap the ids (num_words)")

    def forward(self, x, m, training):
        n = m * self.steps
        self.ctx.k.ids_from_values(x.reshape(n), self.layer.input_dim, self.base, self.int_ids[:n], self.status)
        self.base += n
        return super().forward(self.int_ids[:n], m, training)
