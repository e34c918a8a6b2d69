"""The benchmark scripts run end to end on a tiny budget (their figures are not checked: speed is not tested)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(*args, timeout=300):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          check=False)


def test_engine_bench_trains_a_workload_and_prints_its_table():
    result = _run("bench/engine_bench.py", "--workloads", "w3b16", "--rounds", "1", "--epochs", "2")
    assert result.returncode == 0, result.stderr
    assert "FAILED" not in result.stdout
    assert "| W3 Boston bs16 | nnctl | fused epoch loop |" in result.stdout


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("NNCTL_DATA_DIR"), reason="needs the real datasets (NNCTL_DATA_DIR)")
def test_book_bench_runs_a_config_through_the_real_command():
    result = _run("bench/run.py", "--rounds", "1", "--configs", "boston", "--epochs-override", "2", "--skip-startup")
    assert result.returncode == 0, result.stderr
    assert "FAILED" not in result.stdout
    assert "| boston |" in result.stdout
