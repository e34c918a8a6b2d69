"""Runs the CUDA kernel tests (tests/engine/cuda_sim/) under Numba's CUDA simulator, in a process of their own
(the simulator is chosen when Numba starts, which in this process has long happened), recording every launch's
argument types; then compiles each recorded launch for sm_90 with `cuda.compile_ptx` and links it into a cubin
(tests/engine/cuda_compile.py) where numba-cuda and the cu12 NVVM wheel are installed (the `dev` extra has
them), which types the kernels for real as the simulator does not."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def launches():
    """(exit code, output, launches file) of the simulator run, started in the background after collection."""
    from tests.engine import cuda_background

    return cuda_background.result()


def test_the_cuda_kernels_pass_under_the_simulator(launches):
    code, output, path = launches
    assert code == 0, output[-5000:]
    assert " passed" in output
    skips = [line for line in output.splitlines() if line.startswith("SKIPPED")]
    assert all("needs a real GPU" in line for line in skips), skips  # only the tests of cuBLAS itself
    record = json.loads(path.read_text())
    launched = {(module, name) for module, name, _ in record["launches"]}
    assert record["kernels"] and not [kernel for kernel in record["kernels"] if tuple(kernel) not in launched], \
        "every CUDA kernel is launched by a simulator test"


def _compiler_installed() -> bool:
    if importlib.util.find_spec("numba_cuda") is None:
        return False
    try:
        importlib.metadata.version("nvidia-cuda-nvcc-cu12")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(not _compiler_installed(), reason="numba-cuda[cu12] is not installed (pip install 'nnctl[cuda]')")
def test_every_launch_compiles_for_sm_90(launches):
    code, output, path = launches
    assert path.exists(), output[-3000:]
    compiled = subprocess.run([sys.executable, str(Path(__file__).parent / "cuda_compile.py"), str(path)],
                              capture_output=True, text=True, cwd=ROOT, timeout=600,
                              env={key: value for key, value in os.environ.items() if key != "NUMBA_ENABLE_CUDASIM"})
    assert compiled.returncode == 0, compiled.stdout[-4000:] + compiled.stderr[-2000:]
    assert "compiled and linked" in compiled.stdout
    # the cooperative grid's kernels (nnctl.engine.cuda.fused) call into the device runtime: linked with it
    assert int(re.search(r"\((\d+) with the device runtime\)", compiled.stdout).group(1)) > 0, compiled.stdout


def test_a_kernels_parameter_bytes_are_read_from_its_ptx_entry():
    """cuda_compile's PARAM_LIMIT check: each parameter at its alignment (a u8 then a u64 take 16 bytes)."""
    from tests.engine.cuda_compile import param_bytes

    ptx = """.visible .entry _Z1kPf(
	.param .u8 _Z1kPf_param_0,
	.param .u64 _Z1kPf_param_1,
	.param .f32 _Z1kPf_param_2,
	.param .align 8 .b8 _Z1kPf_param_3[20]
)
.maxntid 256
{
	ret;
}
"""
    assert param_bytes(ptx) == 8 + 8 + 4 + 4 + 20  # 1 → 8 (the u64's alignment), +8, +4, → 24 (align 8), +20
