"""The kernel engine: a backend per device exposing the same kernels by name.

`get_backend("cpu")` imports Numba on first call, never at `import nnctl`.
"""

import hashlib
import os
import sys
from pathlib import Path


def _kernel_cache_dir() -> Path:
    """Numba's on-disk cache, keyed by a hash of every kernel source.

    Numba revalidates a cached function against its own file only, so the fast path's generated loops
    (nn/fastpath.py, written into this directory), which link kernels from engine/cpu/, would keep running
    stale kernels after an edit there.
    """
    package = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted(package.joinpath("engine").rglob("*.py")):
        digest.update(path.read_bytes())
    base = os.environ.get("NNCTL_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nnctl"
    return Path(base) / "kernels" / digest.hexdigest()[:16]


# The split kernels' threads sleep when idle rather than spin (settings.py, threading policy). OpenMP reads
# this when Numba first starts its thread pool, which is after this import.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")
os.environ.setdefault("NUMBA_THREADING_LAYER_PRIORITY", "omp workqueue tbb")

if "NUMBA_CACHE_DIR" not in os.environ:
    os.environ["NUMBA_CACHE_DIR"] = str(_kernel_cache_dir())
    if "numba" in sys.modules:  # imported before us: its config has already read the environment
        from numba.core import config as _numba_config
        _numba_config.CACHE_DIR = os.environ["NUMBA_CACHE_DIR"]
