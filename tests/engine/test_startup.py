"""Start-up policy: the command line loads Numba's CPU target without scipy.linalg (settings.NUMBA_SCIPY)."""

import importlib.util
import os
import subprocess
import sys

import pytest

HAS_SCIPY = importlib.util.find_spec("scipy") is not None

RUN_A_KERNEL = """
import sys, numpy as np
from nnctl.engine.backend import get_backend
x, w, out = np.ones((3, 4), np.float32), np.ones((4, 2), np.float32), np.zeros((3, 2), np.float32)
get_backend("cpu").matmul(x, w, out)
import numba.np.arraymath
print(float(out[0, 0]), "scipy.linalg" in sys.modules, numba.np.arraymath._HAVE_BLAS)
"""


def _run(code: str, **env_changes) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "NNCTL_NUMBA_SCIPY"}
    env.update({k: v for k, v in env_changes.items() if v is not None})
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.split()


@pytest.mark.parametrize("preset, expected", [(None, "0"), ("1", "1")])
def test_the_command_line_skips_scipy_in_numba_unless_told(preset, expected):
    code = "import nnctl.cli, nnctl.engine.settings as s, os; print(os.environ['NNCTL_NUMBA_SCIPY'], int(s.NUMBA_SCIPY))"
    assert _run(code, NNCTL_NUMBA_SCIPY=preset) == [expected, expected]


@pytest.mark.skipif(not HAS_SCIPY, reason="without scipy there is nothing to skip")
def test_without_scipy_blas_kernels_run_and_scipy_still_imports_later():
    out = _run(RUN_A_KERNEL + "import scipy.linalg; print(scipy.linalg.norm([3.0, 4.0]))", NNCTL_NUMBA_SCIPY="0")
    assert out == ["4.0", "False", "False", "5.0"]


@pytest.mark.skipif(not HAS_SCIPY, reason="Numba's BLAS needs scipy")
def test_library_default_leaves_numba_blas_alone():
    assert _run(RUN_A_KERNEL) == ["4.0", "True", "True"]
