"""A faster way for Numba's CUDA simulator to run a thread block, installed by this folder's conftest.

The simulator runs each GPU thread of a block as a new OS thread, and its block manager waits for them by polling
every thread in a loop that never sleeps: with the GIL, that loop takes the CPU from the threads it waits for
(4 million `is_alive` calls in a 10-second test), and starting a thread costs more than most kernels' work.
Here the threads are kept in a pool and reused across blocks and launches, and the manager sleeps on a condition
that the last thread to reach a barrier (or to finish) signals. What a kernel sees is unchanged: every thread of
a block runs as an OS thread of its own with its threadIdx, blockIdx and barrier (`syncthreads` and its
count/and/or forms, from the simulator's own thread class), blocks run one after another, an exception in a thread
aborts the block's other threads and is raised with its `tid=[…] ctaid=[…]`. Measured on the 2-core build
machine: tests/engine/cuda_sim whole in 76 s instead of 346 s.

`install()` replaces the simulator's `BlockManager.run` only where its constructor and thread class are the ones
this was written against (numba-cuda 0.20–0.30); elsewhere the simulator is left as it is (slower, same results).
NNCTL_SIMULATOR_BLOCKS=numba keeps the simulator's own manager (to compare the two)."""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
import threading

import numpy as np

_POOL: list = []  # the reused threads; a block of n threads takes the first n
HUNG = 120.0  # seconds a block may go without all its threads reaching a barrier or the end (a test's are < 1)


def install() -> bool:
    """Puts the pooled block manager in place of the simulator's; False (and nothing changed) where the simulator
    is not the one this was written for, or NNCTL_SIMULATOR_BLOCKS=numba."""
    from numba.cuda.simulator import kernel as sim

    expected = ["self", "f", "grid_dim", "block_dim", "debug"]
    if (os.environ.get("NNCTL_SIMULATOR_BLOCKS") == "numba"
            or list(inspect.signature(sim.BlockManager.__init__).parameters) != expected
            or not all(hasattr(sim.BlockThread, name) for name in ("syncthreads", "syncthreads_count"))):
        return False
    worker = _worker_class(sim.BlockThread, sim.Dim3)

    def run(manager, grid_point, *args):
        _run_block(manager, worker, grid_point, args)

    sim.BlockManager.run = run
    return True


def _worker_class(block_thread, dim3):
    class Worker(block_thread):
        """A pooled simulator thread: runs one GPU thread's function at a time, handed to it by `assign`. Its
        attributes are the ones the simulator's kernel API reads from `threading.current_thread()`."""

        def __init__(self):
            threading.Thread.__init__(self, daemon=True)
            self.go = threading.Lock()
            self.go.acquire()  # released by assign
            self.syncthreads_event = threading.Event()
            self.task = None

        def assign(self, manager, args, grid_point, block_point):
            block = dim3(*manager._block_dim)
            self._manager, self.task, self.debug = manager, args, manager._debug
            self.blockIdx, self.threadIdx = dim3(*grid_point), dim3(*block_point)
            self.thread_id = self.threadIdx.x + block.x * (self.threadIdx.y + block.y * self.threadIdx.z)
            self.exception, self.abort, self.syncthreads_blocked = None, False, False
            self.syncthreads_event.clear()  # an aborted block may have left it set
            self.go.release()

        def run(self):
            while True:
                self.go.acquire()
                try:
                    with np.errstate(divide="raise") if self.debug else contextlib.nullcontext():
                        self._manager._f(*self.task)
                except Exception as error:  # noqa: BLE001 - recorded for the manager, as the simulator does
                    where = f"tid={list(self.threadIdx)} ctaid={list(self.blockIdx)}"
                    self.exception = (type(error)(f"{where}: {error}" if str(error) else where), sys.exc_info()[2])
                manager = self._manager
                with manager.changed:
                    manager.running -= 1
                    manager.unfinished -= 1
                    if self.exception and manager.failed is None:
                        manager.failed = self
                    if manager.running == 0 or manager.failed is not None:
                        manager.changed.notify()

        def syncthreads(self):
            if self.abort:
                raise RuntimeError("abort flag set on syncthreads call")
            manager = self._manager
            with manager.changed:
                self.syncthreads_blocked = True
                manager.running -= 1
                if manager.running == 0:
                    manager.changed.notify()
            self.syncthreads_event.wait()
            self.syncthreads_event.clear()
            if self.abort:
                raise RuntimeError("abort flag set on syncthreads clear")

    return Worker


def _run_block(manager, worker, grid_point, args) -> None:
    """Runs one block: every thread started on a pooled worker; when all that have not finished wait at a
    barrier, they are released together; returns once all have finished, or raises the first exception after
    the block's other threads have stopped (a pooled thread must be idle before it is handed the next one)."""
    points = list(np.ndindex(*manager._block_dim))
    while len(_POOL) < len(points):
        _POOL.append(worker())
        _POOL[-1].start()
    threads = _POOL[:len(points)]
    manager.changed, manager.failed = threading.Condition(threading.Lock()), None
    manager.running = manager.unfinished = len(points)  # not at a barrier and not finished; not finished
    for thread, point in zip(threads, points):
        thread.assign(manager, args, grid_point, point)
    with manager.changed:
        while True:
            while manager.running and manager.failed is None:
                if not manager.changed.wait(HUNG):
                    _POOL.clear()  # its threads are stuck: the next launch starts new ones
                    raise RuntimeError(f"simulated block {grid_point}: {manager.running} of {len(points)} threads "
                                       f"reached neither a barrier nor their end in {HUNG:.0f} s")
            if manager.failed is not None:
                for thread in threads:
                    thread.abort, thread.syncthreads_blocked = True, False
                    thread.syncthreads_event.set()
                while manager.unfinished:
                    manager.changed.wait()
                error, traceback = manager.failed.exception
                raise error.with_traceback(traceback)
            blocked = [thread for thread in threads if thread.syncthreads_blocked]
            if not blocked:
                return
            manager.running = len(blocked)
            for thread in blocked:
                thread.syncthreads_blocked = False
                thread.syncthreads_event.set()
