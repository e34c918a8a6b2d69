"""The benchmark scripts run end to end on a tiny budget (their figures are not checked: speed is not tested),
their tables read made-up runs right, and the PyTorch twins are the Keras models and optimizer they claim."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from book_table import BookCase, details, table  # noqa: E402

needs_data = pytest.mark.skipif(not os.environ.get("NNCTL_DATA_DIR"), reason="needs the real datasets (NNCTL_DATA_DIR)")


def _run(*args, timeout=300):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          check=False)


def test_engine_bench_trains_a_workload_and_prints_its_table():
    result = _run("bench/engine_bench.py", "--workloads", "w3b16", "--rounds", "1", "--epochs", "2")
    assert result.returncode == 0, result.stderr
    assert "FAILED" not in result.stdout
    assert "| W3 Boston bs16 | nnctl | fused epoch loop |" in result.stdout


def test_gpu_bench_builds_all_four_workloads_and_says_a_cpu_run_is_no_target_figure():
    """bench/gpu.py's dry run: the issue's four workloads (the convnet and the LSTM from the shipped configs) and
    the custom-layer MLP, nnctl and the PyTorch twin alternated, on the CPU with a few rows."""
    pytest.importorskip("torch")
    result = _run("bench/gpu.py", "--device", "cpu", "--rows", "64", "--epochs", "1")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(" (")[0] for line in lines] == ["mlp", "boston", "convnet", "lstm", "tape"]
    assert all("(64 rows): nnctl " in line and " ms a fit), torch " in line for line in lines), result.stdout
    assert all("a dry run: not the target's figures" in line for line in lines[:4]), result.stdout
    assert lines[4].endswith("(no target)"), result.stdout  # the custom-layer MLP: measured, no bar


def test_gpu_bench_op_times_patches_the_device_ops_and_puts_them_back():
    pytest.importorskip("torch")
    code = ("import sys; sys.argv = ['gpu.py', '--device', 'cpu', '--rows', '32', '--epochs', '1', '--rounds', '1', "
            "'--workloads', 'boston', '--op-times']; import gpu; from nnctl.nn.cudaops import DenseOp; "
            "before = DenseOp.forward; gpu.main(); assert DenseOp.forward is before; print('restored')")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT / "bench", capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert "op times over one epoch of" in result.stdout and result.stdout.rstrip().endswith("restored")


def test_gpu_census_lists_a_steps_launches_without_a_gpu():
    """bench/gpu_census.py under the simulator, kernels skipped: the Boston MLP's epoch is one launch of one block,
    the MNIST MLP's one of a cooperative grid; without it (NNCTL_CUDA_FUSED=0), the MNIST MLP's step is its Numba
    kernels and its five cuBLAS GEMMs at the real shapes, replayed as a CUDA graph (or launch by launch,
    NNCTL_CUDA_GRAPHS=0)."""
    pytest.importorskip("numba_cuda")
    result = _run("bench/gpu_census.py", "--workloads", "boston,mlp")
    assert result.returncode == 0, result.stderr
    boston, mlp = result.stdout.split("mlp: ")
    assert " 1 kernel launches, 0 cuBLAS calls," in boston.splitlines()[0] and "fused._dense_steps " in boston
    assert " 1 kernel launches, 0 cuBLAS calls," in mlp.splitlines()[0], mlp
    assert "fused._dense_steps_grid     " in mlp and " 33,792 threads" in mlp  # 132 blocks of 256
    assert "blocks wider than their kernels declare (launch.wide): none\n" in result.stdout
    assert result.stdout.rstrip().endswith("grids or blocks past CUDA's limits: none")
    for graphs, launches in (("1", 11), ("0", 8)):  # replayed as a graph: the step's bookkeeping, 3 launches more
        layered = subprocess.run([sys.executable, "bench/gpu_census.py", "--workloads", "mlp"], cwd=ROOT, text=True,
                                 capture_output=True, timeout=300,
                                 env={**os.environ, "NNCTL_CUDA_FUSED": "0", "NNCTL_CUDA_GRAPHS": graphs})
        assert layered.returncode == 0, layered.stderr
        first = layered.stdout.splitlines()[0]
        assert f"{launches} kernel launches, 5 cuBLAS calls" in first, first
        assert "cuBLAS gemm NN m=512 n=128 k=784" in layered.stdout and "<- serial" not in layered.stdout
        assert "(launch.wide): none\n" in layered.stdout and layered.stdout.rstrip().endswith("limits: none")
        assert ("graphs._record_step" in layered.stdout) is (graphs == "1")
        assert first.endswith("(on a GPU one CUDA graph launch a step)" if graphs == "1" else "(launch by launch)")
        # the step's device-array views are made once: what remains is the loop's own slice of the rows and the
        # copy of the outputs (a step built about 60 before the views were cached), none when replayed
        assert int(first.split(" cuBLAS calls, ")[1].split()[0]) <= (0 if graphs == "1" else 6), first


def test_gpu_census_knows_the_launches_a_gpu_refuses_for_their_shape(monkeypatch):
    """CUDA's grid and block limits (the census names any launch past them): 65,535 blocks down a grid, 64 threads
    deep, 1,024 threads a block; a (1, 81,250)-block grid — a 1.3M-weight row of 16-wide tiles — is refused."""
    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "1")  # (what importing the census sets: undone after the test)
    import gpu_census

    assert not gpu_census.past_limits((2 ** 31 - 1, 65535, 65535), (1024, 1, 1))
    assert not gpu_census.past_limits((1, 1, 1), (32, 16, 2))
    for grid, block in (((1, 81250, 1), (16, 16, 1)), ((1, 1, 65536), (1, 1, 1)), ((2 ** 31, 1, 1), (1, 1, 1)),
                        ((1, 1, 1), (1, 1, 65)), ((1, 1, 1), (32, 33, 1)), ((1, 1, 1), (1025, 1, 1))):
        assert gpu_census.past_limits(grid, block), (grid, block)


def test_gpu_book_reads_a_run_of_the_real_command(tmp_path):
    """bench/gpu_book.py's plumbing on the CPU: `nnctl train` as a subprocess, its run's history and test figures
    read back, and a failing run reported with its error."""
    import gpu_book

    result = gpu_book.train("smoke.yaml", ["epochs=2"], "cpu", tmp_path, 200)
    assert len(result["history"]["loss"]) == 2 and 0 <= result["test"]["accuracy"] <= 1
    assert gpu_book.figure_of(result, "test:accuracy") == result["test"]["accuracy"]
    assert gpu_book.figure_of(result, "best_val") == max(result["history"]["val_accuracy"])
    failed = gpu_book.train("smoke.yaml", ["epochs=0"], "cpu", tmp_path, 200)
    assert failed["error"].startswith("exit 2: ") and "epochs" in failed["error"]


@pytest.mark.slow
@needs_data
def test_book_bench_runs_a_config_through_the_real_command():
    result = _run("bench/run.py", "--rounds", "1", "--configs", "boston", "--epochs-override", "2", "--skip-startup")
    assert result.returncode == 0, result.stderr
    assert "FAILED" not in result.stdout
    assert "| boston |" in result.stdout


@pytest.mark.slow
@needs_data
def test_book_bench_runs_the_embedding_config_on_both_sides():
    result = _run("bench/run.py", "--rounds", "1", "--configs", "imdb_embedding", "--epochs-override", "2",
                  "--skip-startup", timeout=600)
    assert result.returncode == 0, result.stderr
    assert "FAILED" not in result.stdout
    assert "| imdb_embedding |" in result.stdout


# ---- the tables, on made-up runs ---------------------------------------------------------------------

CONVNET = BookCase("mnist_convnet", ROOT / "configs/mnist_convnet.yaml", "mnist", 1.5, min_ratio_one_thread=2.5,
                   rss_limit_mb=500, max_load_growth=2.2, epochs=3)
EMBEDDING = BookCase("imdb_embedding", ROOT / "configs/imdb_embedding.yaml", "imdb", 10.0, max_load_growth=2.2)


def _fake(epoch_s, rss=300.0, side="nnctl"):
    """One run as run.py records it: per-fit epoch seconds, final figures, peak RSS."""
    run = {"epoch_s": [epoch_s], "wall_s": sum(epoch_s) + 1.0, "peak_rss_mb": rss,
           "final": {"loss": 0.1, "accuracy": 0.99, "val_loss": 0.2, "val_accuracy": 0.98},
           "best": {"val_accuracy": 0.985}, "test": {"loss": 0.05, "accuracy": 0.99}}
    if side == "nnctl":
        return {**run, "manifest": {"phases": {"load": 0.5, "compile": 0.1, "train": 8.0}}}
    return {**run, "threads": 1 if side == "torch1" else 2, "sparse_input": "csr", "epochs": len(epoch_s),
            "rss_after_data_mb": 250.0}


def _runs(nnctl, torch, torch1, rss=300.0):
    return {("mnist_convnet", "nnctl"): [_fake(t, rss) for t in nnctl],
            ("mnist_convnet", "torch"): [_fake(t, side="torch") for t in torch],
            ("mnist_convnet", "torch1"): [_fake(t, side="torch1") for t in torch1]}


def test_table_checks_both_thread_targets_and_the_rss_limit():
    runs = _runs(nnctl=[[9.0, 4.0, 4.4], [9.0, 4.2, 3.8]], torch=[[20.0, 8.0, 8.4]], torch1=[[35.0, 12.0, 12.0]])
    row = next(line for line in table(runs, [CONVNET], load=False) if line.startswith("| mnist_convnet |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    # Steady epochs leave out each fit's first: nnctl median of 4.0, 4.4, 4.2, 3.8 is 4.1 s.
    assert cells[1] == "4100 [3800–4400]"
    assert cells[3] == f"{8.2 / 4.1:.1f}×" and cells[5] == f"{12.0 / 4.1:.1f}×"
    assert cells[8] == "≥ 1.5×: pass; ≥ 2.5× 1-thread: pass; RSS ≤ 500 MB: pass"

    slow = _runs(nnctl=[[9.0, 6.0, 6.0]], torch=[[20.0, 8.0, 8.0]], torch1=[[35.0, 12.0, 12.0]], rss=640.0)
    row = next(line for line in table(slow, [CONVNET], load=False) if line.startswith("| mnist_convnet |"))
    assert row.rstrip(" |").endswith("≥ 1.5×: FAIL; ≥ 2.5× 1-thread: FAIL; RSS ≤ 500 MB: FAIL")


def test_table_without_torch_says_so_instead_of_a_ratio():
    runs = {("imdb_embedding", side): [] for side in ("nnctl", "torch", "torch1")}
    runs["imdb_embedding", "nnctl"] = [_fake([0.5, 0.05, 0.06])]
    row = table(runs, [EMBEDDING], load=False)[2]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[2] == "—" and cells[3] == "—" and cells[4] == "—" and cells[8] == "≥ 10×: —"


def test_load_table_holds_nnctl_to_its_own_growth_limit():
    plain = _runs(nnctl=[[9.0, 4.0, 4.0]], torch=[[20.0, 8.0, 8.0]], torch1=[[30.0, 12.0, 12.0]])
    loaded = _runs(nnctl=[[9.0, 8.0, 8.0]], torch=[[90.0, 80.0, 80.0]], torch1=[[30.0, 12.0, 12.0]])
    assert table(loaded, [CONVNET], load=True, baseline=plain)[2].endswith("| 2.00× (≤ 2.2×: pass) |")
    worse = _runs(nnctl=[[9.0, 9.6, 9.6]], torch=[[90.0, 80.0, 80.0]], torch1=[[30.0, 12.0, 12.0]])
    assert table(worse, [CONVNET], load=True, baseline=plain)[2].endswith("| 2.40× (≤ 2.2×: FAIL) |")
    assert table(worse, [CONVNET], load=True)[2].endswith("| — (needs `--load both`) |")


def test_details_show_best_validation_and_test_figures_per_side():
    runs = _runs(nnctl=[[9.0, 4.0, 4.0]], torch=[[20.0, 8.0, 8.0]], torch1=[[30.0, 12.0, 12.0]])
    lines = details(runs, [CONVNET])
    assert [line.split("|")[2].strip() for line in lines[2:]] == ["nnctl", "torch", "torch1"]
    assert all("| 0.9850 | 0.0500 / 0.9900 |" in line for line in lines[2:])
    assert "1 threads; 3 epochs/fit" in lines[-1]


# ---- the PyTorch twins -------------------------------------------------------------------------------

@pytest.mark.parametrize("config, params", [
    ("mnist_convnet.yaml", 93_322), ("imdb_embedding.yaml", 80_161), ("imdb_conv1d.yaml", 1_315_937),
])
def test_torch_twin_of_a_book_config_has_keras_parameter_count_and_output(config, params):
    torch = pytest.importorskip("torch")
    from torch_layers import build_model, channels_first

    spec = yaml.safe_load((ROOT / "configs" / config).read_text())
    shape = tuple(spec["model"]["input_shape"])
    model, loss = build_model(spec["model"]["layers"], shape, spec["loss"])
    assert sum(p.numel() for p in model.parameters()) == params
    rng = np.random.default_rng(0)
    x = rng.integers(0, 10_000, (3,) + shape).astype(np.int32) if "imdb" in config else \
        channels_first(rng.random((3,) + shape, dtype=np.float32))
    out = model(torch.from_numpy(x.astype(np.int64) if "imdb" in config else x))
    assert out.shape == (3, 10 if "mnist" in config else 1)
    assert type(loss).__name__ == ("CrossEntropyLoss" if "mnist" in config else "BCEWithLogitsLoss")


def test_torch_twin_uses_keras_initializers():
    pytest.importorskip("torch")
    from torch_layers import build_model

    specs = [{"type": "embedding", "input_dim": 500, "output_dim": 40},
             {"type": "conv1d", "filters": 64, "kernel_size": 5, "activation": "relu"},
             {"type": "global_max_pooling1d"}, {"type": "dense", "units": 1, "activation": "sigmoid"}]
    model, _ = build_model(specs, (30,), "binary_crossentropy")
    embedding, conv = model[0].weight.detach().numpy(), model[2].weight.detach().numpy()
    assert np.abs(embedding).max() <= 0.05 and np.abs(embedding).max() > 0.049
    limit = np.sqrt(6 / (5 * 40 + 5 * 64))  # Glorot uniform: fan in and out are kernel size × channels
    assert np.abs(conv).max() <= limit and np.abs(conv).max() > 0.98 * limit
    assert not model[2].bias.detach().numpy().any()


def test_torch_twin_refuses_a_layer_it_cannot_port():
    pytest.importorskip("torch")
    from torch_layers import build_model

    with pytest.raises(SystemExit, match="layer 0 \\(conv2d\\).*padding `same`"):
        build_model([{"type": "conv2d", "filters": 2, "kernel_size": 3, "strides": 2, "padding": "same"},
                     {"type": "flatten"}, {"type": "dense", "units": 1, "activation": "sigmoid"}],
                    (8, 8, 1), "binary_crossentropy")


def test_keras_rmsprop_puts_epsilon_inside_the_square_root():
    torch = pytest.importorskip("torch")
    from torch_layers import KerasRMSprop

    weight = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64))
    optimizer = KerasRMSprop([weight], lr=0.01, rho=0.9, epsilon=1e-7)
    expected, velocity = np.array([1.0, -2.0, 3.0]), np.zeros(3)
    for grad in ([0.5, 1e-4, -2.0], [0.1, 0.0, 1.0]):
        weight.grad = torch.tensor(grad, dtype=torch.float64)
        optimizer.step()
        velocity = 0.9 * velocity + 0.1 * np.square(grad)
        expected = expected - 0.01 * np.array(grad) / np.sqrt(velocity + 1e-7)
    np.testing.assert_allclose(weight.detach().numpy(), expected, rtol=1e-12)


def test_torch_twin_refuses_frozen_layers_and_channels_first_data():
    pytest.importorskip("torch")
    from torch_layers import build_model

    with pytest.raises(SystemExit, match="layer 0 \\(dense\\).*`trainable: False`"):
        build_model([{"type": "dense", "units": 1, "trainable": False}], (4,), "mse")
    with pytest.raises(SystemExit, match="layer 0 \\(conv1d\\).*`data_format: channels_first`"):
        build_model([{"type": "conv1d", "filters": 2, "kernel_size": 3, "data_format": "channels_first"},
                     {"type": "flatten"}, {"type": "dense", "units": 1}], (8, 1), "mse")


def test_torch_fidelity_reads_seed_ranges_and_summarises_with_the_range():
    from torch_fidelity import parse_seeds, summary

    assert parse_seeds("0-6") == list(range(7)) and parse_seeds("0,3,5") == [0, 3, 5]
    assert summary("best val_accuracy", [0.75, 0.77, 0.76]) == \
        "best val_accuracy: 0.7500, 0.7700, 0.7600 → mean 0.7600 [0.7500–0.7700]"
