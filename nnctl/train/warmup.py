"""The "compiling kernels" step: run one throwaway step so JIT compilation stays out of epoch timings.

It trains a copy of the model, so the real model's weights, optimizer state and generator are untouched.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np

from nnctl.engine.csr import CSRMatrix


@dataclass
class WarmUp:
    seconds: float
    compiled: int  # kernels compiled now (cache misses); 0 means everything came from the disk cache

    def describe(self) -> str:
        if self.compiled:
            return f"compiling kernels … {self.seconds:.1f} s (cached for next time)"
        return f"loading compiled kernels … {self.seconds:.2f} s (from the cache)"


def _dispatchers():
    from nnctl.engine import cpu
    from nnctl.nn import fastpath

    found = [kernel for kernel in (getattr(cpu, name) for name in cpu.KERNELS) if hasattr(kernel, "stats")]
    return found + list(cpu.CODED_KERNELS) + fastpath.loaded_dispatchers()


def _misses() -> int:
    return sum(sum(d.stats.cache_misses.values()) for d in _dispatchers())


def _head(x, count: int):
    rows = np.arange(count)
    return x.take(rows) if isinstance(x, CSRMatrix) else x[:count]


def warm_up(model, x, y, batch_size: int, validation: bool) -> WarmUp:
    """Compiles (or loads) every kernel one epoch of `model` on this data will call."""
    start, misses = time.perf_counter(), _misses()
    count = min(len(y), 2 * batch_size)
    copied = copy.deepcopy(model, {id(model.backend): model.backend})
    xs, ys = _head(x, count), y[:count]
    copied.fit(xs, ys, epochs=1, batch_size=batch_size, validation_data=(xs, ys) if validation else None)
    copied.predict(xs, batch_size=batch_size)
    return WarmUp(time.perf_counter() - start, _misses() - misses)
