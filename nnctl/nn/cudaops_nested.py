"""A model used as a layer (nn/functional.py's NestedModel: a Sequential or a one-input graph inside another
model) on the CUDA path: its layers' device ops, run in its graph order inside the outer model's step, on the
outer model's weight buffers (a nested model's weights are the outer model's, frozen ones in the fixed buffer),
its own shared layers adding their uses' gradients as the outer graph's do (nn/cudashare.py). Its Keras mask goes
in and out as the CPU's nested model passes it; its regularizers count with the outer ones."""

from __future__ import annotations

from nnctl.nn.cudaops import Op, op_for
from nnctl.nn.cudashare import backward_adding, shared_weights


class _Keys:
    """The outer model as the nested ops see it: its store and optimizer; a seed of its own, so that a Dropout
    inside draws other masks than the outer layer at the same index (nnctl/nn/cudaops_dropout.py keys)."""

    def __init__(self, model, index):
        self.store, self.optimizer, self.rng = model.store, model.optimizer, model.rng
        base = model.seed if model.seed is not None else int(model.rng.integers(1 << 62))
        self.seed = (base * 0x2545F4914F6CDD1D + (index + 1) * 0x94D049BB133111EB) % (1 << 62)


class _Inside:
    """The CUDA path (nn/cudapath.py) as the nested ops see it: the same kernels, buffers and weight views, the
    nested graph's sources, and its input's gradient wanted when the outer model wants it."""

    def __init__(self, ctx, inner, index, wants_dx):
        self.outer, self.model = ctx, _Keys(ctx.model, index)
        self.sources = _inner_sources(inner)
        self.wants_dx = wants_dx

    def __getattr__(self, name):
        return getattr(self.outer, name)

    def needs_dx(self, index: int) -> bool:
        return any(j >= 0 for j in self.sources[index]) or self.wants_dx


class NestedOp(Op):
    """The nested model's ops in its graph order; a node read by several sums their gradients, as CudaPath."""

    def __init__(self, ctx, layer, index):
        from nnctl.nn.cudaops_host import device_op

        super().__init__(ctx, layer, index)
        inner = layer.model
        self.inside = _Inside(ctx, inner, index, self.needs_dx)
        self.sources = self.inside.sources
        self.ops = [device_op(sub, not self.inside.needs_dx(i))(self.inside, sub, i)
                    for i, sub in enumerate(inner.layers)]
        self.again = shared_weights(self.inside, self.ops, list(getattr(inner, "first_use", range(len(self.ops)))))
        self.penalties = [penalty for op in self.ops for penalty in op.penalties]
        self.replayable = all(op.replayable for op in self.ops)
        reads = [sum(sources.count(i) for sources in self.sources) for i in range(-1, len(self.ops))]
        shapes = [self.in_shape] + [op.out_shape for op in self.ops]
        self.sums = [self.buffer(shape) if count > 1 else None for shape, count in zip(shapes, reads)]

    def forward(self, x, m, training):
        outputs, masks = [], []
        for op, sources in zip(self.ops, self.sources):
            ins = [x if j < 0 else outputs[j] for j in sources]
            ms = [self.in_mask if j < 0 else masks[j] for j in sources]
            op.in_mask = ms if op.multi else ms[0]
            outputs.append(op.forward(ins if op.multi else ins[0], m, training))
            masks.append(op.out_mask(op.in_mask))
        self.mask_out = masks[-1]
        return outputs[-1]

    def out_mask(self, mask):
        return self.mask_out

    def backward(self, dy, m, fused=False):
        grads: list = [None] * (len(self.ops) + 1)  # grads[0]: the nested input's; grads[i + 1]: node i's
        grads[-1], written = dy, set()
        for index in range(len(self.ops) - 1, -1, -1):
            if grads[index + 1] is None:
                continue
            op = self.ops[index]
            dx = backward_adding(self.inside, self.again, written, index, op, grads[index + 1], m)
            for j, part in zip(self.sources[index], dx if op.multi else [dx]):
                if part is None or (j < 0 and not self.needs_dx):
                    continue
                if grads[j + 1] is None:
                    grads[j + 1] = part
                else:
                    total = self.sums[j + 1][:part.size]
                    self.ctx.k.add(grads[j + 1].reshape(-1), part.reshape(-1), total)
                    grads[j + 1] = total.reshape(part.shape)
        return None if grads[0] is None else grads[0].reshape((m,) + self.in_shape)


def _inner_sources(inner) -> list:
    return [list(sources) for sources in getattr(inner, "sources", [[i - 1] for i in range(len(inner.layers))])]


def reads_ids(layer) -> bool:
    """Whether nested model `layer` takes token ids: an Embedding (in it, or in a model nested in it) reads its
    input."""
    inner = layer.model
    for sub, sources in zip(inner.layers, _inner_sources(inner)):
        if -1 in sources and (type(sub).__name__ == "Embedding" or (op_for(sub) is NestedOp and reads_ids(sub))):
            return True
    return False


def embeddings(ops, sources, outer: int | None = None):
    """(Embedding op, model input index) of every Embedding op in `ops` (graph `sources`) and in the models nested
    in it; `outer`: the model input a nested model reads."""
    for op, reads in zip(ops, sources):
        k = -1 - reads[0] if reads[0] < 0 else None
        if type(op).__name__ == "EmbeddingOp":
            yield op, k if outer is None else outer
        elif isinstance(op, NestedOp):
            yield from embeddings(op.ops, op.sources, k if outer is None else outer)
