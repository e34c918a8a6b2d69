"""The engine against PyTorch on the same weights and batches: a sparse-input MLP with softmax + CCE and
Keras's RMSprop (sqrt(v + ε)). Skipped when torch (the `bench` extra) is not installed."""

import numpy as np
import pytest

from nnctl.engine.csr import CSRMatrix
from nnctl.nn.layers import Dense
from nnctl.nn.model import Sequential

torch = pytest.importorskip("torch")


def test_three_epochs_match_pytorch_step_for_step():
    rng = np.random.default_rng(0)
    x = CSRMatrix.from_sequences([rng.choice(500, size=rng.integers(5, 40), replace=False) for _ in range(300)], 500)
    y = rng.integers(0, 7, 300)
    model = Sequential([Dense(32, activation="relu"), Dense(16, activation="relu"), Dense(7, activation="softmax")],
                       input_shape=(500,), seed=0)
    model.compile("rmsprop", "sparse_categorical_crossentropy")
    start = model.get_weights()
    names = ["dense", "dense_1", "dense_2"]
    linears = [torch.nn.Linear(*start[f"{name}/kernel"].shape) for name in names]
    with torch.no_grad():
        for name, linear in zip(names, linears):
            linear.weight.copy_(torch.tensor(start[f"{name}/kernel"].T))
            linear.bias.copy_(torch.tensor(start[f"{name}/bias"]))
    net = torch.nn.Sequential(linears[0], torch.nn.ReLU(), linears[1], torch.nn.ReLU(), linears[2])
    params = list(net.parameters())
    velocity = [torch.zeros_like(p) for p in params]
    inputs, labels = torch.tensor(x.to_dense()), torch.tensor(y)
    for _ in range(3):
        for first in range(0, 300, 64):
            loss = torch.nn.functional.cross_entropy(net(inputs[first:first + 64]), labels[first:first + 64])
            for p in params:
                p.grad = None
            loss.backward()
            with torch.no_grad():
                for p, v in zip(params, velocity):
                    v.mul_(0.9).add_(0.1 * p.grad * p.grad)
                    p.sub_(1e-3 * p.grad / torch.sqrt(v + 1e-7))
    model.fit(x, y, epochs=3, batch_size=64, shuffle=False)
    trained = model.get_weights()
    for name, linear in zip(names, linears):
        np.testing.assert_allclose(trained[f"{name}/kernel"], linear.weight.detach().numpy().T, atol=2e-6)
        np.testing.assert_allclose(trained[f"{name}/bias"], linear.bias.detach().numpy(), atol=2e-6)
