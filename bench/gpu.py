"""nnctl `device="cuda"` against PyTorch CUDA eager on the book's MLPs (issue #20): same models, data shapes,
init and batch sizes as engine_bench.py's W2 (MNIST 784-512-10, RMSprop, batch 128) and W3 (Boston 13-64-64-1,
MSE, batch 16), epochs alternated nnctl, torch, nnctl, … in one process after one warm-up epoch each, steady
epoch medians with ranges. Synthetic data (the Keras files do not travel to a device machine).

    python bench/gpu.py [--epochs 5] [--workloads w2,w3b16] [--json OUT.json]

Needs a CUDA GPU, nnctl's `cuda` extra and torch with CUDA; prints the table and writes it as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

WORKLOADS = {  # key: (rows, features, hidden layers, outputs, batch, loss)
    "w2": (60_000, 784, (512,), 10, 128, "sparse_categorical_crossentropy"),
    "w3b16": (404, 13, (64, 64), 1, 16, "mse"),
}


def _data(key):
    rows, features, _, outputs, _, _ = WORKLOADS[key]
    rng = np.random.default_rng(0)
    x = rng.random((rows, features), dtype=np.float32)
    y = rng.integers(0, outputs, rows) if outputs > 1 else rng.standard_normal((rows, 1)).astype(np.float32)
    return x, y


def _nnctl(key, x, y):
    from nnctl.nn.layers import Dense
    from nnctl.nn.model import Sequential

    _, features, hidden, outputs, batch, loss = WORKLOADS[key]
    layers = [Dense(units, activation="relu") for units in hidden]
    layers.append(Dense(outputs, activation="softmax" if outputs > 1 else None))
    model = Sequential(layers, input_shape=(features,), seed=0, device="cuda")
    model.compile(optimizer={"type": "rmsprop", "learning_rate": 0.001}, loss=loss)
    return model, lambda: model.fit(x, y, epochs=1, batch_size=batch, shuffle=True)


def _torch(key, x, y, weights):
    import torch

    _, features, hidden, outputs, batch, loss = WORKLOADS[key]
    device = torch.device("cuda")
    sizes = [features, *hidden, outputs]
    modules = []
    for i in range(len(sizes) - 1):
        linear = torch.nn.Linear(sizes[i], sizes[i + 1])
        with torch.no_grad():  # nnctl's Glorot-initialized weights, transposed to torch's (out, in)
            linear.weight.copy_(torch.from_numpy(weights[f"dense{'_' + str(i) if i else ''}/kernel"].T.copy()))
            linear.bias.zero_()
        modules += [linear, torch.nn.ReLU()] if i < len(sizes) - 2 else [linear]
    net = torch.nn.Sequential(*modules).to(device)
    optimizer = torch.optim.RMSprop(net.parameters(), lr=0.001, alpha=0.9, eps=1e-7)
    criterion = torch.nn.CrossEntropyLoss() if outputs > 1 else torch.nn.MSELoss()
    xs = torch.from_numpy(x).to(device)
    ys = torch.from_numpy(y if outputs == 1 else y.astype(np.int64)).to(device)

    def epoch():
        order = torch.randperm(xs.shape[0], device=device)
        total = torch.zeros((), device=device)
        for start in range(0, xs.shape[0], batch):
            rows = order[start:start + batch]
            optimizer.zero_grad(set_to_none=True)
            value = criterion(net(xs[rows]), ys[rows])
            value.backward()
            optimizer.step()
            total += value.detach()
        return float(total)  # one synchronization an epoch, as nnctl's

    return epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--json")
    args = parser.parse_args()
    results = {}
    for key in args.workloads.split(","):
        x, y = _data(key)
        model, ours = _nnctl(key, x, y)
        theirs = _torch(key, x, y, model.get_weights())
        times = {"nnctl": [], "torch": []}
        for epoch in range(args.epochs + 1):
            for name, run in (("nnctl", ours), ("torch", theirs)):
                began = time.perf_counter()
                run()
                if epoch:  # the first epoch compiles (nnctl's kernels, torch's cuBLAS plans): left out
                    times[name].append(1000 * (time.perf_counter() - began))
        results[key] = {name: {"median_ms": statistics.median(values), "min_ms": min(values),
                               "max_ms": max(values)} for name, values in times.items()}
        row = results[key]
        print(f"{key}: nnctl {row['nnctl']['median_ms']:.1f} ms [{row['nnctl']['min_ms']:.1f}–"
              f"{row['nnctl']['max_ms']:.1f}], torch {row['torch']['median_ms']:.1f} ms "
              f"[{row['torch']['min_ms']:.1f}–{row['torch']['max_ms']:.1f}], torch/nnctl "
              f"{row['torch']['median_ms'] / row['nnctl']['median_ms']:.2f}×", flush=True)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2)


if __name__ == "__main__":
    main()
