"""How much memory training a model takes, estimated from its layers' shapes before any array is allocated.

`build_model` refuses a config whose estimate exceeds the memory this machine has available.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

from nnctl.host import size_text

BYTES = 4  # float32


@dataclass
class Footprint:
    """Parameter count, the bytes of the training state, and the bytes of one batch's activations."""

    params: int
    state_bytes: int
    activation_bytes: int
    biggest_layer: int | None  # index of the layer holding the most parameters
    widest_layer: int  # index of the layer with the largest output per row
    row_bytes: int  # activation bytes of one row
    batch_rows: int

    @property
    def total_bytes(self) -> int:
        return self.state_bytes + self.activation_bytes


def estimate(layers: list, input_shape: tuple, batch_rows: int, slot_count: int,
             sources: list | None = None, input_shapes: list | None = None) -> Footprint | None:
    """The footprint of training `layers` on `input_shape` samples in batches of `batch_rows` rows, or None
    when the shapes do not fit together (building the model reports that).

    State: weights, gradients and `slot_count` optimizer slots, plus the checkpoint's copy of weights and
    slots and its serialized bytes. Activations: per layer, its output, its pre-activation and its gradient.
    `sources`: a graph's (functional `Model.sources`) input nodes per layer, -1 - k its input k (of shape
    `input_shapes[k]`, or `input_shape`); else a stack.
    """
    input_shapes = [tuple(s) for s in input_shapes or [input_shape]]
    shape, params, per_row = tuple(input_shape), 0, sum(math.prod(s) for s in input_shapes)
    sizes, widths = [], []
    shapes, seen = [], set()
    for index, layer in enumerate(layers):
        if sources is not None:
            inputs = [input_shapes[-1 - j] if j < 0 else shapes[j] for j in sources[index]]
            shape = inputs if getattr(layer, "multi_input", False) else inputs[0]
        # A shallow clone declares its weights (shapes only: the parameter store allocates, later).
        clone = copy.copy(layer)
        clone.params = []
        try:
            clone.build(shape)
        except Exception:  # noqa: BLE001 — any failure here is reported, located, by the real build
            return None
        owned = id(layer) not in seen  # a graph's shared layer owns its weights once
        seen.add(id(layer))
        sizes.append(sum(math.prod(p.shape) for p in clone.params) if owned else 0)
        shape = tuple(clone.output_shape)
        shapes.append(shape)
        widths.append(math.prod(shape))
        per_row += 3 * widths[-1]
        params += sizes[-1]
    state = params * BYTES * (2 + slot_count + 2 * (1 + slot_count))
    biggest = max(range(len(sizes)), key=sizes.__getitem__) if any(sizes) else None
    widest = max(range(len(widths)), key=widths.__getitem__) if widths else 0
    return Footprint(params, state, per_row * batch_rows * BYTES, biggest, widest, per_row * BYTES, batch_rows)


def describe(footprint: Footprint, available: int) -> str:
    """The refusal: what training would need, of which parts, and what this machine has."""
    return (f"training this model needs about {size_text(footprint.total_bytes)} of memory: "
            f"{footprint.params:,} parameters with gradients, optimizer slots and checkpoint copies take "
            f"{size_text(footprint.state_bytes)}, a {footprint.batch_rows:,}-row batch's activations "
            f"{size_text(footprint.activation_bytes)} (allowed: the {size_text(available)} this machine has "
            f"available)")
