"""How many threads one kernel call gets (the threading policy is in nnctl/engine/settings.py)."""

from __future__ import annotations

from nnctl.engine import settings

_applied: int | None = None


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
