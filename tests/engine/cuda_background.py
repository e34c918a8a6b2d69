"""The CUDA simulator run (tests/engine/cuda_sim/, in a process of its own: the simulator is chosen when Numba
starts), in the background while the rest of the suite runs, when tests/engine/test_cuda_sim.py is among the tests
to run. In one process (`-n 0`), tests/conftest.py starts it once most of the suite has run (it then loads the
CPU kernels the suite compiled into the shared kernel cache rather than compiling them again) and its checks go
last. Under pytest-xdist (the README's command), the controller, which runs no test, reserves the run's folder
before it starts its workers (they find it through NNCTL_CUDA_SIM_RUN) and starts the run once half the tests
have started, when the workers have compiled most CPU kernels into the shared cache: it shares the cores with
them instead of running alone at the end. `result()` waits for it; the session's end stops it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).parents[2]
SHARED = "NNCTL_CUDA_SIM_RUN"  # the run's folder, for xdist's workers
_RUN: dict = {}
# Runs the simulator's pytest and writes its exit code into a file, which another process can wait for.
_WRAPPER = ("import os, subprocess, sys; code = subprocess.call(sys.argv[2:]); "
            "open(sys.argv[1] + '.part', 'w').write(str(code)); os.replace(sys.argv[1] + '.part', sys.argv[1])")


def _files(folder: Path) -> tuple[Path, Path, Path]:
    return folder / "launches.json", folder / "pytest.log", folder / "exit-code"


def reserve() -> None:
    """The run's folder, made now and named in NNCTL_CUDA_SIM_RUN for the processes started after this one
    (xdist's workers), which wait for the run this process starts later."""
    if "folder" not in _RUN:
        _RUN["folder"] = Path(tempfile.mkdtemp(prefix="nnctl-cuda-sim-"))
        os.environ[SHARED] = str(_RUN["folder"])


def start() -> None:
    """Starts the run (once), unless another process (xdist's controller) runs it."""
    if "process" in _RUN or (os.environ.get(SHARED) and "folder" not in _RUN):
        return
    folder = _RUN.get("folder") or Path(tempfile.mkdtemp(prefix="nnctl-cuda-sim-"))
    path, log, code = _files(folder)
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1", "NNCTL_CUDA_LAUNCHES": str(path)}
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-c", _WRAPPER, str(code), sys.executable, "-m", "pytest", "-q",
                                    "-p", "no:cacheprovider", "-n", "0", str(Path(__file__).parent / "cuda_sim")],
                                   stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                   start_new_session=True)  # no test's signal reaches it
    _RUN.update(process=process, folder=folder)


def result(timeout: float = 900) -> tuple[int, str, Path]:
    """(exit code, output, the launches file) of the simulator run, started now if it was not yet."""
    start()
    folder = _RUN["folder"] if "folder" in _RUN else Path(os.environ[SHARED])
    path, log, code = _files(folder)
    deadline = time.monotonic() + timeout
    while not code.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    if not code.exists():
        return -1, log.read_text() + f"\n(no result after {timeout:.0f} s)", path
    return int(code.read_text()), log.read_text(), path


def stop() -> None:
    """Ends this process's run if it is still going and removes its folder."""
    process = _RUN.get("process")
    if process is not None and process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    if _RUN:
        shutil.rmtree(_RUN["folder"], ignore_errors=True)
