"""SimpleRNN, LSTM, GRU and Bidirectional layers against PyTorch 2.13 on the same weights: outputs, input
gradients and weight gradients, through nnctl's own layers (projection GEMM, time loop, gradient GEMMs, chunks).
Keras's gate blocks (LSTM i, f, c, o; GRU z, r, h) map to torch's (i, f, g, o; r, z, n); Keras's GRU bias
rows are torch's b_ih and b_hh; Keras's one SimpleRNN/LSTM bias is torch's b_ih with b_hh = 0."""

import numpy as np
import pytest

from nnctl.nn.layers import GRU, LSTM, Bidirectional, SimpleRNN
from nnctl.nn.model import Sequential

torch = pytest.importorskip("torch")
TORCH = {"simple_rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}


def _torch_order(w, kind, units):
    """Keras's gate blocks along the last axis in torch's order (GRU z, r, h → r, z, n)."""
    if kind != "gru":
        return w
    z, r, h = (w[..., k * units:(k + 1) * units] for k in range(3))
    return np.concatenate([r, z, h], axis=-1)


def _load(module, suffix, layer, kind, units):
    bias = layer.bias.value if layer.bias is not None else np.zeros(layer.gates * units, np.float32)
    input_bias, recurrent_bias = (bias[0], bias[1]) if kind == "gru" else (bias, np.zeros_like(bias))
    with torch.no_grad():
        for name, value in (("weight_ih", layer.kernel.value.T), ("weight_hh", layer.recurrent_kernel.value.T),
                            ("bias_ih", input_bias), ("bias_hh", recurrent_bias)):
            getattr(module, f"{name}_l0{suffix}").copy_(
                torch.from_numpy(np.ascontiguousarray(_torch_order(value.T, kind, units).T if name.startswith(
                    "weight") else _torch_order(value, kind, units))))


def _torch_grads(module, suffix, kind, units, gru_bias):
    """The torch gradients in Keras's layouts: (kernel, recurrent_kernel, bias)."""
    def keras(name):
        return _torch_order(getattr(module, f"{name}_l0{suffix}").grad.numpy().T, kind, units) if kind != "gru" else \
            _gru_back(getattr(module, f"{name}_l0{suffix}").grad.numpy().T, units)
    kernel, recurrent = keras("weight_ih"), keras("weight_hh")
    b_ih, b_hh = keras("bias_ih"), keras("bias_hh")
    bias = np.stack([b_ih, b_hh]) if gru_bias else b_ih  # torch's b_hh gets the same gradient as b_ih
    return kernel, recurrent, bias


def _gru_back(w, units):
    """torch's r, z, n blocks → Keras's z, r, h."""
    r, z, n = (w[..., k * units:(k + 1) * units] for k in range(3))
    return np.concatenate([z, r, n], axis=-1)


CASES = [(SimpleRNN, 5, 7, True), (LSTM, 6, 7, True), (GRU, 4, 9, True), (LSTM, 17, 3, False),
         (GRU, 3, 5, False), (SimpleRNN, 16, 4, False)]


@pytest.mark.parametrize("cls, units, steps, sequences", CASES)
def test_layer_matches_pytorch(cls, units, steps, sequences):
    rng = np.random.default_rng(units)
    features, n = 4, 6
    layer = cls(units, return_sequences=sequences)
    Sequential([layer], input_shape=(steps, features), seed=1).build()
    layer.needs_input_grad = True  # a first layer skips its input gradient in a model
    if layer.bias is not None:
        layer.bias.value[...] = rng.normal(0, 0.3, layer.bias.value.shape)
    x = rng.standard_normal((n, steps, features)).astype(np.float32)
    y = layer.forward(x, training=True).copy()
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = layer.backward(dy).copy()

    kind = layer.type_name
    module = TORCH[kind](features, units, batch_first=True)
    _load(module, "", layer, kind, units)
    tx = torch.from_numpy(x).requires_grad_()
    out = module(tx)[0]
    out = out if sequences else out[:, -1]
    (out * torch.from_numpy(dy)).sum().backward()
    np.testing.assert_allclose(y, out.detach().numpy(), rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-4, atol=2e-6)
    kernel, recurrent, bias = _torch_grads(module, "", kind, units, kind == "gru")
    np.testing.assert_allclose(layer.kernel.grad, kernel, rtol=1e-4, atol=5e-6)
    np.testing.assert_allclose(layer.recurrent_kernel.grad, recurrent, rtol=1e-4, atol=5e-6)
    np.testing.assert_allclose(layer.bias.grad, bias, rtol=1e-4, atol=5e-6)


@pytest.mark.parametrize("cls", [LSTM, GRU])
def test_bidirectional_matches_pytorch(cls):
    rng = np.random.default_rng(3)
    units, steps, features, n = 5, 6, 3, 4
    layer = Bidirectional(cls(units, return_sequences=True))
    Sequential([layer], input_shape=(steps, features), seed=2).build()
    layer.needs_input_grad = True
    x = rng.standard_normal((n, steps, features)).astype(np.float32)
    y = layer.forward(x, training=True).copy()
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = layer.backward(dy).copy()

    kind = cls.type_name
    module = TORCH[kind](features, units, batch_first=True, bidirectional=True)
    _load(module, "", layer.forward_layer, kind, units)
    _load(module, "_reverse", layer.backward_layer, kind, units)
    tx = torch.from_numpy(x).requires_grad_()
    out = module(tx)[0]  # (n, steps, 2·units): forward, then the backward direction in time order
    (out * torch.from_numpy(dy)).sum().backward()
    np.testing.assert_allclose(y, out.detach().numpy(), rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-4, atol=2e-6)
    for copy, suffix in ((layer.forward_layer, ""), (layer.backward_layer, "_reverse")):
        kernel, recurrent, bias = _torch_grads(module, suffix, kind, units, kind == "gru")
        np.testing.assert_allclose(copy.kernel.grad, kernel, rtol=1e-4, atol=5e-6)
        np.testing.assert_allclose(copy.recurrent_kernel.grad, recurrent, rtol=1e-4, atol=5e-6)
        np.testing.assert_allclose(copy.bias.grad, bias, rtol=1e-4, atol=5e-6)
