"""Runs the CUDA kernel tests (tests/engine/cuda_sim/) under Numba's CUDA simulator, in a process of their own:
the simulator is chosen when Numba starts, which in this process has long happened."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_the_cuda_kernels_pass_under_the_simulator():
    folder = Path(__file__).parent / "cuda_sim"
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder)],
                            capture_output=True, text=True, env=env, cwd=Path(__file__).parents[2], timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout.splitlines()[-1]
