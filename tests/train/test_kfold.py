"""K-fold cross-validation: fold folders, kfold.json against NumPy mean/std, fold seeds, and the `kfold` command."""

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import safetensors.numpy

from nnctl.config import load_config
from nnctl.train import kfold as kfold_module
from nnctl.train.kfold import format_mean_std, summarize, train_kfold
from tests.conftest import invoke, run_path

# 120 rows of 5 features, a 5-8-1 regression: three folds of three epochs train in well under a second.
REGRESSION_CONFIG = """\
name: reg
seed: 11
data:
  path: reg.npz
  validation: {validation}
model:
  layers:
    - {{type: dense, units: 8, activation: relu}}
    - {{type: dense, units: 1}}
loss: mse
optimizer: {{type: rmsprop, learning_rate: 0.01}}
metrics: [mae]
epochs: 3
batch_size: 8
"""
HISTORY_KEYS = {"loss", "mae", "val_loss", "val_mae", "epoch_time", "lr"}
ANSI = re.compile(r"\x1b\[|\r")


def write_regression(folder: Path, validation: str = "{kfold: 3}", rows: int = 120) -> Path:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 5)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0, 3.0]) + 0.1 * rng.normal(size=rows)).astype(np.float32)
    np.savez(folder / "reg.npz", x_train=x, y_train=y)
    config = folder / "reg.yaml"
    config.write_text(REGRESSION_CONFIG.format(validation=validation), encoding="utf-8")
    return config


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def forward(weights: dict, x: np.ndarray) -> np.ndarray:
    """The 5-8-1 model in NumPy, from its weights.safetensors."""
    hidden = np.maximum(x @ weights["dense/kernel"] + weights["dense/bias"], 0)
    return (hidden @ weights["dense_1/kernel"] + weights["dense_1/bias"])[:, 0]


@pytest.fixture(scope="module")
def folded(tmp_path_factory):
    """One 3-fold run of the regression config, with the seed each fold's model was built with."""
    folder = tmp_path_factory.mktemp("kfold")
    config = write_regression(folder)
    seeds = []
    build_model = kfold_module.build_model

    def recording_build_model(resolved, **options):
        seeds.append(resolved.config.seed)
        return build_model(resolved, **options)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kfold_module, "build_model", recording_build_model)
        result = train_kfold(load_config(config), runs_dir=folder / "runs")
    with np.load(folder / "reg.npz") as data:
        x, y = data["x_train"], data["y_train"]
    histories = [read_json(result.run.path / f"fold_{k}" / "history.json") for k in (1, 2, 3)]
    return SimpleNamespace(folder=folder, result=result, run=result.run.path, seeds=seeds, x=x, y=y,
                           histories=histories)


# ---- the run directory -----------------------------------------------------------------------------------
def test_one_folder_per_fold(folded):
    assert folded.result.status == "completed" and folded.result.error is None
    assert sorted(p.name for p in folded.run.iterdir() if p.name.startswith("fold_")) == ["fold_1", "fold_2",
                                                                                           "fold_3"]
    for k in (1, 2, 3):
        fold = folded.run / f"fold_{k}"
        assert {"history.json", "weights.safetensors", "metrics.json", "events.jsonl"} <= {p.name for p in
                                                                                           fold.iterdir()}
        history = folded.histories[k - 1]
        assert set(history) == HISTORY_KEYS and all(len(values) == 3 for values in history.values())
        assert all(np.isfinite(history[key]).all() for key in ("loss", "mae", "val_loss", "val_mae"))
        metrics = read_json(fold / "metrics.json")
        assert metrics["train"]["loss"] == history["loss"][-1]
        assert metrics["validation"]["mae"] == history["val_mae"][-1]
    assert folded.result.folds == folded.histories
    assert {"config.yaml", "manifest.json", "preprocessing.json", "kfold.json", "metrics.json"} <= {
        p.name for p in folded.run.iterdir()}


def test_manifest(folded):
    manifest = read_json(folded.run / "manifest.json")
    assert manifest["status"] == "completed" and manifest["kfold"] == 3 and manifest["folds_completed"] == 3
    assert manifest["seed"] == 11 and manifest["error"] is None and manifest["started"] <= manifest["ended"]
    assert set(manifest["phases"]) == {"load", "compile", "train", "validate", "write"}
    assert all(seconds >= 0 for seconds in manifest["phases"].values()) and manifest["phases"]["train"] > 0
    assert abs(manifest["compile_seconds"] - manifest["phases"]["compile"]) <= 0.001


def test_fold_k_validates_on_the_kth_contiguous_part(folded):
    """The last val_loss/val_mae of each fold are the NumPy MSE/MAE of its saved model on rows 40(k-1)..40k."""
    for k in (1, 2, 3):
        weights = safetensors.numpy.load_file(str(folded.run / f"fold_{k}" / "weights.safetensors"))
        part = slice(40 * (k - 1), 40 * k)
        error = forward(weights, folded.x[part]).astype(np.float64) - folded.y[part]
        history = folded.histories[k - 1]
        assert history["val_loss"][-1] == pytest.approx(np.mean(error ** 2), rel=1e-4)
        assert history["val_mae"][-1] == pytest.approx(np.mean(np.abs(error)), rel=1e-4)
        others = [slice(40 * (j - 1), 40 * j) for j in (1, 2, 3) if j != k]
        for other in others:
            elsewhere = forward(weights, folded.x[other]) - folded.y[other]
            assert np.mean(elsewhere ** 2) != pytest.approx(history["val_loss"][-1], rel=1e-4)


def test_each_fold_is_a_fresh_model_seeded_seed_plus_k(folded):
    assert folded.seeds == [11, 12, 13]
    weights = [safetensors.numpy.load_file(str(folded.run / f"fold_{k}" / "weights.safetensors")) for k in (1, 2, 3)]
    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert not np.array_equal(weights[a]["dense/kernel"], weights[b]["dense/kernel"])


# ---- kfold.json --------------------------------------------------------------------------------------------
def test_kfold_json_is_the_numpy_mean_and_std_of_the_folds(folded):
    summary = read_json(folded.run / "kfold.json")
    assert summary == folded.result.summary
    assert (summary["folds"], summary["epochs"]) == (3, 3)
    assert set(summary["per_epoch"]) == HISTORY_KEYS
    for key in HISTORY_KEYS:
        values = np.array([history[key] for history in folded.histories], dtype=np.float64)
        np.testing.assert_allclose(summary["per_epoch"][key]["mean"], values.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(summary["per_epoch"][key]["std"], values.std(axis=0, ddof=0), rtol=1e-12,
                                   atol=1e-15)
    assert set(summary["final"]) == {"loss", "mae", "val_loss", "val_mae"}
    for key, stats in summary["final"].items():
        last = [history[key][-1] for history in folded.histories]
        assert stats["mean"] == pytest.approx(np.mean(last), rel=1e-12)
        assert stats["std"] == pytest.approx(np.std(last), rel=1e-12)


def test_best_is_the_epoch_of_the_lowest_mean_validation_error(folded):
    summary = read_json(folded.run / "kfold.json")
    assert set(summary["best"]) == {"val_loss", "val_mae"}
    for key in ("val_loss", "val_mae"):
        mean = np.mean([history[key] for history in folded.histories], axis=0)
        std = np.std([history[key] for history in folded.histories], axis=0)
        best = int(np.argmin(mean))
        assert summary["best"][key]["epoch"] == best + 1
        assert summary["best"][key]["mean"] == pytest.approx(mean[best], rel=1e-12)
        assert summary["best"][key]["std"] == pytest.approx(std[best], rel=1e-12, abs=1e-15)
    assert read_json(folded.run / "metrics.json") == {"kfold": summary["final"], "best": summary["best"],
                                                      "folds": 3, "folds_planned": 3}


def test_summarize_by_hand():
    histories = [
        {"loss": [4.0, 2.0, 1.0], "val_loss": [5.0, 3.0, 4.0], "val_accuracy": [0.5, 0.9, 0.7], "lr": [0.1] * 3},
        {"loss": [6.0, 2.0], "val_loss": [7.0, 1.0], "val_accuracy": [0.6, 0.7], "lr": [0.1] * 2},  # stopped early
    ]
    summary = summarize(histories)
    assert (summary["folds"], summary["epochs"]) == (2, 2)  # the epochs every fold reached
    assert summary["per_epoch"]["loss"] == {"mean": [5.0, 2.0], "std": [1.0, 0.0]}
    assert summary["per_epoch"]["val_loss"] == {"mean": [6.0, 2.0], "std": [1.0, 1.0]}
    assert summary["final"] == {"loss": {"mean": 2.0, "std": 0.0}, "val_loss": {"mean": 2.0, "std": 1.0},
                                "val_accuracy": {"mean": pytest.approx(0.8), "std": pytest.approx(0.1)}}
    assert summary["best"]["val_loss"] == {"epoch": 2, "mean": 2.0, "std": 1.0}
    assert summary["best"]["val_accuracy"]["epoch"] == 2  # higher is better for accuracy
    assert summary["best"]["val_accuracy"]["mean"] == pytest.approx(0.8)
    assert format_mean_std({"mean": 2.0, "std": 1.0}) == "2.0000 ± 1.0000"
    assert format_mean_std({"mean": float("nan"), "std": 0.0}) == "nan"


# ---- the command line ----------------------------------------------------------------------------------------


def test_kfold_command_folds_option_overrides_the_config(tmp_path):
    config = write_regression(tmp_path)
    result = invoke("kfold", config, "--folds", "2", "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    run = run_path(result.stdout)
    assert sorted(p.name for p in run.iterdir() if p.name.startswith("fold_")) == ["fold_1", "fold_2"]
    assert read_json(run / "manifest.json")["kfold"] == 2 and read_json(run / "kfold.json")["folds"] == 2
    out = result.stdout
    assert not ANSI.search(out)  # not a terminal: no live display, no colours
    lines = out.splitlines()
    assert re.match(r"^loading data … [\d.]+ s$", lines[0]), lines[0]
    # One line per fold, when it ends (the fold's number is not printed a second time when it begins).
    assert re.match(r"^fold 1/2 - 3 epochs - loss: \d+\.\d{4} - mae: \d+\.\d{4} - val_loss: \d+\.\d{4} - "
                    r"val_mae: \d+\.\d{4}$", lines[1]), lines[1]
    assert lines[2].startswith("fold 2/2 - 3 epochs - ") and lines[3].strip() == "2-fold cross-validation, 3 epochs"
    assert sum(line.startswith("fold 1/2") for line in lines) == 1
    assert "2-fold cross-validation, 3 epochs" in out
    summary = read_json(run / "kfold.json")
    val_mae = next(line for line in lines if "val_mae" in line and "±" in line)
    assert format_mean_std(summary["final"]["val_mae"]) in val_mae
    assert f"{summary['best']['val_mae']['mean']:.4f} (epoch {summary['best']['val_mae']['epoch']})" in val_mae
    assert result.stderr == ""


def test_kfold_command_quiet(tmp_path):
    config = write_regression(tmp_path)
    result = invoke("kfold", config, "-k", "2", "--quiet", "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [f"run: {run_path(result.stdout)}"]


def test_train_on_a_kfold_config_runs_kfold(tmp_path):
    config = write_regression(tmp_path)
    result = invoke("train", config, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    run = run_path(result.stdout)
    assert [p.name for p in sorted(run.glob("fold_*"))] == ["fold_1", "fold_2", "fold_3"]
    assert read_json(run / "kfold.json")["folds"] == 3 and read_json(run / "manifest.json")["status"] == "completed"
    assert "3-fold cross-validation, 3 epochs" in result.stdout and "± " in result.stdout
    assert not ANSI.search(result.stdout)
    assert len(list((tmp_path / "runs" / "reg").glob("2*"))) == 1  # one run directory, not a K-fold plus a train


def test_kfold_command_without_a_fold_count_uses_the_books_four_folds(tmp_path):
    config = write_regression(tmp_path, validation="{split: 0.2}")
    result = invoke("kfold", config, "--runs-dir", tmp_path / "runs", "-q")
    assert result.exit_code == 0, result.output + result.stderr
    run = run_path(result.stdout)
    assert read_json(run / "kfold.json")["folds"] == 4 and read_json(run / "manifest.json")["kfold"] == 4
    assert [p.name for p in sorted(run.glob("fold_*"))] == ["fold_1", "fold_2", "fold_3", "fold_4"]


def test_kfold_command_with_folds_on_a_split_config(tmp_path):
    config = write_regression(tmp_path, validation="{split: 0.2}")
    result = invoke("kfold", config, "--folds", "3", "--quiet", "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    assert read_json(run_path(result.stdout) / "kfold.json")["folds"] == 3


def test_kfold_command_refuses_one_fold(tmp_path):
    config = write_regression(tmp_path)
    result = invoke("kfold", config, "--folds", "1", "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2 and "--folds" in result.stderr


@pytest.mark.parametrize("command, validation, args", [("kfold", "{kfold: 3}", ["--folds", "200"]),
                                                       ("train", "{kfold: 200}", [])])
def test_too_many_folds_is_refused_before_a_run_directory_is_made(tmp_path, command, validation, args):
    config = write_regression(tmp_path, validation=validation)
    result = invoke(command, config, *args, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2 and "folds of 120 training rows" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_too_many_folds_from_the_option_names_the_option(tmp_path):
    config = write_regression(tmp_path)
    result = invoke("kfold", config, "--folds", "200", "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2 and "--folds" in result.stderr



# ---- the lock and file-system errors --------------------------------------------------------------------------
def test_the_kfold_run_is_locked_while_its_folds_train(tmp_path, monkeypatch):
    from nnctl.runs import lock

    config = write_regression(tmp_path)
    held = []
    fit_into = kfold_module.fit_into

    def watching_fit_into(folder, *args, **options):
        held.append(sorted(lock._held))
        return fit_into(folder, *args, **options)

    monkeypatch.setattr(kfold_module, "fit_into", watching_fit_into)
    result = train_kfold(load_config(config), runs_dir=tmp_path / "runs", folds=2)
    assert held == [[str(result.run.path.resolve())]] * 2 and lock._held == {}


def test_a_full_disk_in_a_fold_fails_the_kfold_run_in_one_line(tmp_path, monkeypatch):
    import errno
    import os

    from nnctl.runs import rundir

    config = write_regression(tmp_path)
    real = rundir._replace_with

    def full_in_fold_2(path, data):
        if "fold_2" in str(path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, data)

    monkeypatch.setattr(rundir, "_replace_with", full_in_fold_2)
    result = invoke("kfold", config, "--folds", "3", "--runs-dir", tmp_path / "runs", "-q")
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "fold_2/checkpoints/last.safetensors: No space left on device" in errors[0]
    assert "failed in fold 2 of 3: the figures are of 1 of 3 folds only" in result.stderr
    assert "no checkpoint was written" in errors[0] and "--resume" not in errors[0]
    run = run_path(result.stdout)
    manifest = read_json(run / "manifest.json")
    assert manifest["status"] == "failed" and manifest["folds_completed"] == 1


def test_a_kfold_run_interrupted_in_fold_2_says_1_of_4_folds_everywhere(tmp_path, monkeypatch):
    from nnctl.runs import browse, plot
    from nnctl.train import session
    from nnctl.train.session_callbacks import InterruptHandler

    started = []

    class CtrlCInFold2(InterruptHandler):
        def on_train_begin(self, logs=None):
            started.append(self)
            super().on_train_begin(logs)

        def on_epoch_end(self, epoch, logs=None):
            if len(started) == 2 and epoch == 1:
                self._handle(None, None)  # Ctrl-C after fold 2's second epoch

    monkeypatch.setattr(session, "InterruptHandler", CtrlCInFold2)
    config = write_regression(tmp_path, validation="{kfold: 4}")
    result = invoke("kfold", config, "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 130, result.output + result.stderr
    assert "interrupted in fold 2 of 4: the figures are of 1 of 4 folds only" in result.stderr
    assert "partial cross-validation: 1 of 4 folds, 3 epochs" in result.stdout
    assert "4-fold" not in result.stdout
    run = run_path(result.stdout)
    summary = read_json(run / "kfold.json")
    assert (summary["folds"], summary["folds_planned"]) == (1, 4)  # fold 2's first epochs are not a fold
    metrics = read_json(run / "metrics.json")
    assert (metrics["folds"], metrics["folds_planned"]) == (1, 4)
    listed = invoke("runs", tmp_path / "runs", "--json")
    row = json.loads(listed.stdout)[0]
    assert (row["status"], row["folds_label"]) == ("interrupted", "1 of 4 folds")
    table = invoke("runs", tmp_path / "runs")
    assert "reg (1 of 4 folds)" in table.stdout and "4-fold" not in table.stdout
    compared = browse.compare_runs([run])
    assert dict(compared["rows"])["status"] == ["interrupted (1 of 4 folds)"]
    record = browse.open_run(run)
    assert plot._legend_label("reg", "validation", "mae", record, 1) == "Validation mae (mean ± std, 1 of 4 folds)"
    evaluated = invoke("evaluate", run, "--split", "validation", "--json")
    assert evaluated.exit_code == 0 and json.loads(evaluated.stdout)["folds"] == 1, evaluated.output
    assert "these figures are of 1 of 4 folds only" in evaluated.stderr


def test_evaluate_on_a_kfold_run_evaluates_every_folds_model(folded, tmp_path):
    from nnctl.data.files import load_data
    from nnctl.runs.records import load_run_config
    from nnctl.train.inference import load_run

    import shutil

    run = shutil.copytree(folded.run, tmp_path / "run")  # evaluate writes metrics.json: leave the fixture's alone
    result = invoke("evaluate", run, "--split", "validation", "--json")
    assert result.exit_code == 0, result.output + result.stderr
    report = json.loads(result.stdout)
    assert (report["folds"], report["folds_planned"]) == (3, 3) and len(report["per_fold"]) == 3
    resolved = load_run_config(run)
    for fold, figures in enumerate(report["per_fold"]):
        # By hand: fold k's model on fold k's held-out part, transformed as that fold was trained.
        model = load_run(run, f"fold_{fold + 1}/weights.safetensors").model
        x, y = load_data(resolved, fold=fold, folds=3).validation
        assert figures["loss"] == pytest.approx(model.evaluate(x, y, batch_size=8)["loss"], rel=1e-6)
        # ... which is the fold's last validation figure of training.
        assert figures["mae"] == pytest.approx(folded.histories[fold]["val_mae"][-1], rel=1e-4)
    maes = [figures["mae"] for figures in report["per_fold"]]
    assert report["mean"]["mae"] == pytest.approx(np.mean(maes)) and report["std"]["mae"] == pytest.approx(np.std(maes))
    saved = read_json(run / "metrics.json")
    assert saved["validation"]["mae"] == pytest.approx(np.mean(maes)) and saved["validation"]["samples"] == 120
    assert saved["validation std"]["mae"] == pytest.approx(np.std(maes))
    table = invoke("evaluate", run, "--split", "validation")
    assert table.exit_code == 0 and "3-fold" in table.stdout and "±" in table.stdout
    # One fold named with --weights: its own held-out part and transforms, the same figures as above.
    second = invoke("evaluate", run, "--split", "validation", "--weights", "fold_2/weights.safetensors", "--json")
    assert second.exit_code == 0, second.output + second.stderr
    assert json.loads(second.stdout)["loss"] == pytest.approx(report["per_fold"][1]["loss"], rel=1e-6)
    assert json.loads(second.stdout)["samples"] == report["per_fold"][1]["samples"]


# ---- predict on a K-fold run: the mean of the fold models' outputs ------------------------------------------
def _predicted(run, inputs, out, *args):
    result = invoke("predict", run, "--input", inputs, "--output", out, *args)
    assert result.exit_code == 0, result.output + result.stderr
    return np.load(out), result


def test_predict_on_a_kfold_run_averages_the_fold_models_outputs(folded, tmp_path):
    x = np.random.default_rng(5).normal(size=(7, 5)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    averaged, result = _predicted(folded.run, tmp_path / "x.npy", tmp_path / "mean.npy")
    assert "note: averaged the outputs of 3 fold models (fold_1 … fold_3)" in result.stderr
    alone = [_predicted(folded.run, tmp_path / "x.npy", tmp_path / f"{k}.npy",
                        "--weights", f"fold_{k}/weights.safetensors")[0] for k in (1, 2, 3)]
    assert averaged.shape == alone[0].shape == (7, 1)
    np.testing.assert_allclose(averaged, np.mean(alone, axis=0), rtol=1e-6)
    by_hand = [forward(safetensors.numpy.load_file(folded.run / f"fold_{k}" / "weights.safetensors"), x)
               for k in (1, 2, 3)]  # no transforms in this config: the raw inputs go in
    np.testing.assert_allclose(averaged[:, 0], np.mean(by_hand, axis=0), rtol=1e-4, atol=1e-5)
    assert len({float(a[0, 0]) for a in alone}) == 3  # three different models, not one counted thrice
    one = invoke("predict", folded.run, "--input", tmp_path / "x.npy", "--weights", "fold_2/weights.safetensors")
    assert one.exit_code == 0 and "averaged" not in one.stderr
    table = invoke("predict", folded.run, "--input", tmp_path / "x.npy")
    assert table.exit_code == 0 and f"{averaged[0, 0]:.4f}" in table.stdout


def test_predict_on_a_partial_kfold_run_averages_the_finished_folds(folded, tmp_path):
    import shutil

    run = shutil.copytree(folded.run, tmp_path / "run")
    manifest = read_json(run / "manifest.json")
    manifest.update(status="interrupted", folds_completed=2)
    (run / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    np.save(tmp_path / "x.npy", folded.x[:4])
    averaged, result = _predicted(run, tmp_path / "x.npy", tmp_path / "mean.npy")
    assert "note: averaged the outputs of 2 of 3 folds (fold_1 … fold_2): the run stopped early" in result.stderr
    alone = [_predicted(run, tmp_path / "x.npy", tmp_path / f"{k}.npy",
                        "--weights", f"fold_{k}/weights.safetensors")[0] for k in (1, 2)]
    np.testing.assert_allclose(averaged, np.mean(alone, axis=0), rtol=1e-6)
    manifest.update(folds_completed=0)
    (run / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    refused = invoke("predict", run, "--input", tmp_path / "x.npy")
    assert refused.exit_code == 2 and "no fold finished: there is no model to predict with" in refused.stderr


def test_predict_on_a_kfold_run_uses_each_folds_own_transforms(tmp_path):
    config = write_regression(tmp_path, validation="{kfold: 3}\n  transforms: [standardize]")
    trained = invoke("kfold", config, "--runs-dir", tmp_path / "runs", "-q")
    assert trained.exit_code == 0, trained.output + trained.stderr
    run = run_path(trained.stdout)
    x = np.random.default_rng(6).normal(loc=2.0, scale=3.0, size=(5, 5)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    averaged, _ = _predicted(run, tmp_path / "x.npy", tmp_path / "mean.npy")
    raw = np.load(tmp_path / "reg.npz")["x_train"]
    by_hand, whole = [], (x - raw.mean(axis=0)) / raw.std(axis=0)
    for fold in range(3):  # fold k's model on inputs standardized with fold k's training part's mean and std
        part = np.delete(raw, np.s_[40 * fold:40 * (fold + 1)], axis=0)
        scaled = (x - part.mean(axis=0)) / part.std(axis=0)
        by_hand.append(forward(safetensors.numpy.load_file(run / f"fold_{fold + 1}" / "weights.safetensors"), scaled))
    np.testing.assert_allclose(averaged[:, 0], np.mean(by_hand, axis=0), rtol=1e-3, atol=1e-4)
    on_whole = [forward(safetensors.numpy.load_file(run / f"fold_{k}" / "weights.safetensors"), whole)
                for k in (1, 2, 3)]
    assert not np.allclose(averaged[:, 0], np.mean(on_whole, axis=0), rtol=1e-3)  # not the whole data's transforms
    alone = [_predicted(run, tmp_path / "x.npy", tmp_path / f"{k}.npy", "--weights", f"fold_{k}/weights.safetensors")[0]
             for k in (1, 2, 3)]  # one fold's model alone is given its own fold's transforms too
    np.testing.assert_allclose(alone[1][:, 0], by_hand[1], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(averaged, np.mean(alone, axis=0), rtol=1e-6)
    # Each fold's fitted transforms are in its folder: predict needs no training data ...
    (tmp_path / "reg.npz").rename(tmp_path / "moved.npz")
    np.testing.assert_allclose(_predicted(run, tmp_path / "x.npy", tmp_path / "m2.npy")[0], averaged, rtol=1e-6)
    # ... a run from before they were saved fits them again on the fold's training part, or says what to do.
    for k in (1, 2, 3):
        (run / f"fold_{k}" / "preprocessing.json").unlink()
    refused = invoke("predict", run, "--input", tmp_path / "x.npy")
    assert refused.exit_code == 2 and "fold 1's transforms were fitted on its own training part" in refused.stderr
    assert "restore the data, or train the config again" in refused.stderr and "reg.npz" in refused.stderr
    alone = invoke("predict", run, "--input", tmp_path / "x.npy", "--weights", "fold_2/weights.safetensors")
    assert alone.exit_code == 2 and "fold 2's transforms were fitted" in alone.stderr  # not the whole data's
    (tmp_path / "moved.npz").rename(tmp_path / "reg.npz")
    np.testing.assert_allclose(_predicted(run, tmp_path / "x.npy", tmp_path / "m3.npy")[0], averaged, rtol=1e-6)


def test_predict_text_on_a_kfold_text_model_averages_the_folds(keras_data_dir, tmp_path):
    from tests.test_cli_data import TEXT_CONFIG, TEXTS

    config = tmp_path / "text.yaml"
    config.write_text(TEXT_CONFIG.replace("  transforms: [multi_hot]", "  transforms: [multi_hot]\n"
                                          "  validation: {kfold: 2}"), encoding="utf-8")
    trained = invoke("kfold", config, "--runs-dir", tmp_path / "runs", "-q")
    assert trained.exit_code == 0, trained.output + trained.stderr
    run = run_path(trained.stdout)
    texts = [arg for text in TEXTS for arg in ("--text", text)]
    result = invoke("predict", run, *texts, "--output", tmp_path / "mean.npy")
    assert result.exit_code == 0, result.output + result.stderr
    assert "note: averaged the outputs of 2 fold models (fold_1 … fold_2)" in result.stderr
    alone = []
    for k in (1, 2):
        one = invoke("predict", run, *texts, "--weights", f"fold_{k}/weights.safetensors", "--output",
                     tmp_path / f"{k}.npy")
        assert one.exit_code == 0, one.output + one.stderr
        alone.append(np.load(tmp_path / f"{k}.npy"))
    averaged = np.load(tmp_path / "mean.npy")
    assert averaged.shape == (3, 1) and np.all((averaged > 0) & (averaged < 1))  # a mean of probabilities
    np.testing.assert_allclose(averaged, np.mean(alone, axis=0), rtol=1e-6)
    table = invoke("predict", run, *texts)
    assert table.exit_code == 0 and ("positive" in table.stdout or "negative" in table.stdout), table.output
