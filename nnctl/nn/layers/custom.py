"""Layers written the Keras way (`build` + `call` on `nnctl.ops`): their forward runs `call` under a gradient
tape, their backward asks the tape for the input's and every weight's gradient, and their output shape comes
from one `call` on a zero sample (nnctl/nn/layers/base.py routes a layer with `call` here).
"""

from __future__ import annotations

import inspect

import numpy as np

from nnctl.errors import ShapeError


def _call(layer, inputs, training):
    """layer.call(inputs), with `training` when its signature takes it (Keras's convention)."""
    if "training" in inspect.signature(layer.call).parameters:
        return layer.call(inputs, training=training)
    return layer.call(inputs)


def tape_forward(layer, x, training):
    from nnctl import ops

    with ops.GradientTape() as tape:
        inputs = ops.Tensor(x)
        out = _call(layer, inputs, training)
    if not isinstance(out, ops.Tensor):
        out = ops.Tensor(out)
    layer._tape = (tape, inputs, out)
    return np.ascontiguousarray(out.value, dtype=layer.dtype)


def tape_backward(layer, dy):
    tape, inputs, out = layer._tape
    trainable = [p for p in layer.params if p.trainable]
    grads = tape.gradient(out, [inputs] + trainable, output_gradient=dy)
    for param, grad in zip(trainable, grads[1:]):
        param.grad[...] = grad
    layer._tape = None  # the tape holds the step's arrays: let them go
    return np.ascontiguousarray(grads[0], dtype=layer.dtype) if layer.needs_input_grad else None


def traced_output_shape(layer, input_shape):
    """The shape `call` gives one zero sample of `input_shape`, weights not yet allocated standing in as zeros
    (Keras runs `call` symbolically for the same purpose)."""
    from nnctl import ops

    stand_ins = [p for p in layer.params if p.value is None]
    for param in stand_ins:
        param.value = np.zeros(param.shape, np.float64)
    try:
        out = _call(layer, ops.Tensor(np.zeros((1,) + tuple(input_shape))), False)
    except (ValueError, TypeError, IndexError) as err:
        raise ShapeError(f"{type(layer).__name__}.call fails on inputs of shape {tuple(input_shape)}: {err}") from None
    finally:
        for param in stand_ins:
            param.value = None
    return tuple(int(size) for size in np.shape(ops.convert_to_numpy(out))[1:])
