"""`nnctl plot`: the figure's panels, curves, legends and K-fold bands, the image it writes, and its errors."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from datetime import datetime
from types import SimpleNamespace

import pytest

from nnctl.runs.browse import read_run
from nnctl.runs.plot import make_figure, smooth_curve
from tests.conftest import invoke, run_path
from tests.runs.test_browse import NO_VALIDATION, write_run

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
needs_matplotlib = pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                                      reason="the `plot` extra (matplotlib) is not installed")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, make_npz, tiny_config_text):
    """Two real runs of the tiny config (same name) and a 2-fold run."""
    folder = tmp_path_factory.mktemp("plot")
    make_npz(folder / "tiny.npz")
    config = folder / "tiny.yaml"
    config.write_text(tiny_config_text, encoding="utf-8")
    made = []
    for args in (["train"], ["train", "--set", "epochs=4"], ["kfold", "--folds", "2", "--set", "name=tiny_cv"]):
        result = invoke(args[0], config, "--runs-dir", folder / "runs", "--quiet", *args[1:])
        assert result.exit_code == 0, result.output
        made.append(run_path(result.stdout))
    return SimpleNamespace(first=made[0], second=made[1], kfold=made[2])


def legend_texts(legend) -> list[str]:
    return [text.get_text() for text in legend.get_texts()]


@needs_matplotlib
def test_one_run_is_the_books_two_panels(trained):
    record = read_run(trained.first)
    figure = make_figure([record])
    loss, accuracy = figure.axes
    assert loss.get_title() == "Training and validation loss" and loss.get_xlabel() == "Epochs"
    assert accuracy.get_title() == "Training and validation accuracy"
    assert legend_texts(loss.get_legend()) == ["Training loss", "Validation loss"]
    assert legend_texts(accuracy.get_legend()) == ["Training accuracy", "Validation accuracy"]
    training, validation = loss.get_lines()
    assert list(training.get_xdata()) == [1, 2, 3]  # epochs count from 1
    assert list(training.get_ydata()) == record.history["loss"] and training.get_marker() == "o"
    assert list(validation.get_ydata()) == record.history["val_loss"] and validation.get_linestyle() == "-"
    assert not figure.legends and not loss.collections  # no shared legend, no band


@needs_matplotlib
def test_plot_writes_a_png_into_the_run(trained):
    result = invoke("plot", trained.first)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"plot: {trained.first / 'plot.png'}\n"
    assert (trained.first / "plot.png").read_bytes().startswith(PNG_SIGNATURE)


@needs_matplotlib
def test_several_runs_overlaid_with_a_kfold_band(trained, tmp_path, monkeypatch):
    records = [read_run(path) for path in (trained.first, trained.second, trained.kfold)]
    figure = make_figure(records)
    assert len(figure.axes) == 2 and [axes.get_legend() for axes in figure.axes] == [None, None]
    [legend] = figure.legends  # one legend for both panels, below them
    stamps = trained.first.name, trained.second.name
    assert legend_texts(legend) == [f"tiny/{stamps[0]} training", f"tiny/{stamps[0]} validation",
                                    f"tiny/{stamps[1]} training", f"tiny/{stamps[1]} validation",
                                    "tiny_cv training (mean ± std, 2 folds)",
                                    "tiny_cv validation (mean ± std, 2 folds)"]
    cv = records[2]
    for axes, key in zip(figure.axes, ("val_loss", "val_accuracy")):
        lines = axes.get_lines()
        assert [len(line.get_xdata()) for line in lines] == [3, 3, 4, 4, 3, 3]
        assert len({line.get_color() for line in lines}) == 3  # a colour per run
        train_band, val_band = axes.collections  # the K-fold run's mean ± std, training and validation
        heights = val_band.get_paths()[0].vertices[:, 1]
        assert heights.min() == pytest.approx(min(m - s for m, s in zip(cv.history[key], cv.spread[key])))
        assert heights.max() == pytest.approx(max(m + s for m, s in zip(cv.history[key], cv.spread[key])))
    monkeypatch.chdir(tmp_path)
    result = invoke("plot", trained.first, trained.second, trained.kfold)
    assert result.exit_code == 0, result.output
    assert result.stdout == "plot: plot.png\n" and (tmp_path / "plot.png").read_bytes().startswith(PNG_SIGNATURE)


@needs_matplotlib
@pytest.mark.parametrize("metric, title", [("loss", "Training and validation loss"),
                                           ("val_loss", "Training and validation loss"), ("lr", "Learning rate"),
                                           ("val_acc", "Training and validation accuracy"),
                                           ("acc", "Training and validation accuracy")])
def test_one_metric(trained, metric, title):
    figure = make_figure([read_run(trained.second)], metric)
    [axes] = figure.axes
    assert axes.get_title() == title
    assert len(axes.get_lines()) == (1 if metric == "lr" else 2)  # lr has no validation curve


@needs_matplotlib
def test_a_run_without_validation_has_truthful_panels(tmp_path):
    run = write_run(tmp_path / "runs", "boston_all", NO_VALIDATION, test={"loss": 11.0, "mae": 2.4})
    loss, mae = make_figure([read_run(run.path)]).axes
    assert loss.get_title() == "Training loss" and mae.get_title() == "Training mae"
    assert legend_texts(loss.get_legend()) == ["Training loss"] and len(mae.get_lines()) == 1
    assert make_figure([read_run(run.path)], "val_mae").axes[0].get_title() == "Training mae"


def test_smooth_curve_is_the_books_moving_average():
    assert smooth_curve([1.0, 2.0, None, 4.0], 0.5) == [1.0, 1.5, None, 2.75]
    assert smooth_curve([3.0, 1.0], 0.0) == [3.0, 1.0]


@needs_matplotlib
def test_the_books_figure_3_10_smoothed_from_epoch_11(tmp_path):
    values = [10.0 - 0.1 * epoch for epoch in range(30)]
    history = {"loss": values, "mae": values, "val_loss": values, "val_mae": values}
    run = write_run(tmp_path / "runs", "boston_cv", history)
    [axes] = make_figure([read_run(run.path)], "val_mae", smooth=0.9, skip=10).axes
    assert axes.get_title() == "Training and validation mae (smoothed 0.9, from epoch 11)"
    training, validation = axes.get_lines()
    assert list(validation.get_xdata()) == list(range(11, 31))
    assert list(validation.get_ydata()) == pytest.approx(smooth_curve(values[10:], 0.9))
    result = invoke("plot", run.path, "--metric", "val_mae", "--smooth", "0.9", "--skip", "10")
    assert result.exit_code == 0, result.output
    for args, message in ((["--smooth", "1"], "error: --smooth must be in [0, 1)"),
                          (["--skip", "30"], "error: --skip 30 leaves nothing to plot: the longest run has 30")):
        wrong = invoke("plot", run.path, *args)
        assert wrong.exit_code == 2 and wrong.stderr.startswith(message), wrong.output


@needs_matplotlib
def test_output_file_and_format(trained, tmp_path):
    result = invoke("plot", trained.kfold, "--metric", "accuracy", "-o", tmp_path / "cv.svg")
    assert result.exit_code == 0, result.output
    assert b"<svg" in (tmp_path / "cv.svg").read_bytes()[:500]
    wrong = invoke("plot", trained.kfold, "-o", tmp_path / "cv.docx")
    assert wrong.exit_code == 2
    assert wrong.stderr.startswith(f"error: {tmp_path / 'cv.docx'}: cannot write a .docx image (allowed: ")


@needs_matplotlib
def test_an_unknown_metric_lists_the_available_ones(trained):
    result = invoke("plot", trained.first, "--metric", "acuracy")
    assert result.exit_code == 2
    assert result.stderr == ("error: unknown metric 'acuracy' — did you mean 'accuracy'? "
                             "(allowed: accuracy, epoch_time, loss, lr)\n")


@needs_matplotlib
def test_errors_for_what_is_not_a_run_or_has_no_epoch(trained, tmp_path):
    not_a_run = invoke("plot", tmp_path)
    assert not_a_run.exit_code == 2
    assert not_a_run.stderr == f"error: {tmp_path} is not a run directory (no manifest.json)\n"
    from nnctl.runs import RunDirectory

    fresh = RunDirectory.create(tmp_path / "runs", "fresh", now=datetime(2024, 5, 13, 9, 30, 5))
    fresh.update_manifest(status="running", name="fresh")
    empty = invoke("plot", fresh.path)
    assert empty.exit_code == 2 and empty.stderr == f"error: nothing to plot: no epoch has finished in {fresh.path}\n"


def test_without_matplotlib_the_message_names_the_extra(trained, monkeypatch):
    for name in [name for name in sys.modules if name == "matplotlib" or name.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)  # `import matplotlib…` now raises ImportError
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = invoke("plot", trained.first)
    assert result.exit_code == 2
    assert result.stderr == "error: plotting needs matplotlib: pip install 'nnctl[plot]'\n"
    assert "Traceback" not in result.output


def test_nothing_imports_matplotlib_before_a_figure_is_drawn():
    code = ("import sys, nnctl.cli, nnctl.runs.browse, nnctl.runs.plot; "
            "assert 'matplotlib' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
