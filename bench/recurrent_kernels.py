"""Micro-benchmark: the recurrent time loops (nnctl/engine/cpu/recurrent.py) against torch.nn.RNN / LSTM / GRU,
one thread each, on the book's shapes (n=128 sequences of t=500 steps, u=32 units, 32 input features).

    python bench/recurrent_kernels.py [--repeats 7] [--batch 128] [--steps 500] [--units 32] [--cells lstm,gru]

Columns, ms per batch (median [min-max] over the repeats, the frameworks alternating in each repeat):
  fwd, bwd:   nnctl's forward kernel (the input projection x_s·W + b runs inside its time loop); its backward
              kernel plus what the layer adds to it for the recurrent weights (recurrent_inputs and the dU
              GEMM, the GRU's recurrent-bias sum);
  +proj:      fwd + bwd plus the input side's backward GEMMs (dW = xᵀ·dpre, db, dx = dpre·Wᵀ): the whole
              layer's arithmetic, comparable with torch's;
  torch:      torch's module forward + backward (input projection included; inputs, weights and h0 require
              grad; no mask, no dropout, CPU, float32).
Run it on a quiet machine and say how loaded it was: these machines share their cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy loads OpenBLAS: its idle threads spin

import numpy as np  # noqa: E402

GATES = {"simple_rnn": 1, "lstm": 4, "gru": 3}
TANH, SIGMOID = 3, 2


def nnctl_steps(cell, n, t, u, features):
    """(forward, backward, whole layer) callables over fixed random data."""
    from nnctl.engine.cpu import recurrent

    g = GATES[cell]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, t, features)).astype(np.float32)
    W = (rng.standard_normal((features, g * u)) / np.sqrt(features)).astype(np.float32)
    b = np.zeros(g * u, np.float32)
    U = (rng.standard_normal((u, g * u)) / np.sqrt(u)).astype(np.float32)
    UT = np.ascontiguousarray(U.T)
    rbias = np.zeros(g * u, np.float32)
    h0 = np.zeros((n, u), np.float32)
    mask, rmask = np.ones((n, t), np.uint8), np.zeros((0, g * u), np.float32)
    gates = np.empty((n, t, g * u), np.float32)  # the gates, then dpre (LSTM, GRU)
    hs, cs, hu = (np.empty((n, t, u), np.float32) for _ in range(3))
    dpre = np.empty((n, t, g * u), np.float32) if cell == "simple_rnn" else gates
    drec = np.empty((n, t, u), np.float32)
    dhs = rng.standard_normal((n, t, u)).astype(np.float32)
    dh0, dc0, dc_last = np.empty_like(h0), np.empty_like(h0), np.zeros_like(h0)
    inputs = np.empty((n, t, u), np.float32)
    dU, dW, dx = np.empty_like(U), np.empty_like(W), np.empty_like(x)

    head = (x[None], W, b, U)

    def forward():
        if cell == "simple_rnn":
            recurrent.simple_rnn_forward(*head, h0, mask, rmask, TANH, 0, n, hs)
        elif cell == "lstm":
            recurrent.lstm_forward(*head, h0, h0, mask, rmask, TANH, SIGMOID, 0, n, gates, hs, cs)
        else:
            recurrent.gru_forward(*head, rbias, h0, mask, rmask, TANH, SIGMOID, 0, n, gates, hs, hu)

    def backward():
        if cell == "simple_rnn":
            recurrent.simple_rnn_backward(dhs, hs, UT, mask, rmask, TANH, 0, n, dpre, dh0)
        elif cell == "lstm":
            recurrent.lstm_backward(dhs, dc_last, cs, h0, UT, mask, rmask, TANH, SIGMOID, 0, n, gates, dh0, dc0)
        else:
            recurrent.gru_backward(dhs, hs, hu, h0, UT, mask, rmask, TANH, SIGMOID, 0, n, gates, drec, dh0)
        recurrent.recurrent_inputs(hs, h0, rmask, 0, n, inputs)
        inputs_t, d = inputs.reshape(n * t, u).T, dpre.reshape(n * t, g * u)
        if cell == "gru":  # z and r from dpre, h̃ from drec; and the recurrent bias's gradient
            np.matmul(inputs_t, d[:, :2 * u], out=dU[:, :2 * u])
            np.matmul(inputs_t, drec.reshape(n * t, u), out=dU[:, 2 * u:])
            d[:, :2 * u].sum(axis=0), drec.reshape(n * t, u).sum(axis=0)
        else:
            np.matmul(inputs_t, d, out=dU)

    def layer():
        forward()
        backward()
        flat = dpre.reshape(n * t, g * u)
        np.matmul(x.reshape(n * t, features).T, flat, out=dW)
        flat.sum(axis=0)
        np.matmul(flat, W.T, out=dx.reshape(n * t, features))

    return forward, backward, layer


def torch_step(cell, n, t, u, features):
    import torch

    module = {"simple_rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](
        features, u, batch_first=True)
    x = torch.randn(n, t, features, requires_grad=True)
    h0 = torch.zeros(1, n, u, requires_grad=True)
    state = (h0, torch.zeros(1, n, u, requires_grad=True)) if cell == "lstm" else h0
    dout = torch.randn(n, t, u)

    def step():
        out, _ = module(x, state)
        out.backward(dout)
    return step


def timed(step):
    start = time.perf_counter()
    step()
    return (time.perf_counter() - start) * 1e3


def summary(values):
    return f"{statistics.median(values):8.2f} [{min(values):.2f}-{max(values):.2f}]"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--units", type=int, default=32)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--cells", default=",".join(GATES))
    args = parser.parse_args(argv)
    from threadpoolctl import threadpool_limits
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        torch = None
        print("torch is not installed: nnctl only", file=sys.stderr)
    shape = (args.batch, args.steps, args.units, args.features)
    print(f"n={args.batch} t={args.steps} u={args.units} features={args.features}, 1 thread, "
          f"{args.repeats} repeats: ms per batch, median [min-max]")
    print(f"{'cell':10s} {'nnctl fwd':>22s} {'nnctl bwd':>22s} {'nnctl fwd+bwd':>22s} {'nnctl +proj':>22s} "
          f"{'torch fwd+bwd':>24s} {'torch/nnctl+proj':>17s}")
    with threadpool_limits(limits=1):
        for cell in args.cells.split(","):
            forward, backward, layer = nnctl_steps(cell, *shape)
            steps = {"fwd": forward, "bwd": backward, "layer": layer}
            if torch is not None:
                steps["torch"] = torch_step(cell, *shape)
            for step in steps.values():  # warm-up: JIT compilation or cache loading, allocators
                step()
            samples = {name: [] for name in steps}
            for _ in range(args.repeats):
                for name, step in steps.items():
                    samples[name].append(timed(step))
            both = [f + b for f, b in zip(samples["fwd"], samples["bwd"])]
            line = f"{cell:10s} {summary(samples['fwd']):>22s} {summary(samples['bwd']):>22s} " \
                   f"{summary(both):>22s} {summary(samples['layer']):>22s}"
            if torch is not None:
                ratio = statistics.median(samples["torch"]) / statistics.median(samples["layer"])
                line += f" {summary(samples['torch']):>24s} {ratio:16.1f}x"
            print(line, flush=True)


if __name__ == "__main__":
    main()
