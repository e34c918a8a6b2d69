"""Conv1D and Conv2D against PyTorch 2.13 on the same weights (kernel transposed to (out, in, kh, kw)):
forward, input gradient and kernel/bias gradients, for each padding mode. Skipped without torch."""

import numpy as np
import pytest

from nnctl.nn.layers.conv import Conv1D, Conv2D
from nnctl.nn.model import Sequential

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _torch_same(size, kernel, stride, dilation, causal=False):
    """(before, after) padding as TensorFlow's 'same' (or 'causal') takes it."""
    span = (kernel - 1) * dilation + 1
    if causal:
        return span - 1, 0
    out = -(-size // stride)
    total = max((out - 1) * stride + span - size, 0)
    return total // 2, total - total // 2


CASES = [
    (Conv2D, dict(filters=5, kernel_size=3), (28, 28, 1)),
    (Conv2D, dict(filters=6, kernel_size=(3, 2), strides=2, padding="same"), (9, 8, 3)),
    (Conv2D, dict(filters=4, kernel_size=4, padding="same"), (8, 7, 5)),
    (Conv2D, dict(filters=4, kernel_size=3, dilation_rate=(2, 1), padding="same"), (9, 8, 20)),
    (Conv2D, dict(filters=8, kernel_size=3), (13, 13, 32)),
    (Conv1D, dict(filters=6, kernel_size=7), (40, 16)),
    (Conv1D, dict(filters=5, kernel_size=4, padding="same", strides=2), (21, 6)),
    (Conv1D, dict(filters=5, kernel_size=3, padding="causal", dilation_rate=2), (21, 6)),
]


@pytest.mark.parametrize("cls, args, in_shape", CASES)
def test_forward_and_backward_match_pytorch(cls, args, in_shape):
    rng = np.random.default_rng(4)
    layer = cls(**args)
    model = Sequential([layer], input_shape=in_shape, seed=1)
    model.build()
    layer.needs_input_grad = True  # a first layer skips its input gradient in a model
    layer.bias.value[...] = rng.standard_normal(layer.filters)
    x = rng.standard_normal((4,) + in_shape).astype(np.float32)
    y = layer.forward(x, training=True).copy()
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = layer.backward(dy).copy()

    kernel = layer.kernel.value
    rank = len(in_shape) - 1
    tx = torch.tensor(np.moveaxis(x, -1, 1), requires_grad=True)
    tw = torch.tensor(np.ascontiguousarray(np.moveaxis(kernel, (-1, -2), (0, 1))), requires_grad=True)
    tb = torch.tensor(layer.bias.value.copy(), requires_grad=True)
    pads = []
    for axis in reversed(range(rank)):  # F.pad lists the last axis first
        size, k = in_shape[axis], layer.kernel_size[axis]
        s, d = layer.strides[axis], layer.dilation_rate[axis]
        pads += [0, 0] if layer.padding == "valid" else list(_torch_same(size, k, s, d, layer.padding == "causal"))
    conv = F.conv2d if rank == 2 else F.conv1d
    out = conv(F.pad(tx, pads), tw, tb, stride=layer.strides, dilation=layer.dilation_rate)
    out.backward(torch.tensor(np.moveaxis(dy, -1, 1)))
    # float32 sums of up to thousands of terms: tolerances relative to each array's largest value
    for got, want in [(y, np.moveaxis(out.detach().numpy(), 1, -1)), (dx, np.moveaxis(tx.grad.numpy(), 1, -1)),
                      (layer.kernel.grad, np.moveaxis(tw.grad.numpy(), (0, 1), (-1, -2))),
                      (layer.bias.grad, tb.grad.numpy())]:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * max(1.0, np.abs(want).max()))
