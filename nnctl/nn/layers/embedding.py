"""Embedding: int32 token ids (batch, ...) → their rows of a (input_dim, output_dim) table.

Its gradient is written into only the rows a step used, so a large vocabulary costs nothing per step.
"""

from __future__ import annotations

import numpy as np

from nnctl.errors import ShapeError, check_positive_int
from nnctl.nn.layers.arguments import Bool, NamedSpec, Optional, Width, check_bool, check_initializer, check_regularizer
from nnctl.nn.layers.base import Layer


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
        # The gradient's bookkeeping (see embedding_scatter_add): rows written last step, and their marks.
        self._touched = np.zeros(self.input_dim, np.int32)
        self._marks = np.zeros(self.input_dim, np.uint8)
        self._touched_count = 0
        # The whole gradient is cleared before the first step, and before every step after a regularizer
        # has added into every row; otherwise only the touched rows are.
        self._dense_dirty = True

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
        grad = self.embeddings.grad
        if self._dense_dirty:
            grad[...] = 0
            self._dense_dirty = self.embeddings.regularizer is not None
        dy2 = np.ascontiguousarray(dy).reshape(-1, self.output_dim)
        self._touched_count = self.backend.embedding_scatter_add(self.ids, dy2, grad, self._touched,
                                                                 self._touched_count, self._marks)
        # With a regularizer every row has a gradient; otherwise only these rows do.
        self.embeddings.rows = None if self._dense_dirty else self._touched[:self._touched_count]

    def get_config(self):
        return {"input_dim": self.input_dim, "output_dim": self.output_dim,
                "embeddings_initializer": self.embeddings_initializer,
                "embeddings_regularizer": self.embeddings_regularizer, "mask_zero": self.mask_zero,
                **self.base_config()}
