"""Micro-benchmark: one conv layer's forward + backward, nnctl against torch.nn.functional.conv1d/conv2d (+ autograd),
on the shapes of the book's MNIST convnet and IMDB Conv1D model, alternating the two frameworks per repeat.

    python bench/conv_kernels.py [--threads 1|2] [--repeats 7] [--shapes mnist1,imdb1,...]

Reports ms per batch: the median and range over the repeats. Run it on a quiet machine; say how loaded it was.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

# key: (rank, batch, input shape, filters, kernel size, needs the input gradient)
SHAPES = {
    "mnist1": (2, 64, (28, 28, 1), 32, 3, False),
    "mnist2": (2, 64, (13, 13, 32), 64, 3, True),
    "mnist3": (2, 64, (5, 5, 64), 64, 3, True),
    "imdb1": (1, 128, (500, 128), 32, 7, True),
    "imdb2": (1, 128, (98, 32), 32, 7, True),
}


def nnctl_step(rank, batch, in_shape, filters, kernel, input_grad):
    from nnctl.engine.threads import blas_limits
    from nnctl.nn.layers.conv import Conv1D, Conv2D
    from nnctl.nn.model import Sequential

    layer = (Conv2D if rank == 2 else Conv1D)(filters, kernel, activation="relu")
    Sequential([layer], input_shape=in_shape, seed=0).build()
    layer.needs_input_grad = input_grad
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch,) + in_shape).astype(np.float32)
    dy = rng.standard_normal((batch,) + layer.output_shape).astype(np.float32)
    limits = blas_limits()

    def step():
        with limits:
            layer.forward(x, True)
            layer.backward(dy)
    return step


def torch_step(rank, batch, in_shape, filters, kernel, input_grad):
    import torch

    conv = torch.nn.functional.conv2d if rank == 2 else torch.nn.functional.conv1d
    rng = np.random.default_rng(0)
    x = torch.tensor(np.moveaxis(rng.standard_normal((batch,) + in_shape).astype(np.float32), -1, 1).copy(),
                     requires_grad=input_grad)
    w = torch.randn((filters, in_shape[-1]) + (kernel,) * rank, requires_grad=True)
    b = torch.zeros(filters, requires_grad=True)
    out_shape = conv(x, w, b).shape
    dy = torch.randn(out_shape)

    def step():
        y = torch.relu(conv(x, w, b))
        y.backward(dy)
    return step


def timed(step, iterations):
    """(wall ms, process CPU ms) per call: CPU time near wall × threads means the threads had their cores."""
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(iterations):
        step()
    return ((time.perf_counter() - start) / iterations * 1e3, (time.process_time() - cpu) / iterations * 1e3)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--shapes", default=",".join(SHAPES))
    args = parser.parse_args(argv)
    os.environ["NNCTL_THREADS"] = str(args.threads)
    try:
        import torch
        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None
        print("torch is not installed: nnctl only", file=sys.stderr)
    print(f"threads={args.threads} repeats={args.repeats}  ms per forward+backward: wall median [min-max] "
          f"(process CPU ms, median)")
    for key in args.shapes.split(","):
        spec = SHAPES[key]
        steps = {"nnctl": nnctl_step(*spec)}
        if torch is not None:
            steps["torch"] = torch_step(*spec)
        for step in steps.values():  # warm-up: JIT compilation, allocator
            step(), step()
        iterations = max(1, int(0.3 / max(1e-4, timed(steps["nnctl"], 1)[0] / 1e3)))
        samples = {name: [] for name in steps}
        cpu = {name: [] for name in steps}
        for _ in range(args.repeats):
            for name, step in steps.items():
                wall, used = timed(step, iterations)
                samples[name].append(wall)
                cpu[name].append(used)
        line = [f"{key:7s}"]
        for name, values in samples.items():
            line.append(f"{name} {statistics.median(values):8.2f} [{min(values):.2f}-{max(values):.2f}] "
                        f"(cpu {statistics.median(cpu[name]):.2f})")
        if torch is not None:
            line.append(f"torch/nnctl {statistics.median(samples['torch']) / statistics.median(samples['nnctl']):.2f}")
        print("  ".join(line), flush=True)


if __name__ == "__main__":
    main()
