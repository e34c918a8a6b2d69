"""Is a row-sparse optimizer step worth it for an Embedding table? A measured prototype (issue #16), not wired in.

    python bench/embedding_optimizer.py [--rounds 7]

For SGD and RMSprop without momentum (and no weight decay or clipping), a row no id of the batch touched has
g = 0, so the dense update leaves its weights exactly as they were and only multiplies its RMSprop slot by
rho: fl(rho·v + (1−rho)·0·0) = fl(rho·v). `rmsprop_plain_rows` below updates the touched rows in full and only
decays the others, which is byte-identical to the dense kernel (checked here step by step) while skipping the
untouched rows' weight and gradient traffic and their sqrt and division. Timed against the dense kernel (and,
where the engine has it, the lazy by-rows kernel, which applies ρ^k at once: float32-close, not byte-equal) on
the book's two tables, from the state some training leaves, beside the rest of that model's step.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
from numba import njit

from nnctl.engine import threads
from nnctl.engine.settings import STRICT_KERNEL
from nnctl.nn.model import Sequential
from nnctl.nn.optimizers import Adam


@njit(**STRICT_KERNEL)
def rmsprop_plain_rows(lr, rho, epsilon, marks, p, g, v):
    """RMSprop (no momentum, not centered, no weight decay) of a (V, D) table: rows with marks[r] get the
    full update, the others only v[r, :] *= rho (what the dense update computes for g = 0)."""
    one_minus_rho = np.float32(1.0) - rho
    for r in range(p.shape[0]):
        if marks[r]:
            for j in range(p.shape[1]):
                v[r, j] = rho * v[r, j] + one_minus_rho * g[r, j] * g[r, j]
                p[r, j] = p[r, j] - lr * g[r, j] / math.sqrt(v[r, j] + epsilon)
        else:
            for j in range(p.shape[1]):
                v[r, j] = rho * v[r, j]


# The book's two models (configs/imdb_embedding.yaml, configs/imdb_conv1d.yaml), as layer specs.
BOOK_MODELS = {
    "imdb_embedding": ([{"type": "embedding", "input_dim": 10000, "output_dim": 8}, {"type": "flatten"},
                        {"type": "dense", "units": 1, "activation": "sigmoid"}], 20, 32),
    "imdb_conv1d": ([{"type": "embedding", "input_dim": 10000, "output_dim": 128},
                     {"type": "conv1d", "filters": 32, "kernel_size": 7, "activation": "relu"},
                     {"type": "max_pooling1d", "pool_size": 5},
                     {"type": "conv1d", "filters": 32, "kernel_size": 7, "activation": "relu"},
                     {"type": "global_max_pooling1d"}, {"type": "dense", "units": 1, "activation": "sigmoid"}],
                    500, 128),
}


def trained_model(key, samples, epochs, rng):
    """A book model after `epochs` of RMSprop on Zipf-distributed ids (text-like: a few ids common, most rare)."""
    layers, steps, batch = BOOK_MODELS[key]
    model = Sequential([dict(spec) for spec in layers], input_shape=(steps,), seed=0)
    model.compile("rmsprop", "binary_crossentropy")
    x = np.minimum(rng.zipf(1.3, (samples, steps)), 9999)
    model.fit(x, rng.integers(0, 2, len(x)), epochs=epochs, batch_size=batch)
    return model, x, batch


def _median_us(function, rounds, calls, restore=lambda: None):
    """Median [min, max] µs per call over `rounds` of `calls` calls, each round from the restored state (every
    RMSprop call decays the slots further, so a long timing loop would drift into subnormals on its own)."""
    times = []
    for _ in range(rounds):
        restore()
        start = time.perf_counter()
        for _ in range(calls):
            function()
        times.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(times), min(times), max(times)


def measure(key, samples, epochs, rng, rounds):
    """Checks the prototype's bytes against the dense kernel on one book model's table, then times them."""
    model, x, batch = trained_model(key, samples, epochs, rng)
    layer, optimizer, store = model.layers[0], model.optimizer, model.store
    table = store.slice_of(layer.embeddings)
    model._gradients(model._dataset(x[:batch], np.zeros(batch)), np.arange(batch))
    v = optimizer.slots[0][table]
    subnormal = float(((v != 0) & (v < np.finfo(np.float32).tiny)).mean())
    hp = optimizer.hyperparameters()
    lr, rho, eps = np.float32(hp[0]), np.float32(hp[2]), np.float32(hp[4])
    shape = layer.embeddings.shape
    # Byte identity over 30 steps (the same gradient each step: enough to exercise both branches).
    dense_p, dense_v = store.values[table].copy(), v.copy()
    rows_p, rows_v = dense_p.reshape(shape).copy(), dense_v.reshape(shape).copy()
    g = store.grads[table]
    one = np.array([0, g.size], np.int64)
    kernel = model.backend.optimizer_step
    for _ in range(30):
        kernel(optimizer.code, hp, 0, one, dense_p, g, dense_v, dense_v[:1].copy(), dense_v[:1].copy(), 0, 0.0)
        rmsprop_plain_rows(lr, rho, eps, layer._marks, rows_p, g.reshape(shape), rows_v)
    same = dense_p.tobytes() == rows_p.tobytes() and dense_v.tobytes() == rows_v.tobytes()
    # Timing from the trained state, restored before each round.
    p0, v0 = store.values[table].copy(), v.copy()
    p1, v1, s2, s3 = p0.copy(), v0.copy(), v0[:1].copy(), v0[:1].copy()
    p2, v2, g2 = p0.copy().reshape(shape), v0.copy().reshape(shape), g.reshape(shape)
    p3, v3, last, clock = p2.copy(), v2.copy(), np.zeros(shape[0], np.int64), [1]
    rows_used = layer._touched[:layer._touched_count].copy()

    def restore():
        p1[...], v1[...], p2.reshape(-1)[...], v2.reshape(-1)[...] = p0, v0, p0, v0
        p3.reshape(-1)[...], v3.reshape(-1)[...], last[:], clock[0] = p0, v0, 0, 1

    def lazy():  # the lazy form nnctl's optimizer uses (ρ^k when a row is next used), where it exists
        model.backend.rmsprop_rows_step(hp, clock[0], rows_used, last, p3, g2, v3)
        clock[0] += 1

    calls = 50 if shape[1] == 8 else 5
    dense = _median_us(lambda: kernel(optimizer.code, hp, 0, one, p1, g, v1, s2, s3, 0, 0.0), rounds, calls,
                       restore)
    rows = _median_us(lambda: rmsprop_plain_rows(lr, rho, eps, layer._marks, p2, g2, v2), rounds, calls,
                      restore)
    adam = Adam()
    adam.build(g.size)
    adam_hp = adam.hyperparameters()
    dense_adam = _median_us(lambda: kernel(adam.code, adam_hp, 3, one, p1, g, *adam.slots, 0, 0.0), rounds,
                            calls, restore)
    timings = [("dense RMSprop on the table", dense), ("dense Adam on the table", dense_adam),
               ("exact row-sparse prototype", rows)]
    if hasattr(model.backend, "rmsprop_rows_step"):
        timings.append(("lazy rows (ρ^k, float32-close)", _median_us(lazy, rounds, calls, restore)))
    step = _median_us(lambda: model._gradients(model._dataset(x[:batch], np.zeros(batch)), np.arange(batch)),
                      rounds, max(1, calls // 10))
    print(f"{key}: Embedding{shape}, batch {x[:batch].shape}: {layer._touched_count} rows touched; "
          f"{subnormal:.3%} of the table's RMSprop slot subnormal; row-sparse bytes identical: {same}")
    for name, (median, low, high) in timings + [("forward+backward of the model", step)]:
        print(f"  {name:31s} {median:9.1f} µs [{low:.1f}–{high:.1f}]")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    # imdb_embedding's table after 3 epochs of 625 steps (subnormal slots appear after ~700 idle steps);
    # imdb_conv1d's after 10 steps (its own epochs take minutes here).
    for key, samples, epochs in (("imdb_embedding", 20000, 3), ("imdb_conv1d", 1280, 1)):
        # BLAS on one thread, as inside fit: outside it, two BLAS threads made the conv step 10-19× slower here.
        with threads.blas_limits():
            measure(key, samples, epochs, rng, args.rounds)

if __name__ == "__main__":
    main()
