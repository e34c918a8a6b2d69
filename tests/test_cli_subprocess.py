"""Every command as a real process against bad inputs: one located line, exit 1 or 2, never a traceback.

Ctrl-C at seeded moments is tests/test_cli_interrupt.py. Before/after: run with PYTHONPATH=/work/base.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import namedtuple
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tests.conftest import TINY_CONFIG, write_npz

# A case returns the command line (strings and paths) and the texts stderr must hold (the file, row, key ...;
# a tuple of texts: any one of them).
Call = namedtuple("Call", "args needles env prefix", defaults=(None, ()))
CASES: dict = {}


def case(*codes, slow=False):
    """Registers a case: `make(d)` builds its files in `d.tmp` and returns a Call; `codes` are the exits allowed."""
    def register(make):
        marks = [pytest.mark.slow] if slow else []
        CASES[make.__name__] = pytest.param(make, codes, id=make.__name__, marks=marks)
        return make
    return register


def nnctl(args, cwd, env=None, prefix=(), timeout=60) -> subprocess.CompletedProcess:
    """`python -m nnctl ARGS` in `cwd`, stdout and stderr piped (no TTY)."""
    return subprocess.run([*prefix, sys.executable, "-m", "nnctl", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def write_config(folder: Path, text: str = TINY_CONFIG, name: str = "tiny.yaml") -> Path:
    (folder / name).write_text(text, encoding="utf-8")
    return folder / name


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished tiny run (`run`), and one whose data file was deleted after training (`run_without_data`)."""
    folder = tmp_path_factory.mktemp("trained")
    runs = {}
    for key, data in (("run", "tiny.npz"), ("run_without_data", "gone.npz")):
        write_npz(folder / data)
        write_config(folder, TINY_CONFIG.replace("tiny.npz", data), f"{key}.yaml")
        done = nnctl(["train", f"{key}.yaml", "--runs-dir", "runs", "-q"], cwd=folder)
        assert done.returncode == 0, done.stderr
        runs[key] = folder / done.stdout.splitlines()[-1][len("run: "):]
    (folder / "gone.npz").unlink()
    return SimpleNamespace(folder=folder, **runs)


@pytest.fixture
def d(trained, tmp_path):
    """The case's folder: a copy of the run (`d.run`), the tiny data and config, and the untouched `d.trained`."""
    shutil.copytree(trained.run, tmp_path / "run", symlinks=True)
    write_npz(tmp_path / "tiny.npz")
    write_config(tmp_path)
    return SimpleNamespace(tmp=tmp_path, run=tmp_path / "run", trained=trained)


def csv_config(d, text: str) -> Path:
    (d.tmp / "data.csv").write_text(text, encoding="utf-8")
    return write_config(d.tmp, TINY_CONFIG.replace("  path: tiny.npz\n", "  dataset: {type: csv, path: data.csv, "
                                                                         "target: y}\n"))


def good_csv(rows=40, width=4) -> str:
    rng = np.random.default_rng(0)
    lines = [",".join(f"f{i}" for i in range(width)) + ",y"]
    lines += [",".join(f"{v:.3f}" for v in rng.normal(size=width)) + f",{i % 2}" for i in range(rows)]
    return "\n".join(lines) + "\n"


# ---- train, kfold, check, summary, config show: configs and data files ------------------------------------------
@case(2)
def train_on_an_empty_npz(d):
    (d.tmp / "tiny.npz").write_bytes(b"")
    return Call(["train", "tiny.yaml"], ["tiny.npz"])


@case(2)
def train_with_nan_in_the_features(d):
    with np.load(d.tmp / "tiny.npz") as data:
        arrays = dict(data)
    arrays["x_train"][5, 3] = np.nan
    np.savez(d.tmp / "tiny.npz", **arrays)
    return Call(["train", "tiny.yaml"], ["tiny.npz", "row 5", "column 3"])


@case(2)
def train_with_text_features(d):
    np.savez(d.tmp / "tiny.npz", x_train=np.array([["a"] * 10] * 20), y_train=np.zeros(20, np.float32))
    return Call(["train", "tiny.yaml"], ["tiny.npz"])


@case(2)
def train_with_more_labels_than_samples(d):
    np.savez(d.tmp / "tiny.npz", x_train=np.zeros((20, 10), np.float32), y_train=np.zeros(21, np.float32))
    return Call(["train", "tiny.yaml"], ["tiny.npz"])


@case(2)
def train_on_a_npz_without_x_train(d):
    np.savez(d.tmp / "tiny.npz", features=np.zeros((20, 10), np.float32))
    return Call(["train", "tiny.yaml"], ["tiny.npz", "x_train"])


@case(2)
def train_on_a_corrupted_npz(d):
    raw = (d.tmp / "tiny.npz").read_bytes()
    (d.tmp / "tiny.npz").write_bytes(raw[:len(raw) // 2])
    return Call(["train", "tiny.yaml"], ["tiny.npz"])


@case(2)
def train_on_a_folder_as_data(d):
    (d.tmp / "tiny.npz").unlink()
    (d.tmp / "tiny.npz").mkdir()
    return Call(["train", "tiny.yaml"], ["tiny.npz"])


@case(2)
def train_a_folder_as_config(d):
    (d.tmp / "conf.yaml").mkdir()
    return Call(["train", "conf.yaml"], ["conf.yaml"])


@case(2)
def train_a_missing_config(d):
    return Call(["train", "nope.yaml"], ["nope.yaml"])


@case(2)
def train_into_a_runs_dir_that_is_a_file(d):
    (d.tmp / "runs").write_text("not a folder")
    return Call(["train", "tiny.yaml", "--runs-dir", "runs"], ["runs"])


@case(2)
def train_into_a_runs_name_that_is_a_file(d):
    (d.tmp / "runs").mkdir()
    (d.tmp / "runs" / "tiny").write_text("not a folder")
    return Call(["train", "tiny.yaml", "--runs-dir", "runs"], ["runs/tiny"])


@case(1, 2)
def train_with_a_full_disk(d):
    """`prlimit --fsize`: every write past 2 KiB fails with EFBIG, as on a full disk (Python ignores SIGXFSZ)."""
    return Call(["train", "tiny.yaml", "--runs-dir", "runs"], ["runs/tiny", "File too large"],
                prefix=("prlimit", "--fsize=2048"))


@case(2)
def train_csv_with_a_short_row(d):
    text = good_csv().splitlines()
    text[7] = "1.0,2.0"
    csv_config(d, "\n".join(text) + "\n")
    return Call(["train", "tiny.yaml"], ["data.csv", "8"])


@case(2)
def train_csv_with_a_word_in_a_number_column(d):
    text = good_csv().splitlines()
    text[4] = "1.0,oops,3.0,4.0,1"
    csv_config(d, "\n".join(text) + "\n")
    return Call(["train", "tiny.yaml"], ["data.csv", "5", "oops"])


@case(2)
def train_csv_with_inf(d):
    text = good_csv().splitlines()
    text[3] = "1.0,2.0,inf,4.0,1"
    csv_config(d, "\n".join(text) + "\n")
    return Call(["train", "tiny.yaml"], ["data.csv", ("data.csv:4", "line 4"), "f2", "inf"])


@case(2)
def train_an_empty_csv(d):
    csv_config(d, "")
    return Call(["train", "tiny.yaml"], ["data.csv"])


@case(2)
def train_a_header_only_csv(d):
    csv_config(d, "a,b,y\n")
    return Call(["train", "tiny.yaml"], ["data.csv"])


@case(2)
def kfold_on_an_empty_npz(d):
    (d.tmp / "tiny.npz").write_bytes(b"")
    return Call(["kfold", "tiny.yaml", "--folds", "3"], ["tiny.npz"])


@case(2)
def kfold_with_more_folds_than_rows(d):
    np.savez(d.tmp / "tiny.npz", x_train=np.zeros((3, 10), np.float32), y_train=np.zeros(3, np.float32))
    return Call(["kfold", "tiny.yaml", "--folds", "5"], ["fold"])


@case(2)
def kfold_into_a_runs_dir_that_is_a_file(d):
    (d.tmp / "runs").write_text("")
    return Call(["kfold", "tiny.yaml", "--folds", "2", "--runs-dir", "runs"], ["runs"])


@case(2)
def check_with_nan_in_the_labels(d):
    with np.load(d.tmp / "tiny.npz") as data:
        arrays = dict(data)
    arrays["y_test"][2] = np.inf
    np.savez(d.tmp / "tiny.npz", **arrays)
    return Call(["check", "tiny.yaml"], ["tiny.npz", "y_test", "row 2"])


@case(2)
def check_a_missing_data_file(d):
    (d.tmp / "tiny.npz").unlink()
    return Call(["check", "tiny.yaml"], ["tiny.npz"])


@case(2)
def check_a_binary_config(d):
    (d.tmp / "bin.yaml").write_bytes(bytes(range(256)))
    return Call(["check", "bin.yaml"], ["bin.yaml"])


@case(2)
def check_with_a_bad_set_key(d):
    return Call(["check", "tiny.yaml", "--set", "optimizer.lerning_rate=0.1"], ["lerning_rate"])


@case(2)
def summary_on_an_empty_npz(d):
    (d.tmp / "tiny.npz").write_bytes(b"")
    return Call(["summary", "tiny.yaml"], ["tiny.npz"])


@case(2)
def summary_of_a_folder(d):
    (d.tmp / "conf.yaml").mkdir()
    return Call(["summary", "conf.yaml"], ["conf.yaml"])


@case(2)
def config_show_of_an_empty_file(d):
    (d.tmp / "empty.yaml").write_text("")
    return Call(["config", "show", "empty.yaml"], ["empty.yaml"])


@case(2)
def config_show_of_a_list(d):
    (d.tmp / "list.yaml").write_text("- 1\n- 2\n")
    return Call(["config", "show", "list.yaml"], ["list.yaml"])


@case(2)
def config_show_with_a_nan_epochs(d):
    return Call(["config", "show", "tiny.yaml", "--set", "epochs=.nan"], ["epochs"])


# ---- evaluate, predict: run files and inputs --------------------------------------------------------------------
@case(2)
def evaluate_a_missing_run(d):
    return Call(["evaluate", d.tmp / "nope"], ["nope"])


@case(2)
def evaluate_with_truncated_weights(d):
    raw = (d.run / "weights.safetensors").read_bytes()
    (d.run / "weights.safetensors").write_bytes(raw[:len(raw) // 2])
    return Call(["evaluate", d.run], ["weights.safetensors"])


@case(2)
def evaluate_with_an_empty_manifest(d):
    (d.run / "manifest.json").write_text("")
    return Call(["evaluate", d.run], ["manifest.json"])


@case(2)
def evaluate_with_preprocessing_as_a_folder(d):
    (d.run / "preprocessing.json").unlink()
    (d.run / "preprocessing.json").mkdir()
    return Call(["evaluate", d.run], ["preprocessing.json"])


@case(2)
def evaluate_with_a_wrong_key_in_the_manifest(d):
    text = (d.run / "manifest.json").read_text().replace('"input_shape"', '"input_shapes"')
    (d.run / "manifest.json").write_text(text)
    return Call(["evaluate", d.run], ["manifest.json", "input_shape"])


@case(2)
def evaluate_a_run_whose_data_is_gone(d):
    return Call(["evaluate", d.trained.run_without_data], ["gone.npz"])


@case(2)
def evaluate_with_weights_that_are_a_folder(d):
    return Call(["evaluate", d.run, "--weights", "checkpoints"], ["checkpoints"])


@case(2)
def evaluate_with_weights_of_another_shape(d):
    from safetensors.numpy import load_file, save_file
    weights = load_file(str(d.run / "weights.safetensors"))
    weights = {name: np.zeros(value.shape[:-1] + (value.shape[-1] + 1,), value.dtype)
               for name, value in weights.items()}
    save_file(weights, str(d.run / "weights.safetensors"))
    return Call(["evaluate", d.run], ["weights.safetensors"])


@case(2)
def predict_npy_too_narrow(d):
    np.save(d.tmp / "x.npy", np.zeros((3, 7), np.float32))
    return Call(["predict", d.run, "--input", "x.npy"], ["x.npy", "[10]", "[7]"])


@case(2)
def predict_npy_too_wide(d):
    np.save(d.tmp / "x.npy", np.zeros((3, 12), np.float32))
    return Call(["predict", d.run, "--input", "x.npy"], ["x.npy", "[10]", "[12]"])


@case(2)
def predict_npy_one_dimensional(d):
    np.save(d.tmp / "x.npy", np.zeros(7, np.float32))
    return Call(["predict", d.run, "--input", "x.npy"], ["x.npy"])


@case(2)
def predict_npy_three_dimensional(d):
    np.save(d.tmp / "x.npy", np.zeros((3, 10, 2), np.float32))
    return Call(["predict", d.run, "--input", "x.npy"], ["x.npy"])


@case(2)
def predict_csv_too_narrow(d):
    (d.tmp / "x.csv").write_text("1,2,3\n4,5,6\n")
    return Call(["predict", d.run, "--input", "x.csv"], ["x.csv", "10", "3"])


@case(2)
def predict_csv_too_wide(d):
    (d.tmp / "x.csv").write_text(",".join(["1"] * 14) + "\n")
    return Call(["predict", d.run, "--input", "x.csv"], ["x.csv", "10", "14"])


@case(2)
def predict_csv_with_ragged_rows(d):
    (d.tmp / "x.csv").write_text(",".join(["1"] * 10) + "\n" + ",".join(["1"] * 9) + "\n")
    return Call(["predict", d.run, "--input", "x.csv"], ["x.csv", "2"])


@case(2)
def predict_an_empty_csv(d):
    (d.tmp / "x.csv").write_text("")
    return Call(["predict", d.run, "--input", "x.csv"], ["x.csv"])


@case(2)
def predict_an_empty_npy(d):
    (d.tmp / "x.npy").write_bytes(b"")
    return Call(["predict", d.run, "--input", "x.npy"], ["x.npy"])


@case(2)
def predict_npy_of_text(d):
    np.save(d.tmp / "x.npy", np.array([["a"] * 10] * 2))
    return Call(["predict", d.run, "--input", "x.npy"], ["x.npy"])


@case(2)
def predict_npy_with_nan(d):
    x = np.zeros((4, 10), np.float32)
    x[3, 6] = np.nan
    np.save(d.tmp / "x.npy", x)
    return Call(["predict", d.run, "--input", "x.npy"], ["x.npy", "row 3", "column 6"])


@case(2)
def predict_npz_without_x(d):
    np.savez(d.tmp / "x.npz", a=np.zeros((4, 10), np.float32), b=np.zeros((4, 10), np.float32))
    return Call(["predict", d.run, "--input", "x.npz"], ["x.npz"])


@case(2)
def predict_an_input_folder(d):
    (d.tmp / "x.npy").mkdir()
    return Call(["predict", d.run, "--input", "x.npy"], ["x.npy"])


@case(2)
def predict_an_unknown_input_format(d):
    (d.tmp / "x.parquet").write_text("1,2\n")
    return Call(["predict", d.run, "--input", "x.parquet"], ["x.parquet"])


@case(2)
def predict_text_on_a_model_of_numbers(d):
    return Call(["predict", d.run, "--text", "a fine film"], ["--text"])


@case(2)
def predict_into_an_output_folder(d):
    np.save(d.tmp / "x.npy", np.zeros((3, 10), np.float32))
    (d.tmp / "out.csv").mkdir()
    return Call(["predict", d.run, "--input", "x.npy", "--output", "out.csv"], ["out.csv"])


@case(2)
def predict_into_a_folder_that_is_a_file(d):
    np.save(d.tmp / "x.npy", np.zeros((3, 10), np.float32))
    (d.tmp / "out").write_text("")
    return Call(["predict", d.run, "--input", "x.npy", "--output", "out/y.csv"], ["out/y.csv"])


@case(1, 2)
def predict_onto_a_full_disk(d):
    np.save(d.tmp / "x.npy", np.zeros((400, 10), np.float32))
    return Call(["predict", d.run, "--input", "x.npy", "--output", "y.csv"], ["y.csv"],
                prefix=("prlimit", "--fsize=1024"))


# ---- runs, compare, plot: folders of runs --------------------------------------------------------------------------
@case(2)
def runs_of_a_file(d):
    (d.tmp / "runs").write_text("")
    return Call(["runs", "runs"], ["runs"])


@case(0)
def runs_with_a_torn_history(d):
    (d.tmp / "runs").mkdir()
    shutil.move(d.run, d.tmp / "runs" / "run")
    (d.tmp / "runs" / "run" / "history.json").write_text('{"loss": [0.5, ')
    return Call(["runs", "runs"], ["history.json"])


@case(2)
def compare_with_a_missing_run(d):
    return Call(["compare", d.run, d.tmp / "nope"], ["nope"])


@case(2)
def compare_with_a_torn_history(d):
    (d.run / "history.json").write_text('{"loss": [0.5, ')
    return Call(["compare", d.run, d.trained.run], ["history.json"])


@case(2)
def compare_with_a_config_that_is_a_folder(d):
    (d.run / "config.yaml").unlink()
    (d.run / "config.yaml").mkdir()
    return Call(["compare", d.run, d.trained.run], ["config.yaml"])


@case(2)
def plot_with_a_history_of_strings(d):
    (d.run / "history.json").write_text('{"loss": ["a", "b", "c"]}')
    return Call(["plot", d.run, "-o", "p.png"], ["history.json"])


@case(2)
def plot_an_unknown_metric(d):
    return Call(["plot", d.run, "--metric", "recall", "-o", "p.png"], ["recall"])


@case(2)
def plot_into_a_folder_that_is_a_file(d):
    (d.tmp / "out").write_text("")
    return Call(["plot", d.run, "-o", "out/p.png"], ["out/p.png"])


@case(2)
def plot_to_an_unknown_format(d):
    return Call(["plot", d.run, "-o", "p.xyz"], ["p.xyz"])


@case(2)
def plot_into_a_read_only_run_as_a_file(d):
    (d.run / "plot.png").mkdir()
    return Call(["plot", d.run], ["plot.png"])


# ---- datasets, schema ---------------------------------------------------------------------------------------------
@case(2)
def datasets_show_an_unknown_name(d):
    return Call(["datasets", "show", "mnistt"], ["mnistt"])


@case(2)
def datasets_show_a_corrupted_file(d):
    (d.tmp / "data").mkdir()
    (d.tmp / "data" / "mnist.npz").write_bytes(b"PK\x03\x04 not a zip")
    return Call(["datasets", "show", "mnist"], ["mnist.npz"],
                env={"NNCTL_DATA_DIR": str(d.tmp / "data"), "NNCTL_DATASETS_CACHE": str(d.tmp / "cache")})


@case(0, 2)
def datasets_with_a_cache_that_is_a_file(d):
    (d.tmp / "cache").write_text("")
    return Call(["datasets"], [],
                env={"NNCTL_DATA_DIR": str(d.tmp / "none"), "NNCTL_DATASETS_CACHE": str(d.tmp / "cache")})


@case(1, 2)
def schema_onto_a_full_disk(d):
    return Call(["schema", ">", "/dev/full"], ["stdout"])


# ---- more, under slow -----------------------------------------------------------------------------------------------
@case(2, slow=True)
def resume_a_run_with_a_torn_manifest(d):
    (d.run / "manifest.json").write_text('{"status": "comp')
    return Call(["train", "--resume", d.run], ["manifest.json"])


@case(2, slow=True)
def resume_a_missing_run(d):
    return Call(["train", "--resume", d.tmp / "nope"], ["nope"])


@case(2, slow=True)
def resume_with_a_truncated_checkpoint(d):
    (d.run / "checkpoints" / "last.safetensors").write_bytes(b"\x10\x00")
    return Call(["train", "--resume", d.run, "--set", "epochs=5"], ["last.safetensors"])


@case(2, slow=True)
def evaluate_with_weights_in_a_link_loop(d):
    (d.run / "weights.safetensors").unlink()
    os.symlink("weights.safetensors", d.run / "weights.safetensors")
    return Call(["evaluate", d.run], ["weights.safetensors"])


@case(2, slow=True)
def train_on_a_broken_link_as_data(d):
    (d.tmp / "tiny.npz").unlink()
    os.symlink("nowhere.npz", d.tmp / "tiny.npz")
    return Call(["train", "tiny.yaml"], ["tiny.npz"])


@case(2, slow=True)
def predict_a_text_file_on_a_model_of_numbers(d):
    (d.tmp / "x.txt").write_text("a fine film\n")
    return Call(["predict", d.run, "--input", "x.txt"], ["x.txt"])


@case(2, slow=True)
def predict_npy_of_complex_numbers(d):
    np.save(d.tmp / "x.npy", np.zeros((3, 10), np.complex64))
    return Call(["predict", d.run, "--input", "x.npy"], ["x.npy"])


@case(2, slow=True)
def check_a_csv_with_a_missing_value(d):
    text = good_csv().splitlines()
    text[3] = "1.0,,3.0,4.0,1"
    csv_config(d, "\n".join(text) + "\n")
    return Call(["check", "tiny.yaml"], ["data.csv:4", "f1"])


@case(2, slow=True)
def datasets_show_an_index_out_of_range(d):
    (d.tmp / "data").mkdir()
    np.savez(d.tmp / "data" / "boston_housing.npz", x=np.zeros((11, 13)), y=np.arange(11.0))
    return Call(["datasets", "show", "boston_housing", "--index", "99"], ["--index 99"],
                env={"NNCTL_DATA_DIR": str(d.tmp / "data"), "NNCTL_DATASETS_CACHE": str(d.tmp / "cache")})


@case(2, slow=True)
def kfold_on_a_csv_of_one_row(d):
    csv_config(d, "a,b,y\n1,2,0\n")
    return Call(["kfold", "tiny.yaml", "--folds", "3"], ["data.validation.kfold"])


@case(1, 2, slow=True)
def kfold_with_a_full_disk(d):
    return Call(["kfold", "tiny.yaml", "--folds", "2", "--runs-dir", "runs"], ["runs/tiny", "File too large"],
                prefix=("prlimit", "--fsize=2048"))


@case(1, 2, slow=True)
def evaluate_onto_a_full_disk(d):
    return Call(["evaluate", d.run], ["metrics.json"], prefix=("prlimit", "--fsize=64"))


@pytest.mark.parametrize("command", [["runs", "runs"], ["schema"], ["datasets"]])
def test_a_closed_stdout_is_no_error(trained, command):
    """`nnctl runs >&-`: Python starts with sys.stdout None; the output goes nowhere, quietly."""
    done = subprocess.run([sys.executable, "-m", "nnctl", *command], cwd=trained.folder, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, timeout=60, close_fds=True,
                          preexec_fn=lambda: os.close(1))
    assert done.returncode == 0 and done.stderr == "", done.stderr


@pytest.mark.parametrize("make, codes", list(CASES.values()))
def test_bad_input_is_one_located_line(d, make, codes):
    call = make(d)
    if call.args[-2:] == [">", "/dev/full"]:  # stdout on a full device
        with open("/dev/full", "w") as full:
            done = subprocess.run([sys.executable, "-m", "nnctl", *call.args[:-2]], cwd=d.tmp, stdout=full,
                                  stderr=subprocess.PIPE, text=True, timeout=60)
        done.stdout = ""
    else:
        done = nnctl(call.args, d.tmp, call.env, call.prefix)
    output = done.stdout + done.stderr
    assert "Traceback" not in output and "Aborted!" not in output, output
    assert done.returncode in codes, output
    errors = [line for line in done.stderr.splitlines() if line.startswith(("error:", "Error:"))]  # Error: click's
    if 0 not in codes:
        assert errors, output
        assert "internal error" not in output, output
    for needle in call.needles:  # a tuple: any one of its spellings
        assert any(text in done.stderr for text in ((needle,) if isinstance(needle, str) else needle)), done.stderr
    assert len(done.stderr) < 2000, done.stderr
