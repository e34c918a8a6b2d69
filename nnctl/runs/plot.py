"""The book's figure for one or more runs: training vs validation curves per epoch, one panel per metric.

matplotlib is optional (`pip install 'nnctl[plot]'`); figures are drawn on its Agg canvas, never through pyplot,
so nothing opens a window or shares global state.
"""

from __future__ import annotations

import io
from pathlib import Path

from nnctl.errors import NnctlError, UnknownNameError
from nnctl.runs.browse import RunRecord, main_metric, open_run, run_labels
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
        raise NnctlError("nothing to plot: no epoch has finished in " + ", ".join(str(r.path) for r in records))
    if metric is not None:
        name = metric if metric in available else metric.removeprefix("val_")
        if name not in available:
            raise UnknownNameError("metric", metric, available)
        return [name]
    mains = [main_metric(record.history) for record in records]
    extra = [key.removeprefix("val_") for key in mains if key and key != "val_loss"]
    return ["loss"] + extra[:1] if "loss" in available else extra[:1]


def make_figure(records: list[RunRecord], metric: str | None = None):
    """A matplotlib Figure: one panel per metric of `panels`, each run's training curve as dots and validation
    curve as a line, in one colour per run; a K-fold run's curves are means with a ± std band. One run has a
    legend per panel (as in the book); several share one legend below the panels, where it hides no curve."""
    Figure = _figure_class()
    from matplotlib.ticker import MaxNLocator

    names = panels(records, metric)
    labels = run_labels(records)
    legend_height = 0.3 * len(records) if len(records) > 1 else 0.0  # the shared legend's rows, below the panels
    figure = Figure(figsize=(6 * len(names), 4.5 + legend_height), layout="constrained")
    for name, axes in zip(names, figure.subplots(1, len(names), squeeze=False)[0]):
        for index, (record, label) in enumerate(zip(records, labels)):
            colour = f"C{index % 10}"
            for key, part, style in ((name, "training", {"marker": "o", "linestyle": "none", "markersize": 4}),
                                     (f"val_{name}", "validation", {"linestyle": "-"})):
                _draw_curve(axes, record, key, _legend_label(label, part, name, record, len(records)), colour, style)
        axes.set_title(f"Training and validation {name}")
        axes.set_xlabel("Epochs")
        axes.set_ylabel(name)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(records) == 1:
            axes.legend()
    if len(records) > 1:
        figure.legend(*figure.axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=2)
    return figure


def _legend_label(label: str, part: str, name: str, record: RunRecord, runs: int) -> str:
    text = f"{part.capitalize()} {name}" if runs == 1 else f"{label} {part}"
    return text + (f" (mean ± std, {record.folds} folds)" if record.spread else "")


def _draw_curve(axes, record: RunRecord, key: str, label: str, colour: str, style: dict) -> None:
    values = record.history.get(key)
    if not values:
        return
    nan = float("nan")  # a gap in the line where a diverged value was stored as null
    mean = [nan if value is None else value for value in values]
    epochs = range(1, len(mean) + 1)
    axes.plot(epochs, mean, color=colour, label=label, **style)
    spread = record.spread.get(key)
    if spread:
        std = [nan if value is None else value for value in spread[:len(mean)]]
        axes.fill_between(epochs[:len(std)], [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                          color=colour, alpha=0.2, linewidth=0)


def write_plot(paths, metric: str | None = None, output=None) -> Path:
    """Draw the runs at `paths` into `output` (format from its suffix; default RUN/plot.png for one run,
    ./plot.png for several) and return where it went."""
    records = [open_run(path, config=False, metrics=False) for path in paths]  # damage there cannot matter
    figure = make_figure(records, metric)
    target = Path(output) if output else (records[0].path if len(records) == 1 else Path()) / "plot.png"
    image_format = target.suffix[1:].lower() or "png"
    supported = figure.canvas.get_supported_filetypes()
    if image_format not in supported:
        raise NnctlError(f"cannot write a .{image_format} image (allowed: {', '.join(sorted(supported))})")
    buffer = io.BytesIO()
    figure.savefig(buffer, format=image_format, dpi=100)
    try:
        atomic_write_bytes(target, buffer.getvalue())
    except OSError as error:
        raise NnctlError(f"cannot write {target}: {error.strerror or error}") from None
    return target
