"""nnctl `device="cuda"` against PyTorch CUDA eager on issue #20's four workloads: the MNIST MLP (784-512-10,
RMSprop, batch 128) and the Boston MLP (13-64-64-1, MSE, batch 16) as engine_bench.py's W2 and W3, and the layers
of configs/mnist_convnet.yaml (batch 64) and configs/imdb_lstm.yaml (batch 128, 20,000 training rows as its 0.2
validation split leaves), their PyTorch twins built by torch_layers.py from the same layer lists (Keras's
initializers, Keras's RMSprop); and, with no target, `tape`: the MNIST MLP written as the book's custom
SimpleDense layers (`build` + `call` on nnctl.ops, run on GPU arrays) against the same PyTorch twin — what a
custom layer's Python-launched ops cost. After a warm-up epoch on each side, rounds alternate in one process: EPOCHS
nnctl epochs inside one `fit` (as `nnctl train` runs them; each is history's `epoch_time`, and the fit's set-up,
paid once a run, is printed apart), then EPOCHS torch epochs; steady epoch medians with ranges. Synthetic data
of the real shapes (the Keras files do not travel to a device machine); the figures are speed, not accuracy.

    python bench/gpu.py [--epochs 2] [--rounds 2] [--workloads mlp,boston,convnet,lstm,tape] [--json OUT.json]
    python bench/gpu.py --device cpu --rows 256 --epochs 1   # a dry run of the script's plumbing, no GPU

Needs a CUDA GPU, nnctl's `cuda` extra and torch with CUDA; prints the table and writes it as JSON.
Targets (#20): mlp, boston and lstm at least as fast as PyTorch (torch/nnctl ≥ 1), convnet within 1.5× (≥ 0.67).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # torch_layers.py beside this file
HERE = os.path.dirname(os.path.abspath(__file__))
MLP = [{"type": "dense", "units": 512, "activation": "relu"}, {"type": "dense", "units": 10, "activation": "softmax"}]
BOSTON = [{"type": "dense", "units": 64, "activation": "relu"}, {"type": "dense", "units": 64, "activation": "relu"},
          {"type": "dense", "units": 1}]
WORKLOADS = {  # key: (layers or the config giving them, input shape, rows, loss, batch, target floor)
    "mlp": (MLP, (784,), 60_000, "sparse_categorical_crossentropy", 128, 1.0),
    "boston": (BOSTON, (13,), 404, "mse", 16, 1.0),
    "convnet": ("mnist_convnet.yaml", (28, 28, 1), 60_000, "categorical_crossentropy", 64, 1 / 1.5),
    "lstm": ("imdb_lstm.yaml", (500,), 20_000, "binary_crossentropy", 128, 1.0),
    "tape": (MLP, (784,), 60_000, "sparse_categorical_crossentropy", 128, None),
}


def layer_specs(key) -> list[dict]:
    import yaml

    layers = WORKLOADS[key][0]
    if isinstance(layers, list):
        return layers
    with open(os.path.join(HERE, "..", "configs", layers), encoding="utf-8") as handle:
        return yaml.safe_load(handle)["model"]["layers"]


def synthetic(key, rows=None):
    """x and y of the workload's shapes: pixels in [0, 1), token ids below the embedding's input_dim, targets
    as the loss reads them."""
    _, shape, all_rows, loss, _, _ = WORKLOADS[key]
    rows = min(rows or all_rows, all_rows)
    rng = np.random.default_rng(0)
    if key == "lstm":
        x = rng.integers(1, 10_000, (rows, *shape), dtype=np.int32)
    else:
        x = rng.random((rows, *shape), dtype=np.float32)
    if loss == "mse":
        y = rng.standard_normal((rows, 1)).astype(np.float32)
    elif loss == "binary_crossentropy":
        y = rng.integers(0, 2, (rows, 1)).astype(np.float32)
    else:
        y = rng.integers(0, 10, rows)
        y = np.eye(10, dtype=np.float32)[y] if loss == "categorical_crossentropy" else y
    return x, y


def nnctl_fit(key, x, y, where="cuda"):
    """fit(epochs) → (each epoch's seconds, the fit's set-up seconds): epochs inside one `fit`, as `nnctl train`
    runs them; an epoch is history's `epoch_time` (shuffle, steps, the epoch's metrics), the set-up is the rest
    of the call (moving the weights and data in and out), paid once a run."""
    from nnctl.nn.layers import LAYERS
    from nnctl.nn.model import Sequential

    SimpleDense = _simple_dense()
    _, shape, _, loss, batch, _ = WORKLOADS[key]
    layers = [LAYERS.get(dict(spec)) for spec in layer_specs(key)] if key != "tape" else [
        SimpleDense(spec["units"], spec["activation"]) for spec in layer_specs(key)]
    model = Sequential(layers, input_shape=shape, seed=0, device=where)
    model.compile(optimizer={"type": "rmsprop", "learning_rate": 0.001}, loss=loss)

    def fit(epochs):
        began = time.perf_counter()
        seconds = model.fit(x, y, epochs=epochs, batch_size=batch, shuffle=True).history["epoch_time"]
        return seconds, time.perf_counter() - began - sum(seconds)

    fit.model = model
    return fit


def path_form(fit) -> str:
    """How the GPU ran the workload's steps: one launch an epoch (one block, or a cooperative grid of N blocks),
    replayed as a CUDA graph (a step recorded once), or launch by launch; empty on the CPU."""
    from nnctl.nn import cudagraph

    paths = getattr(fit.model, "_cuda_paths", None)
    if not paths:
        return ""
    path = next(iter(paths.values()))
    if path.whole is not None:
        return ", one launch an epoch: " + (f"a grid of {path.whole.blocks} blocks" if path.whole.blocks else
                                             "one block")
    if path.replayed is not None and not cudagraph._FAILED[0]:
        return ", a step replayed as a CUDA graph"
    failed = cudagraph._FAILED[0]
    return ", launch by launch" + (f" (recording a graph failed: {failed})" if failed else "")


def _simple_dense():
    """The book's SimpleDense (Deep Learning with Python, 3.6.1) on nnctl.ops: a custom layer the tape runs."""
    from nnctl import ops
    from nnctl.nn.layers import Layer

    class SimpleDense(Layer):
        def __init__(self, units, activation=None, **kwargs):
            super().__init__(**kwargs)
            self.units, self.activation = units, getattr(ops, activation) if activation else None

        def build(self, input_shape):
            self.W = self.add_weight(shape=(input_shape[-1], self.units), initializer="glorot_uniform")
            self.b = self.add_weight(shape=(self.units,), initializer="zeros")

        def call(self, inputs):
            y = ops.matmul(inputs, self.W) + self.b
            return self.activation(y) if self.activation is not None else y

    return SimpleDense


def torch_epoch(key, x, y, where="cuda"):
    import torch

    from torch_layers import KerasRMSprop, build_model, channels_first

    _, shape, _, loss, batch, _ = WORKLOADS[key]
    device = torch.device(where)
    torch.manual_seed(0)
    net, criterion = build_model(layer_specs(key), shape, loss)
    net, criterion = net.to(device), criterion.to(device)
    optimizer = KerasRMSprop(net.parameters(), lr=0.001, rho=0.9, epsilon=1e-7)
    xs = torch.from_numpy(channels_first(x) if x.dtype == np.float32 else x.astype(np.int64)).to(device)
    ys = torch.from_numpy(y).to(device)

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


def op_times(fit) -> None:
    """One epoch with every device op's forward and backward, each output's loss step and the whole step (or a
    small Dense model's one-launch steps) timed between two synchronizations (so each figure holds its launches and
    its GPU time); prints the table. The steps run launch by launch (a synchronization cannot be recorded into a
    CUDA graph)."""
    import importlib

    from numba import cuda

    from nnctl.nn import cudagraph

    for name in ("cudaops", "cudaops_dropout", "cudaops_embedding", "cudaops_masks", "cudaops_merge",
                 "cudaops_nested", "cudaops_recurrent", "cudaops_tape", "cudaops_host"):
        importlib.import_module(f"nnctl.nn.{name}")
    from nnctl.nn.cudafused import WholeSteps
    from nnctl.nn.cudaheads import DeviceHead
    from nnctl.nn.cudaops import Op
    from nnctl.nn.cudapath import CudaPath

    totals: dict = {}

    def timed(label, method):
        def run(*args, **kwargs):
            cuda.synchronize()
            began = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                cuda.synchronize()
                seconds, calls = totals.get(label, (0.0, 0))
                totals[label] = (seconds + time.perf_counter() - began, calls + 1)
        return run

    targets, classes = [(CudaPath, "_step"), (DeviceHead, "loss_step"), (WholeSteps, "train")], [Op]
    while classes:
        cls = classes.pop()
        classes += cls.__subclasses__()
        targets += [(cls, name) for name in ("forward", "backward") if name in vars(cls)]
    originals = [(cls, name, vars(cls)[name]) for cls, name in targets]
    for cls, name, method in originals:
        setattr(cls, name, timed(f"{cls.__name__}.{name}", method))
    recorder, cudagraph.recorder = cudagraph.recorder, lambda: None
    try:
        seconds, _ = fit(1)
    finally:
        cudagraph.recorder = recorder
        for cls, name, method in originals:
            setattr(cls, name, method)
    print(f"op times over one epoch of {1000 * seconds[0]:.0f} ms (synchronized around each):")
    for label, (total, calls) in sorted(totals.items(), key=lambda item: -item[1][0]):
        print(f"  {label:32s} {1000 * total:9.1f} ms  {calls:6d} calls  {1e6 * total / calls:8.1f} µs each")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2, help="epochs a round on each side (default 2)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of nnctl then torch (default 2)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--json")
    parser.add_argument("--rows", type=int, help="train on the first ROWS rows only (a dry run)")
    parser.add_argument("--device", default="cuda", help="both sides' device: cpu for a dry run without a GPU")
    parser.add_argument("--profile", action="store_true", help="then profile one nnctl epoch (cProfile, top 25)")
    parser.add_argument("--op-times", action="store_true",
                        help="then one nnctl epoch with a synchronize around each device op: where its time goes")
    args = parser.parse_args()
    results = {}
    for key in args.workloads.split(","):
        x, y = synthetic(key, args.rows)
        fit, torch_run = nnctl_fit(key, x, y, args.device), torch_epoch(key, x, y, args.device)
        fit(1)  # warm-up: nnctl's kernels compile (or load from the cache), torch plans its cuDNN/cuBLAS calls
        torch_run()
        times, setups = {"nnctl": [], "torch": []}, []
        for _ in range(args.rounds):
            seconds, setup = fit(args.epochs)
            times["nnctl"] += [1000 * s for s in seconds]
            setups.append(1000 * setup)
            for _ in range(args.epochs):
                began = time.perf_counter()
                torch_run()
                times["torch"].append(1000 * (time.perf_counter() - began))
        row = results[key] = {name: {"median_ms": statistics.median(values), "min_ms": min(values),
                                     "max_ms": max(values), "epochs": len(values)} for name, values in times.items()}
        row["nnctl"]["fit_setup_ms"] = statistics.median(setups)
        ratio = row["torch"]["median_ms"] / row["nnctl"]["median_ms"]
        floor = WORKLOADS[key][-1]
        met = None if args.device != "cuda" or floor is None or args.rows else ratio >= floor
        verdict = "no target" if floor is None else f"target ≥ {floor:.2f}: " + (
            "a dry run: not the target's figures" if met is None else "met" if met else "NOT met")
        row.update(ratio=ratio, target=floor, met=met, rows=len(x))
        row["nnctl"]["form"] = path_form(fit).lstrip(", ")
        print(f"{key} ({len(x)} rows): nnctl {row['nnctl']['median_ms']:.1f} ms [{row['nnctl']['min_ms']:.1f}–"
              f"{row['nnctl']['max_ms']:.1f}] (+ {row['nnctl']['fit_setup_ms']:.0f} ms a fit{path_form(fit)}), torch "
              f"{row['torch']['median_ms']:.1f} ms [{row['torch']['min_ms']:.1f}–{row['torch']['max_ms']:.1f}], "
              f"torch/nnctl {ratio:.2f}× ({verdict})", flush=True)
        if args.profile:
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            profiler.runcall(fit, 1)
            stats = pstats.Stats(profiler)
            stats.sort_stats("tottime").print_stats(20)
            stats.sort_stats("cumtime").print_stats("nnctl|numba|cuda", 25)
        if args.op_times:
            op_times(fit)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2)


if __name__ == "__main__":
    main()
