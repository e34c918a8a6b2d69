"""Runs the fixed chunks of one kernel call on the caller's thread and a small pool of helper threads.

The caller cuts its work into chunks chosen from the batch size and the shape only, never from the thread
count; each chunk writes only its own rows, and any reduction over chunks is added afterwards in chunk order,
so the bytes are the same on 1 or 2 threads and under any load. There is no barrier but the end of the call:
each thread takes the next chunk nobody has taken yet, so a thread on a busy core just takes fewer
(a per-chunk hand-off would cost ~20 µs; MNIST's convnet runs ~60 chunks a step). The kernels the chunks call
are `nogil`, so the threads really run at once.
"""

from __future__ import annotations

import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from nnctl.engine import denormals, settings

_pool: ThreadPoolExecutor | None = None
_pool_key = (0, 0)  # (threads, pid): a forked child (a Dask or K-fold worker process) has none of them
_pool_lock = threading.Lock()


def even_chunks(count: int, parts: int) -> list[tuple[int, int]]:
    """(first, size) of about `parts` chunks of equal size covering range(count)."""
    size = max(1, -(-count // parts))
    return [(first, min(size, count - first)) for first in range(0, count, size)]


def run_chunks(run, chunks, parallel: bool = True) -> None:
    """Calls run(index, first, size) for every chunk: in order on this thread, or, when `parallel` and threads
    are allowed, here and on threads − 1 pool threads at once."""
    workers = min(settings.thread_count(), len(chunks)) if parallel else 1
    if workers == 1:
        for index, (first, size) in enumerate(chunks):
            run(index, first, size)
        return
    taken = itertools.count()  # next() on it is atomic under the GIL
    bits = denormals.flush_bits()  # the helpers compute under this thread's denormal mode

    def drain(helper=False):
        if helper:
            denormals.adopt(bits)
        for index in iter(taken.__next__, None):
            if index >= len(chunks):
                return
            run(index, *chunks[index])

    futures = [_executor(workers - 1).submit(drain, True) for _ in range(workers - 1)]
    try:
        drain()
    finally:
        for future in futures:
            future.result()  # waits for the helpers' chunks; re-raises their exception here


def run_chunk_groups(groups, parallel: bool = True) -> None:
    """run_chunks over several (run, chunks) pairs as one list of chunks, so that the threads move on to the next
    call's chunks instead of waiting at the end of each (Bidirectional's two directions). Each run still gets
    its own chunk indexes, 0, 1, …."""
    table = [(run, index) for run, chunks in groups for index in range(len(chunks))]
    flat = [chunk for _, chunks in groups for chunk in chunks]
    run_chunks(lambda k, first, size: table[k][0](table[k][1], first, size), flat, parallel)


def _executor(workers: int) -> ThreadPoolExecutor:
    """The process's helper threads (the caller is the other one), created on first use, again when the thread
    count changes, and in a forked child, where the parent's pool threads do not exist (its tasks would wait
    forever)."""
    global _pool, _pool_key
    key = (workers, os.getpid())
    with _pool_lock:
        if _pool is None or _pool_key != key:
            if _pool is not None and _pool_key[1] == key[1]:
                _pool.shutdown(wait=True)
            _pool, _pool_key = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nnctl-chunk"), key
        return _pool
