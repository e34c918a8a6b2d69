"""The commands that read finished runs back: `nnctl runs`, `compare` and `plot` (registered on `main`).

Like cli.py, importing this stays cheap: the run readers and matplotlib load inside the commands.
"""

from __future__ import annotations

import sys

import click

from nnctl.cli import main, user_errors
from nnctl.cli_render import strict_json, table


@main.command()
@click.argument("folder", default="runs", required=False, metavar="[DIR]", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list with one object per run, for scripts.")
@user_errors
def runs(folder, as_json):
    """List the runs under DIR (default: runs), oldest first: status, epochs, best validation metric, test, time.

    \b
    Example:
      nnctl runs
      nnctl runs runs/imdb --json
    A K-fold run is one row of means over its folds; a half-written run shows what it holds.
    """
    from nnctl.runs.browse import RUN_COLUMNS, list_runs, run_row

    found = list_runs(folder)
    for summary in found:  # one damaged run must not hide the others: a note each, and exit 0
        for problem in summary["problems"]:
            click.secho(f"note: {problem}", fg="yellow", err=True)
    if as_json:
        click.echo(strict_json(found))
        return
    if not found:
        click.echo(f"no runs in {folder}")
        return
    _render(RUN_COLUMNS, [run_row(summary) for summary in found])


@main.command()
@click.argument("run_paths", nargs=-1, required=True, metavar="RUN RUN...")
@click.option("--json", "as_json", is_flag=True, help="Print the metric rows and the config differences as JSON.")
@user_errors
def compare(run_paths, as_json):
    """Compare runs side by side: final and best metrics (a column per run), then where their configs differ.

    \b
    Example:
      nnctl compare runs/imdb/20240517-093005 runs/imdb/latest
    A RUN is a run folder or runs/<name> (its latest run).
    """
    from nnctl.runs.browse import compare_runs, format_cell

    if len(run_paths) < 2:
        raise click.UsageError("give two or more runs to compare")
    result = compare_runs(run_paths)
    for problem in result["problems"]:
        click.secho(f"note: {problem}", fg="yellow", err=True)
    if as_json:
        click.echo(strict_json(result))
        return
    _render([("metric", "left")] + [(label, "right") for label in result["labels"]],
            [[name] + [format_cell(cell) for cell in cells] for name, cells in result["rows"]])
    click.echo("config: identical" if not result["config"] else "config differences:")
    for key, values in result["config"]:  # a long value (a data path) is cut, so each difference stays one line
        click.echo(f"  {_cut(key)}: {' → '.join(_cut(value) for value in values)}")


@main.command()
@click.argument("run_paths", nargs=-1, required=True, metavar="RUN [RUN...]")
@click.option("--metric", "-m", help="Plot only this metric, training and validation (e.g. loss, accuracy, mae, "
                                     "lr); default: the loss and the main metric side by side.")
@click.option("--output", "-o", type=click.Path(dir_okay=False),
              help="Image file (.png, .svg, .pdf); default RUN/plot.png for one run, ./plot.png for several.")
@click.option("--smooth", type=float, default=0.0, metavar="FACTOR",
              help="Draw each curve's exponential moving average (0.9 as in the book; 0: the raw values).")
@click.option("--skip", type=int, default=0, metavar="N", help="Leave out the first N epochs (the book skips 10).")
@user_errors
def plot(run_paths, metric, output, smooth, skip):
    """Plot training vs validation curves per epoch (the book's figures); several runs are overlaid.

    \b
    Example:
      nnctl plot runs/imdb/latest
      nnctl plot runs/boston_kfold runs/boston --metric mae -o boston.png
      nnctl plot runs/boston_kfold --metric val_mae --smooth 0.9 --skip 10
    A K-fold run is drawn as its mean ± std over folds. Needs matplotlib: pip install 'nnctl[plot]'.
    """
    from nnctl.runs.display import display_path
    from nnctl.runs.plot import write_plot
    from nnctl.sweep.plots import is_sweep, write_sweep_plot

    if len(run_paths) == 1 and is_sweep(run_paths[0]):  # a sweep: its optimization history and importances
        click.echo("plot: " + ", ".join(display_path(p) for p in write_sweep_plot(run_paths[0], output)))
        return
    click.echo(f"plot: {display_path(write_plot(run_paths, metric, output, smooth, skip))}")


def _cut(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else f"{text[:limit - 21]}…{text[-20:]}"


def _on_terminal() -> bool:
    return sys.stdout.isatty()


def _render(columns, rows):
    """A rich table on a terminal; elsewhere plain columns two spaces apart, which grep, awk and cut can read."""
    if _on_terminal():
        import shutil

        from rich.markup import escape
        table(columns, [[escape(cell) for cell in row] for row in rows], width=shutil.get_terminal_size().columns)
        return
    lines = [[name for name, _ in columns]] + rows
    widths = [max(len(cell) for cell in column) for column in zip(*lines)]
    for line in lines:
        cells = [cell.ljust(width) if justify == "left" else cell.rjust(width)
                 for cell, width, (_, justify) in zip(line, widths, columns)]
        click.echo("  ".join(cells).rstrip())
