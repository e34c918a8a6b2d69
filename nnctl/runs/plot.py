"""The book's figure for one or more runs: training vs validation curves per epoch, one panel per metric.

matplotlib is optional (`pip install 'nnctl[plot]'`); figures are drawn on its Agg canvas, never through pyplot,
so nothing opens a window or shares global state.
"""

from __future__ import annotations

import io
from pathlib import Path

from nnctl.errors import NnctlError, UnknownNameError
from nnctl.runs.browse import NOT_METRICS, RunRecord, main_metric, open_run, run_labels
from nnctl.runs.display import display_path
from nnctl.runs.rundir import atomic_write_bytes

INSTALL_HINT = "plotting needs matplotlib: pip install 'nnctl[plot]'"


def _figure_class():
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise NnctlError(INSTALL_HINT) from None
    return Figure


def available_metrics(records: list[RunRecord]) -> list[str]:
    """Every plottable name in the runs' histories, without its `val_` prefix: loss, accuracy, …, lr."""
    names = (key.removeprefix("val_") for record in records for key in record.history)
    return list(dict.fromkeys(names))


def panels(records: list[RunRecord], metric: str | None = None) -> list[str]:
    """The metrics to draw: `metric` alone, else the loss and the main metric (as the book shows loss and accuracy)."""
    available = available_metrics(records)
    if not available:
        raise NnctlError("nothing to plot: no epoch has finished in "
                         + ", ".join(display_path(r.path) for r in records))
    if metric is not None:
        name = _spelled_as(metric.removeprefix("val_") if metric not in available else metric, available)
        if name is None:
            raise UnknownNameError("metric", metric, available)
        return [name]
    outputs = _output_metrics(records[0].history)
    if outputs:  # several outputs: the total loss and each output's first metric (else its loss)
        return ["loss"] + outputs
    mains = [_main_name(record.history) for record in records]
    extra = [name for name in mains if name and name != "loss"]
    return ["loss"] + extra[:1] if "loss" in available else extra[:1]


def _output_metrics(history: dict) -> list[str]:
    """A several-output run's panels besides the loss: per output (its `<output>_loss` key), its first metric."""
    keys = [key for key in history if not key.startswith("val_") and key not in NOT_METRICS]
    outputs = [key.removesuffix("_loss") for key in keys if key.endswith("_loss") and key != "loss"]
    return [next((key for key in keys if key.startswith(f"{name}_") and key != f"{name}_loss"), f"{name}_loss")
            for name in outputs]


def _main_name(history: dict) -> str | None:
    """The metric a run is judged by, without `val_`: a run without validation data is judged by its first
    training metric, as its test figure is."""
    judged = main_metric(history)
    if judged and judged != "val_loss":
        return judged.removeprefix("val_")
    trained = [key for key in history if not key.startswith("val_") and key not in ("loss", *NOT_METRICS)]
    return trained[0] if trained and not judged else "loss"


def _spelled_as(name: str, available: list[str]) -> str | None:
    """The history's spelling of the metric `name`: itself, or another Keras spelling of the same metric
    (`acc` for `accuracy`, `mae` for `mean_absolute_error`), since a history keeps the config's spelling."""
    if name in available:
        return name
    from nnctl.nn.metrics import METRICS

    def canonical(spelling):
        return METRICS.aliases.get(spelling, spelling)
    return next((key for key in available if canonical(key) == canonical(name)), None)


def smooth_curve(values: list, factor: float) -> list:
    """The book's exponential moving average (each point `factor` of the previous smoothed point plus
    1 - `factor` of itself); a missing value (None) stays a gap and does not move the average."""
    smoothed, previous = [], None
    for value in values:
        if value is not None:
            previous = value if previous is None else previous * factor + value * (1 - factor)
        smoothed.append(None if value is None else previous)
    return smoothed


def _title(name: str, validated: bool) -> str:
    if name in TITLES:
        return TITLES[name]
    return f"Training and validation {name}" if validated else f"Training {name}"


TITLES = {"lr": "Learning rate", "epoch_time": "Time per epoch (s)"}  # history keys that have no validation twin


def make_figure(records: list[RunRecord], metric: str | None = None, smooth: float = 0.0, skip: int = 0):
    """A matplotlib Figure: one panel per metric of `panels`, each run's training curve as dots and validation
    curve as a line, in one colour per run; a K-fold run's curves are means with a ± std band. One run has a
    legend per panel (as in the book); several share one legend below the panels, where it hides no curve.
    `smooth` (in [0, 1)) draws the book's moving average of each curve, `skip` leaves out the first epochs: the
    book's figure 3.10 is `smooth=0.9, skip=10` on a K-fold run's validation MAE."""
    Figure = _figure_class()
    from matplotlib.ticker import MaxNLocator

    if not 0 <= smooth < 1:
        raise NnctlError(f"--smooth must be in [0, 1) (0: no smoothing, 0.9: the book's), got {smooth:g}")
    if skip < 0:
        raise NnctlError(f"--skip must be 0 or more epochs, got {skip}")
    names = panels(records, metric)
    longest = max(len(record.history.get(name, [])) for record in records for name in names)
    if skip >= longest:
        raise NnctlError(f"--skip {skip} leaves nothing to plot: the longest run has {longest} epochs")
    labels = run_labels(records)
    legend_height = 0.3 * len(records) if len(records) > 1 else 0.0  # the shared legend's rows, below the panels
    figure = Figure(figsize=(6 * len(names), 4.5 + legend_height), layout="constrained")
    for name, axes in zip(names, figure.subplots(1, len(names), squeeze=False)[0]):
        validated = any(record.history.get(f"val_{name}") for record in records)
        for index, (record, label) in enumerate(zip(records, labels)):
            colour = f"C{index % 10}"
            for key, part, style in ((name, "training", {"marker": "o", "linestyle": "none", "markersize": 4}),
                                     (f"val_{name}", "validation", {"linestyle": "-"})):
                _draw_curve(axes, record, key, _legend_label(label, part, name, record, len(records), smooth),
                            colour, style, smooth, skip)
        axes.set_title(_title(name, validated) + _view(smooth, skip))
        axes.set_xlabel("Epochs")
        axes.set_ylabel(name)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(records) == 1 and axes.get_lines():
            axes.legend()
    if len(records) > 1:
        figure.legend(*figure.axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=2)
    return figure


def _view(smooth: float, skip: int) -> str:
    parts = ([f"smoothed {smooth:g}"] if smooth else []) + ([f"from epoch {skip + 1}"] if skip else [])
    return f" ({', '.join(parts)})" if parts else ""


def _legend_label(label: str, part: str, name: str, record: RunRecord, runs: int, smooth: float = 0.0) -> str:
    text = f"{part.capitalize()} {name}" if runs == 1 else f"{label} {part}"
    folds = record.folds_label if record.folds_done != record.folds else f"{record.folds} folds"  # "2 of 4 folds"
    if record.spread and not smooth:
        text += f" (mean ± std, {folds})"
    elif record.spread:
        text += f" (mean of {folds})"
    return text


def _draw_curve(axes, record: RunRecord, key: str, label: str, colour: str, style: dict,
                smooth: float = 0.0, skip: int = 0) -> None:
    values = record.history.get(key)
    if not values or len(values) <= skip:
        return
    nan = float("nan")  # a gap in the line where a diverged value was stored as null
    shown = smooth_curve(values[skip:], smooth) if smooth else values[skip:]
    mean = [nan if value is None else value for value in shown]
    epochs = range(skip + 1, skip + len(mean) + 1)  # the epochs' own numbers, after the skipped ones
    axes.plot(epochs, mean, color=colour, label=label, **style)
    spread = record.spread.get(key)
    if spread and not smooth:  # a smoothed mean has no honest band: the std is of the raw per-epoch values
        std = [nan if value is None else value for value in spread[skip:skip + len(mean)]]
        axes.fill_between(epochs[:len(std)], [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                          color=colour, alpha=0.2, linewidth=0)


def write_plot(paths, metric: str | None = None, output=None, smooth: float = 0.0, skip: int = 0) -> Path:
    """Draw the runs at `paths` into `output` (format from its suffix; default RUN/plot.png for one run,
    ./plot.png for several) and return where it went; `smooth` and `skip` as in `make_figure`."""
    records = [open_run(path, config=False, metrics=False) for path in paths]  # damage there cannot matter
    figure = make_figure(records, metric, smooth, skip)
    target = Path(output) if output else (records[0].path if len(records) == 1 else Path()) / "plot.png"
    image_format = target.suffix[1:].lower() or "png"
    supported = figure.canvas.get_supported_filetypes()
    if image_format not in supported:
        raise NnctlError(f"{target}: cannot write a .{image_format} image (allowed: {', '.join(sorted(supported))})")
    buffer = io.BytesIO()
    figure.savefig(buffer, format=image_format, dpi=100)
    try:
        atomic_write_bytes(target, buffer.getvalue())
    except OSError as error:
        raise NnctlError(f"cannot write {target}: {error.strerror or error}") from None
    return target
