"""How many threads one kernel call gets, and BLAS's thread count while a model runs.

The threading policy itself is described in nnctl/engine/settings.py.
"""

from __future__ import annotations

import functools

from nnctl.engine import denormals, settings

_applied: int | None = None
_controller = None  # threadpoolctl's view of the loaded BLAS libraries, found once (a few ms)


def parts(work: int) -> int:
    """Threads for a kernel call with `work` multiply-adds: 1 (run the single-threaded kernel) below
    PARALLEL_MIN_MACS, else up to the thread count, at least PARALLEL_MIN_MACS of work each."""
    if work < settings.PARALLEL_MIN_MACS:
        return 1
    count = min(settings.thread_count(), work // settings.PARALLEL_MIN_MACS)
    if count > 1:
        _apply(count)
    return max(1, count)


def _apply(count: int) -> None:
    """Make sure Numba's pool may run `count` threads (it is sized by NUMBA_NUM_THREADS at start-up)."""
    global _applied
    if _applied is None or _applied < count:
        import numba

        numba.set_num_threads(min(count, numba.config.NUMBA_NUM_THREADS))
        _applied = count


def blas_limits():
    """A context manager that runs BLAS on settings.BLAS_THREADS threads and gives the caller's own thread
    counts back on exit (a no-op with NNCTL_BLAS_THREADS=0)."""
    global _controller
    if settings.BLAS_THREADS <= 0:
        return _Nothing()
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller.limit(limits=settings.BLAS_THREADS, user_api="blas")


def blas_policy(method):
    """Decorates a model's fit/evaluate/predict with `blas_limits` and with denormals flushed to zero
    (nnctl/engine/denormals.py); nesting keeps the outermost caller's settings to restore."""
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with blas_limits(), denormals.flushed():
            return method(*args, **kwargs)
    return wrapper


class _Nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False
