"""Run records: the on-disk folder a training run writes (config, manifest, history, events, weights).

Nothing here imports Numba, so `nnctl runs`, `compare` and `plot` stay fast.
"""

from nnctl.runs.rundir import (
    RunDirectory, atomic_write_bytes, environment_versions, sha256_bytes, sha256_file,
)

__all__ = ["RunDirectory", "atomic_write_bytes", "environment_versions", "sha256_bytes", "sha256_file"]
