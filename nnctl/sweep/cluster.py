"""The Dask client sweeps and parallel K-fold runs use: an in-process local cluster of single-threaded worker
processes (the engine keeps its own threads), or an existing scheduler by address."""

from __future__ import annotations

import os
from contextlib import contextmanager

from nnctl.errors import NnctlError


def default_workers() -> int:
    """As many single-threaded workers as this process may use cores (no oversubscription of the engine)."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


@contextmanager
def dask_client(workers: int | None = None, cluster: str | None = None):
    """A connected `distributed.Client` with at least one worker; closed (and a local cluster shut) after."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise NnctlError("running on Dask needs the sweep extra: pip install 'nnctl[sweep]'") from None
    local = None
    try:
        if cluster:
            client = Client(cluster, timeout="20s")
        else:
            count = workers or default_workers()
            # Each worker's engine gets its share of the cores: no oversubscription (and the bytes are the same
            # for any thread count).
            share = str(max(1, default_workers() // count))
            local = LocalCluster(n_workers=count, threads_per_worker=1, processes=True, dashboard_address=None,
                                 silence_logs=40, env={"NNCTL_THREADS": share, "OPENBLAS_NUM_THREADS": "1"})
            client = Client(local)
    except OSError as err:
        raise NnctlError(f"cannot reach the Dask scheduler {cluster}: {err}") from None
    try:
        try:
            client.wait_for_workers(1, timeout=60)
        except TimeoutError:
            raise NnctlError(f"the Dask cluster {cluster} has no worker after 60 s: start some with "
                             f"`dask worker {cluster}`") from None
        yield client
    finally:
        client.close()
        if local is not None:
            local.close()


def worker_count(client) -> int:
    return max(1, len(client.scheduler_info()["workers"]))
