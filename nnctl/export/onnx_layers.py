"""Each layer family as ONNX nodes (opset 17), on channels-last tensors as nnctl computes them.

Convolutions and pooling run in ONNX's channels-first layout: each such layer transposes its input to NCHW
and its output back (the graph stays channels-last between layers, so Flatten and Dense need no weight
permutation). A layer this module does not know is refused by name.
"""

from __future__ import annotations

import math

import numpy as np

from nnctl.errors import NnctlError


class NotExportable(NnctlError):
    """A layer (or setting) the ONNX export does not cover; the message names it."""


def activation(g, x: str, name: str, alpha: float) -> str:
    """`name` applied to tensor x (the engine's activations, exactly)."""
    if name == "linear":
        return x
    simple = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "softplus": "Softplus"}
    if name in simple:
        return g.op(simple[name], [x])
    if name == "softmax":
        return g.op("Softmax", [x], axis=-1)
    if name == "elu":
        return g.op("Elu", [x], alpha=float(alpha))
    if name == "leaky_relu":
        return g.op("LeakyRelu", [x], alpha=float(alpha))
    if name == "gelu":  # 0.5·x·(1 + erf(x/√2)), as the engine (opset 17 has no Gelu)
        inner = g.op("Erf", [g.op("Mul", [x, g.const(np.float32(1 / math.sqrt(2)))])])
        return g.op("Mul", [g.op("Mul", [x, g.const(np.float32(0.5))]), g.op("Add", [inner, g.const(np.float32(1))])])
    raise NotExportable(f"activation '{name}' has no ONNX export yet")


def _to_first(g, x, rank):
    return g.op("Transpose", [x], perm=[0, rank + 1] + list(range(1, rank + 1)))


def _to_last(g, x, rank):
    return g.op("Transpose", [x], perm=[0] + list(range(2, rank + 2)) + [1])


def _pads(sizes, kernels, strides, dilations, padding):
    """ONNX `pads` (all begins, then all ends) for Keras's 'valid', 'same' and 'causal' paddings."""
    begins, ends = [], []
    for size, kernel, stride, dilation in zip(sizes, kernels, strides, dilations):
        span = (kernel - 1) * dilation + 1
        if padding == "valid":
            begin = end = 0
        elif padding == "causal":
            begin, end = span - 1, 0
        else:
            out = -(-size // stride)
            total = max((out - 1) * stride + span - size, 0)
            begin, end = total // 2, total - total // 2
        begins.append(begin)
        ends.append(end)
    return begins + ends


def dense(g, layer, x):
    y = g.op("MatMul", [x, g.const(layer.kernel.value)])
    if layer.bias is not None:
        y = g.op("Add", [y, g.const(layer.bias.value)])
    return activation(g, y, layer.activation, layer.alpha)


def conv(g, layer, x):
    rank = layer.rank
    kernel = np.transpose(layer.kernel.value, (rank + 1, rank) + tuple(range(rank)))  # (out, in, k...)
    inputs = [_to_first(g, x, rank), g.const(kernel)] + ([g.const(layer.bias.value)] if layer.bias is not None else [])
    sizes = layer.input_shape[:rank]
    y = g.op("Conv", inputs, kernel_shape=list(layer.kernel_size), strides=list(layer.strides),
             dilations=list(layer.dilation_rate),
             pads=_pads(sizes, layer.kernel_size, layer.strides, layer.dilation_rate, layer.padding))
    return activation(g, _to_last(g, y, rank), layer.activation, layer.alpha)


def pool(g, layer, x):
    rank = layer.rank
    sizes = layer.input_shape[:rank]
    pads = _pads(sizes, layer.pool_size, layer.strides, (1,) * rank, layer.padding)
    attrs = dict(kernel_shape=list(layer.pool_size), strides=list(layer.strides), pads=pads)
    if layer.average:
        y = g.op("AveragePool", [_to_first(g, x, rank)], count_include_pad=0, **attrs)
    else:
        y = g.op("MaxPool", [_to_first(g, x, rank)], **attrs)
    return _to_last(g, y, rank)


def global_pool(g, layer, x):
    axes = list(range(1, layer.rank + 1))
    return g.op("ReduceMean" if layer.average else "ReduceMax", [x], axes=axes, keepdims=int(layer.keepdims))


def batch_norm(g, layer, x):
    """Inference: x·scale + shift per channel, folded from the moving statistics and the explicit epsilon."""
    gamma, beta = layer._values(layer.channels)
    scale = np.asarray(gamma, np.float64) / np.sqrt(np.asarray(layer.moving_variance.value, np.float64)
                                                    + layer.epsilon)
    shift = np.asarray(beta, np.float64) - np.asarray(layer.moving_mean.value, np.float64) * scale
    rank = len(layer.input_shape)
    axis = layer.axis % (rank + 1) if layer.axis < 0 else layer.axis
    shape = [1] * rank
    shape[axis - 1] = layer.channels
    return g.op("Add", [g.op("Mul", [x, g.const(scale.astype(np.float32).reshape(shape))]),
                        g.const(shift.astype(np.float32).reshape(shape))])


def layer_norm(g, layer, x):
    rank = len(layer.input_shape)
    axes = layer.axis if isinstance(layer.axis, list) else [layer.axis]
    resolved = sorted(a % (rank + 1) if a < 0 else a for a in axes)
    if resolved != list(range(resolved[0], rank + 1)):
        raise NotExportable(f"layer '{layer.name}' (LayerNormalization) normalizes axes {axes}: ONNX's "
                            f"LayerNormalization takes trailing axes only")
    gamma, beta = layer._values(layer.width)
    shape = layer.input_shape[resolved[0] - 1:]
    return g.op("LayerNormalization", [x, g.const(np.asarray(gamma, np.float32).reshape(shape)),
                                       g.const(np.asarray(beta, np.float32).reshape(shape))],
                axis=resolved[0], epsilon=float(layer.epsilon))


def embedding(g, layer, x):
    if layer.mask_zero:
        raise NotExportable(f"layer '{layer.name}' (Embedding) has mask_zero: masks are not exported yet")
    return g.op("Gather", [g.const(layer.embeddings.value), x], axis=0)


def reshape(g, layer, x):
    return g.op("Reshape", [x, g.const(np.array([0] + list(layer.output_shape), np.int64))])


def flatten(g, layer, x):
    return g.op("Flatten", [x], axis=1)


def identity(g, layer, x):
    return x


def _l2_normalize(g, x, axis):
    """x / sqrt(max(Σx², ε)) along `axis` (Keras's l2_normalize, ε as the layer's)."""
    from nnctl.nn.layers.merge import L2_EPSILON

    squares = g.op("ReduceSum", [g.op("Mul", [x, x]), g.const(np.array([axis], np.int64))], keepdims=1)
    return g.op("Div", [x, g.op("Sqrt", [g.op("Max", [squares, g.const(np.float32(L2_EPSILON))])])])


def dot(g, layer, xs):
    """Keras's batch dot on inputs of rank 2 or 3: the dot axes moved to where MatMul sums."""
    (first, second), (a, b) = xs, layer.resolved_axes
    ranks = [len(shape) + 1 for shape in layer.input_shape]
    if layer.normalize:
        first, second = _l2_normalize(g, first, a), _l2_normalize(g, second, b)
    rows = g.op("Transpose", [first], perm=[i for i in range(ranks[0]) if i != a] + [a])
    cols = g.op("Transpose", [second], perm=[0, b] + [i for i in range(1, ranks[1]) if i != b])
    if ranks[0] == 2:
        rows = g.op("Unsqueeze", [rows, g.const(np.array([1], np.int64))])
    if ranks[1] == 2:
        cols = g.op("Unsqueeze", [cols, g.const(np.array([2], np.int64))])
    return g.op("Reshape", [g.op("MatMul", [rows, cols]), g.const(np.array([0] + list(layer.output_shape),
                                                                            np.int64))])


def merge(g, layer, xs):
    kind = layer.type_name
    if kind == "dot":
        return dot(g, layer, xs)
    if kind == "concatenate":
        rank = len(layer.output_shape) + 1
        return g.op("Concat", xs, axis=layer.axis % rank if layer.axis < 0 else layer.axis)
    if kind == "subtract":
        return g.op("Sub", xs)
    ops = {"add": "Sum", "multiply": "Mul", "average": "Mean", "maximum": "Max", "minimum": "Min"}
    if kind == "multiply":  # Mul takes two inputs
        out = xs[0]
        for other in xs[1:]:
            out = g.op("Mul", [out, other])
        return out
    if kind in ops:
        return g.op(ops[kind], xs)
    raise NotExportable(f"layer '{layer.name}' ({type(layer).__name__}) has no ONNX export yet")


CONVERTERS = {
    "dense": dense, "conv1d": conv, "conv2d": conv, "max_pooling1d": pool, "max_pooling2d": pool,
    "average_pooling1d": pool, "average_pooling2d": pool, "global_max_pooling1d": global_pool,
    "global_max_pooling2d": global_pool, "global_average_pooling1d": global_pool,
    "global_average_pooling2d": global_pool, "batch_normalization": batch_norm,
    "layer_normalization": layer_norm, "embedding": embedding, "reshape": reshape, "flatten": flatten,
    "dropout": identity, "spatial_dropout1d": identity, "spatial_dropout2d": identity,
    "activation": lambda g, layer, x: activation(g, x, layer.activation, layer.alpha),
}
