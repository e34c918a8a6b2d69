"""Embedding alone: one training step's forward + backward, nnctl's layer against torch.nn.Embedding, then
the same with an RMSprop update of the table (issue #16).

    python bench/embedding_step.py [--rounds 7] [--torch-threads 1]

The steps cycle through 16 batches of Zipf-distributed ids (text-like: a few ids frequent, most rare). Each
round times about 0.3 s of steps of each contender in turn (A B A B …); medians and ranges over the rounds.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from nnctl.nn.layers.embedding import Embedding
from nnctl.nn.model import Sequential

CASES = [((10000, 8), (32, 20)), ((10000, 128), (128, 500))]


def _per_step(step, seconds=0.3) -> float:
    """Seconds per call of `step`, over about `seconds` of calls (after one warm-up call)."""
    step()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        calls += 1
    return (time.perf_counter() - start) / calls


def _batches(vocab, width, batch, steps):
    rng = np.random.default_rng(0)
    ids = [np.minimum(rng.zipf(1.3, (batch, steps)), vocab - 1).astype(np.int32) for _ in range(16)]
    return ids, rng.standard_normal((batch, steps, width)).astype(np.float32)


def nnctl_step(vocab, width, batch, steps):
    layer = Embedding(vocab, width)
    model = Sequential([layer], input_shape=(steps,), seed=0)
    model.compile("rmsprop", "mse")
    ids, dy = _batches(vocab, width, batch, steps)
    turn = [0]

    def step():
        turn[0] += 1
        layer.forward(ids[turn[0] % 16], True)
        layer.backward(dy)

    def step_and_update():
        step()
        model.optimizer.apply(model.backend, model.store)
    return step, step_and_update


def torch_step(vocab, width, batch, steps):
    import torch

    embedding = torch.nn.Embedding(vocab, width)
    ids, dy = _batches(vocab, width, batch, steps)
    ids, dy = [torch.tensor(i.astype(np.int64)) for i in ids], torch.tensor(dy)
    rmsprop = torch.optim.RMSprop(embedding.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
    turn = [0]

    def step():
        turn[0] += 1
        embedding.weight.grad = None  # as optimizer.zero_grad(): a fresh dense gradient each step
        embedding(ids[turn[0] % 16]).backward(dy)

    def step_and_update():
        step()
        rmsprop.step()
    return step, step_and_update


def _summary(values) -> str:
    values = [v * 1e6 for v in values]
    return f"{statistics.median(values):8.1f} µs [{min(values):.1f}–{max(values):.1f}]"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--torch-threads", type=int, default=0, help="0: torch's default")
    args = parser.parse_args()
    import torch

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    print(f"torch {torch.__version__} on {torch.get_num_threads()} threads; "
          f"medians [min–max] of {args.rounds} rounds")
    for (vocab, width), (batch, steps) in CASES:
        ours, theirs = nnctl_step(vocab, width, batch, steps), torch_step(vocab, width, batch, steps)
        times = {key: [] for key in ("nnctl step", "torch step", "nnctl step + rmsprop", "torch step + rmsprop")}
        for _ in range(args.rounds):
            times["nnctl step"].append(_per_step(ours[0]))
            times["torch step"].append(_per_step(theirs[0]))
            times["nnctl step + rmsprop"].append(_per_step(ours[1]))
            times["torch step + rmsprop"].append(_per_step(theirs[1]))
        print(f"Embedding({vocab}, {width}) on ({batch}, {steps}):")
        for key, values in times.items():
            print(f"  {key:21s} {_summary(values)}")
        for what in ("step", "step + rmsprop"):
            ratio = statistics.median(times[f"torch {what}"]) / statistics.median(times[f"nnctl {what}"])
            print(f"  torch/nnctl, {what}: {ratio:.1f}×")


if __name__ == "__main__":
    main()
