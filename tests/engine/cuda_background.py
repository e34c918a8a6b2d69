"""The CUDA simulator run (tests/engine/cuda_sim/, in a process of its own: the simulator is chosen when Numba
starts), started in the background by tests/conftest.py once most of the suite has run (it then loads the CPU
kernels the suite compiled into the shared kernel cache rather than compiling them again) when
tests/engine/test_cuda_sim.py is among the tests to run, which go last: it overlaps the last tests on the
machine's other core instead of adding its ~1.5 minutes. `result()` waits for it; the session's end stops it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).parents[2]
_RUN: dict = {}


def start() -> None:
    if _RUN:
        return
    folder = Path(tempfile.mkdtemp(prefix="nnctl-cuda-sim-"))
    path, log = folder / "launches.json", folder / "pytest.log"
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1", "NNCTL_CUDA_LAUNCHES": str(path)}
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                    str(Path(__file__).parent / "cuda_sim")], stdout=out, stderr=subprocess.STDOUT,
                                   env=env, cwd=ROOT, start_new_session=True)  # no test's signal reaches it
    _RUN.update(process=process, path=path, log=log)


def result(timeout: float = 900) -> tuple[int, str, Path]:
    """(exit code, output, the launches file) of the simulator run, started now if it was not yet."""
    start()
    process = _RUN["process"]
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        code = process.wait()
    return code, _RUN["log"].read_text(), _RUN["path"]


def stop() -> None:
    """Ends the run if it is still going and removes its folder."""
    process = _RUN.get("process")
    if process is not None and process.poll() is None:
        process.kill()
        process.wait()
    if _RUN:
        shutil.rmtree(_RUN["path"].parent, ignore_errors=True)
