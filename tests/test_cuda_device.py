"""`device:` on a machine whatever its GPU: `cuda` where it cannot run is a located config error saying why
(exit 2, from train and check, before any data is read), `auto` trains where it can (the CPU here unless a GPU
works), the reasons for each missing piece, and `import nnctl` loading nothing of the CUDA stack. The GPU path
itself is checked under the simulator (tests/engine/cuda_sim/test_cuda_training.py)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from nnctl.cli import main
from nnctl.engine import cuda_device


@pytest.mark.skipif(cuda_device.problem() is None, reason="a GPU works here: device: cuda runs")
@pytest.mark.parametrize("command", ["train", "check"])
def test_device_cuda_where_it_cannot_run_is_a_located_error(tmp_path, tiny_config, command):
    tiny_config.write_text(tiny_config.read_text() + "device: cuda\n")
    args = [command, str(tiny_config)] + (["--runs-dir", str(tmp_path / "runs")] if command == "train" else [])
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert f"{tiny_config}:15:9: device: cannot run on cuda: {cuda_device.problem()} (allowed: cpu, auto)" \
        in result.stderr
    assert "Traceback" not in result.output and not (tmp_path / "runs").exists()


def test_device_auto_trains_on_what_works(tmp_path, tiny_config):
    tiny_config.write_text(tiny_config.read_text() + "device: auto\n")
    result = CliRunner().invoke(main, ["train", str(tiny_config), "--runs-dir", str(tmp_path / "runs"), "-q"])
    assert result.exit_code == 0, result.output
    manifest = json.loads(next((tmp_path / "runs" / "tiny").glob("2*/manifest.json")).read_text())
    assert manifest["device"] == ("cuda" if cuda_device.problem() is None else "cpu")


def test_each_missing_piece_is_named(monkeypatch):
    monkeypatch.delenv("NUMBA_ENABLE_CUDASIM", raising=False)
    real = importlib.util.find_spec
    for missing, words in (("numba_cuda", "the `cuda` extra is not installed (numba-cuda; pip install "
                                          "'nnctl[cuda]')"),
                           ("nvmath", "cuBLAS is not installed (nvmath-python and nvidia-cublas-cu12")):
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == missing else real(name, *a))
        if missing == "nvmath" and real("numba_cuda") is None:
            continue  # the first check answers first
        assert cuda_device.problem().startswith(words)
    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "1")
    assert cuda_device.problem() is None  # the simulator stands in for a GPU (the simulator tests train on it)


def test_import_nnctl_and_the_device_check_load_no_cuda_module():
    code = ("import sys, nnctl, nnctl.cli, nnctl.nn.model; from nnctl.engine.cuda_device import problem; "
            "print(sorted(m for m in sys.modules if m.startswith(('numba.cuda', 'numba_cuda.numba', "
            "'nnctl.engine.cuda.', 'nvmath'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_counter_based_uniforms_are_uniform_and_differ_between_draws():
    from nnctl.engine.reference import counter_uniform

    import numpy as np

    first, second, other_key = (counter_uniform(key, counter, 200_000) for key, counter in ((7, 0), (7, 1), (8, 0)))
    assert first.dtype == np.float32 and 0.0 <= first.min() and first.max() < 1.0
    assert abs(first.mean() - 0.5) < 0.003 and abs((first >= 0.3).mean() - 0.7) < 0.003
    assert np.histogram(first, bins=10, range=(0, 1))[0].min() > 19_500  # every tenth holds ~20,000
    for other in (second, other_key):  # another step, another layer: unrelated masks
        assert abs(np.corrcoef(first, other)[0, 1]) < 0.01 and (first != other).mean() > 0.999
    np.testing.assert_array_equal(counter_uniform(7, 0, 10), first[:10])  # a draw is a pure function


@pytest.mark.skipif(importlib.util.find_spec("numba_cuda") is None, reason="needs numba-cuda (the cuda extra)")
def test_the_cuda_engine_turns_off_numba_cudas_small_grid_warning_unless_the_user_set_it():
    import os

    code = "import nnctl.engine.cuda, numba.cuda.core.config as c; print(c.CUDA_LOW_OCCUPANCY_WARNINGS)"
    env = {key: value for key, value in os.environ.items() if key != "NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS"}
    env["NUMBA_ENABLE_CUDASIM"] = "1"
    for setting, shown in ((None, "0"), ("1", "1")):
        if setting:
            env["NUMBA_CUDA_LOW_OCCUPANCY_WARNINGS"] = setting
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
        assert out.stdout.strip() == shown
