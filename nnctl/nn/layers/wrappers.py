"""Bidirectional: one recurrent layer run forward and a copy run backward in time, their outputs merged.

As Keras 3: the copies are named `forward_<layer>` and `backward_<layer>` (weights
`bidirectional/forward_lstm/kernel`, …), the backward copy has `go_backwards: true` and its output sequence is
flipped back into time order before merging, and both give zeros at masked steps when they return sequences.
"""

from __future__ import annotations

import numpy as np

from nnctl.engine.chunks import run_chunk_groups
from nnctl.errors import ArgumentError
from nnctl.nn.layers.arguments import Literal, RecurrentSpec, check_choice
from nnctl.nn.layers.base import Layer

MERGE_MODES = ("concat", "sum", "mul", "ave")


class Bidirectional(Layer):
    """Runs `layer` over the sequence both ways and merges the two outputs (`merge_mode`)."""

    type_name = "bidirectional"
    supports_masking = True

    def __init__(self, layer: RecurrentSpec, merge_mode: Literal["concat", "sum", "mul", "ave"] = "concat",
                 **kwargs):
        super().__init__(**kwargs)
        from nnctl.nn.layers import LAYERS, RECURRENT_TYPES

        inner = layer if isinstance(layer, Layer) else LAYERS.get(layer)
        if inner.type_name not in RECURRENT_TYPES:
            raise ArgumentError(f"`layer` must be a recurrent layer ({', '.join(RECURRENT_TYPES)}), got "
                                f"{inner.type_name}.")
        if inner.go_backwards:
            raise ArgumentError("`layer` must run forward (go_backwards: false): Bidirectional makes the backward "
                                "copy itself.")
        self.merge_mode = check_choice("merge_mode", merge_mode, MERGE_MODES)
        config = {key: value for key, value in inner.get_config().items() if key not in ("name", "trainable")}
        self.inner_name = inner.name or inner.type_name
        self.layer_config = {"type": inner.type_name, **config}
        trainable = self.trainable and inner.trainable
        self.forward_layer = type(inner)(**config, trainable=trainable)
        self.backward_layer = type(inner)(**{**config, "go_backwards": True}, trainable=trainable)
        for copy in (self.forward_layer, self.backward_layer):
            copy.zero_output_for_mask = copy.return_sequences
        self.return_sequences = inner.return_sequences

    def compute_output_shape(self, input_shape):
        shape = self.forward_layer.compute_output_shape(input_shape)
        return shape[:-1] + (2 * shape[-1],) if self.merge_mode == "concat" else shape

    def compute_mask(self, mask):
        return mask if self.return_sequences else None

    def build(self, input_shape):
        super().build(input_shape)
        for copy, way in ((self.forward_layer, "forward"), (self.backward_layer, "backward")):
            copy.name = f"{self.name}/{way}_{self.inner_name}"
            copy.params = []  # a rebuild (the memory estimate builds a shallow clone first) starts afresh
            copy.build(input_shape)
        self.params = self.forward_layer.params + self.backward_layer.params

    def _share(self):
        """The model sets these on the wrapper after building; the copies run with the same."""
        for copy in (self.forward_layer, self.backward_layer):
            copy.backend, copy.rng, copy.dtype = self.backend, self.rng, self.dtype
            copy.needs_input_grad, copy.input_mask = self.needs_input_grad, self.input_mask

    def forward(self, x, training):
        self._share()
        # Both directions' chunks in one chunk-pool call: no wait at the end of the first direction.
        copies = (self.forward_layer, self.backward_layer)
        works = [copy.forward_work(x, training) for copy in copies]
        run_chunk_groups(works, parallel=self.forward_layer._parallel(len(x)))
        ahead, back = (copy._outputs() for copy in copies)
        if self.return_sequences:
            back = back[:, ::-1]
        self.ahead, self.back = ahead, back
        if self.merge_mode == "concat":
            return np.concatenate([ahead, back], axis=-1)
        if self.merge_mode == "sum":
            return ahead + back
        if self.merge_mode == "ave":
            return (ahead + back) * np.asarray(0.5, ahead.dtype)
        return ahead * back

    def backward(self, dy):
        if self.merge_mode == "concat":
            units = dy.shape[-1] // 2
            d_ahead, d_back = dy[..., :units], dy[..., units:]
        elif self.merge_mode == "sum":
            d_ahead = d_back = dy
        elif self.merge_mode == "ave":
            d_ahead = d_back = dy * np.asarray(0.5, dy.dtype)
        else:
            d_ahead, d_back = dy * self.back, dy * self.ahead
        if self.return_sequences:
            d_back = d_back[:, ::-1]
        copies = (self.forward_layer, self.backward_layer)
        works = [copy.backward_work(np.ascontiguousarray(d)) for copy, d in zip(copies, (d_ahead, d_back))]
        run_chunk_groups(works, parallel=self.forward_layer._parallel(len(dy)))
        dx, dx_back = (copy.backward_finish() for copy in copies)
        return None if dx is None else dx + dx_back

    def get_config(self):
        return {"layer": dict(self.layer_config), "merge_mode": self.merge_mode, **self.base_config()}
