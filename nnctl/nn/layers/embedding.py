"""Embedding: int32 token ids (batch, ...) → their rows of a (input_dim, output_dim) table.

Its gradient is written into only the rows a step used, so a large vocabulary costs nothing per step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nnctl.errors import ShapeError, check_positive_int
from nnctl.nn.layers.arguments import Bool, NamedSpec, Optional, Width, check_bool, check_initializer, check_regularizer
from nnctl.nn.layers.base import Layer


@dataclass
class _Scatter:
    """A table's gradient bookkeeping: `touched[:count]`, the rows the last step wrote (first-use order), marked
    in `marks`; `dense_dirty`: the whole gradient must be cleared first (the first step, and each step after a
    regularizer wrote every row)."""

    touched: np.ndarray
    marks: np.ndarray
    count: int = 0
    dense_dirty: bool = True


class Embedding(Layer):
    """Maps each id in [0, input_dim) to a trainable row of `embeddings` (input_dim, output_dim), as Keras.

    Inputs are int32 ids (the model casts whole-number inputs for it); an id outside [0, input_dim) is an
    error. With `mask_zero`, id 0 is padding: `self.mask` ((batch, ...) bool, False on padding) holds the mask
    of the last forward pass, which the model passes on (`compute_mask`) to the layers that use it (recurrent
    layers, GlobalAveragePooling1D); the outputs themselves are not masked, as in Keras. Ids are not
    differentiable: the layer returns no input gradient.
    """

    type_name = "embedding"
    input_dtype = np.int32

    def __init__(self, input_dim: Width, output_dim: Width, embeddings_initializer: NamedSpec = "uniform",
                 embeddings_regularizer: Optional[NamedSpec] = None, mask_zero: Bool = False, **kwargs):
        super().__init__(**kwargs)
        self.input_dim = check_positive_int("input_dim", input_dim)
        self.output_dim = check_positive_int("output_dim", output_dim)
        self.embeddings_initializer = check_initializer("embeddings_initializer", embeddings_initializer)
        self.embeddings_regularizer = check_regularizer("embeddings_regularizer", embeddings_regularizer)
        self.mask_zero = check_bool("mask_zero", mask_zero)
        self.mask = None

    def build(self, input_shape):
        super().build(input_shape)
        self.embeddings = self.add_weight("embeddings", (self.input_dim, self.output_dim),
                                          self.embeddings_initializer, self.embeddings_regularizer)
        # A step's gradient is non-zero in the rows it used only: `embeddings.rows` names them after each
        # backward pass (None: any row), so the optimizer may update just those (Param.row_sparse).
        self.embeddings.row_sparse = True
        self.embeddings.rows = None
        # The gradient's bookkeeping (see embedding_scatter_add), kept on the weight so that every use of a
        # shared table (a graph's shared layer) writes one gradient: rows written last step, and their marks.
        self.embeddings.scatter = _Scatter(np.zeros(self.input_dim, np.int32), np.zeros(self.input_dim, np.uint8))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def forward(self, x, training):
        ids = np.ascontiguousarray(x, dtype=np.int32)
        flat = ids.reshape(-1)
        out = self._buffer("y", (flat.shape[0], self.output_dim))
        bad = self.backend.embedding_gather(flat, self.embeddings.value, out)
        if bad >= 0:
            raise ShapeError(f"layer '{self.name}' (Embedding) got token id {int(flat[bad])}, outside its "
                             f"vocabulary [0, {self.input_dim}): raise `input_dim` or cap the ids (num_words)")
        self.ids = flat
        self.mask = ids != 0 if self.mask_zero else None
        return out.reshape(ids.shape + (self.output_dim,))

    def compute_mask(self, mask):
        return self.mask

    def backward(self, dy):
        """Fills the table's gradient; returns None (no input gradient)."""
        if not self.embeddings.trainable:  # frozen: no gradient, and ids have none to pass on
            return
        grad, state = self.embeddings.grad, self.embeddings.scatter
        dy2 = np.ascontiguousarray(dy).reshape(-1, self.output_dim)
        if getattr(self, "accumulating", False):  # a shared table's later use in this backward pass: add to it
            state.count += self.backend.embedding_scatter_add(self.ids, dy2, grad, state.touched[state.count:], 0,
                                                              state.marks)
        else:
            if state.dense_dirty:
                grad[...] = 0
                state.dense_dirty = self.embeddings.regularizer is not None
            state.count = self.backend.embedding_scatter_add(self.ids, dy2, grad, state.touched, state.count,
                                                             state.marks)
        # With a regularizer every row has a gradient; otherwise only these rows do.
        self.embeddings.rows = None if state.dense_dirty else state.touched[:state.count]

    def get_config(self):
        return {"input_dim": self.input_dim, "output_dim": self.output_dim,
                "embeddings_initializer": self.embeddings_initializer,
                "embeddings_regularizer": self.embeddings_regularizer, "mask_zero": self.mask_zero,
                **self.base_config()}
