"""SimpleRNN, LSTM, GRU and Bidirectional as ONNX's RNN, LSTM and GRU nodes.

Keras's gate blocks are reordered to ONNX's (LSTM: i, f, c, o → i, o, f, c; GRU: z, r, h is the same), the
kernels transposed to ONNX's (gates·units, inputs); Keras 3's GRU (`reset_after`) is ONNX's
`linear_before_reset=1` with separate input and recurrent biases. The sequence runs time-major (onnxruntime's
CPU kernels refuse `layout=1`): one Transpose before, one after when the whole sequence is returned.
`go_backwards` is `direction="reverse"`, whose outputs ONNX aligns with the input steps: Keras returns them in
processing order, so the sequence is flipped back. A Bidirectional wrapper is one `direction="bidirectional"`
node, its two outputs merged as `merge_mode` says.
"""

from __future__ import annotations

import numpy as np

from nnctl.export.onnx_layers import NotExportable

_ORDER = {"simple_rnn": [0], "lstm": [0, 3, 1, 2], "gru": [0, 1, 2]}
_OP = {"simple_rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}
_ACTIVATIONS = {"tanh": "Tanh", "sigmoid": "Sigmoid", "relu": "Relu"}


def _activation(layer, name):
    if name not in _ACTIVATIONS:
        raise NotExportable(f"layer '{layer.name}' ({type(layer).__name__}) uses activation '{name}', which ONNX's "
                            f"recurrent nodes do not take (allowed: {', '.join(_ACTIVATIONS)})")
    return _ACTIVATIONS[name]


def _weights(layer):
    """(W (gates·u, f), R (gates·u, u), B (2·gates·u,)) of one direction, in ONNX's gate order."""
    units, order = layer.units, _ORDER[layer.type_name]

    def reorder(matrix):
        return np.concatenate([matrix[..., k * units:(k + 1) * units] for k in order], axis=-1)

    w, r = reorder(layer.kernel.value).T, reorder(layer.recurrent_kernel.value).T
    width = len(order) * units
    if layer.bias is None:
        b = np.zeros(2 * width, np.float32)
    elif layer.type_name == "gru":  # (2, 3u): the input bias, then the recurrent one
        b = np.concatenate([reorder(layer.bias.value[0]), reorder(layer.bias.value[1])])
    else:
        b = np.concatenate([reorder(layer.bias.value), np.zeros(width, np.float32)])
    return w, r, b


def _node(g, layers, x, direction):
    """The recurrent node over time-major `x` for `layers` (one per direction); returns (Y, Y_h)."""
    first = layers[0]
    w, r, b = (np.stack(parts) for parts in zip(*(_weights(layer) for layer in layers)))
    kind = first.type_name
    names = {"simple_rnn": [first.activation], "gru": [first.recurrent_activation, first.activation],
             "lstm": [first.recurrent_activation, first.activation, first.activation]}[kind]
    attrs = dict(hidden_size=first.units, direction=direction,
                 activations=[_activation(first, name) for name in names] * len(layers))
    if kind == "gru":
        attrs["linear_before_reset"] = 1
    return g.op(_OP[kind], [x, g.const(w), g.const(r), g.const(b)], outputs=2, **attrs)


def _batch_major(g, y):
    """Y (steps, directions, batch, u) of one direction → (batch, steps, u)."""
    return g.op("Transpose", [g.op("Squeeze", [y, g.const(np.array([1], np.int64))])], perm=[1, 0, 2])


def _flip_steps(g, y):
    return g.op("Slice", [y, g.const(np.array([-1], np.int64)), g.const(np.array([-2**62], np.int64)),
                          g.const(np.array([1], np.int64)), g.const(np.array([-1], np.int64))])


def recurrent(g, layer, x):
    time_major = g.op("Transpose", [x], perm=[1, 0, 2])
    y, y_h = _node(g, [layer], time_major, "reverse" if layer.go_backwards else "forward")
    if not layer.return_sequences:
        return g.op("Squeeze", [y_h, g.const(np.array([0], np.int64))])
    out = _batch_major(g, y)
    return _flip_steps(g, out) if layer.go_backwards else out


def bidirectional(g, layer, x):
    ahead, back = layer.forward_layer, layer.backward_layer
    if ahead.go_backwards:
        raise NotExportable(f"layer '{layer.name}' (Bidirectional) wraps a layer with go_backwards: not exported")
    time_major = g.op("Transpose", [x], perm=[1, 0, 2])
    y, y_h = _node(g, [ahead, back], time_major, "bidirectional")
    if layer.return_sequences:  # (steps, 2, batch, u): each direction aligned with the input steps, as Keras
        parts = [g.op("Transpose", [g.op("Gather", [y, g.const(np.array(k, np.int64))], axis=1)], perm=[1, 0, 2])
                 for k in (0, 1)]
    else:  # (2, batch, u)
        parts = [g.op("Gather", [y_h, g.const(np.array(k, np.int64))], axis=0) for k in (0, 1)]
    mode = layer.merge_mode
    if mode == "concat":
        return g.op("Concat", parts, axis=-1)
    if mode == "sum":
        return g.op("Add", parts)
    if mode == "mul":
        return g.op("Mul", parts)
    return g.op("Mean", parts)


RECURRENT = {"simple_rnn": recurrent, "lstm": recurrent, "gru": recurrent, "bidirectional": bidirectional}
