"""bench/conv_kernels.py runs end to end on one small shape (its figures are not checked: speed is not tested)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_conv_kernel_bench_times_a_shape():
    result = subprocess.run([sys.executable, "bench/conv_kernels.py", "--shapes", "mnist3", "--repeats", "1",
                             "--threads", "1"], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("mnist3"))
    assert "nnctl" in line
