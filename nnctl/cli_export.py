"""`nnctl export RUN --format onnx` (registered on `main`): the run's model as ONNX, checked on request."""

from __future__ import annotations

import click

from nnctl.cli import main, user_errors


@main.command()
@click.argument("run", type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True)
@click.option("-o", "--output", type=click.Path(), help="The .onnx file (default: model.onnx in the run folder).")
@click.option("--check", is_flag=True, help="Run the export in onnxruntime on the run's test (or training) inputs "
                                            "and print its largest difference from `nnctl predict`.")
@click.option("--weights", type=click.Path(), help="Export another weights file of the run.")
@user_errors
def export(run, fmt, output, check, weights):
    """Export a trained RUN's model (ONNX opset 17; needs `pip install 'nnctl[onnx]'`).

    \b
    Example:
      nnctl export runs/mnist_convnet/latest -o mnist.onnx --check
    """
    from nnctl.export.onnx import check_run, export_run
    from nnctl.train.inference import load_run

    loaded = load_run(run, weights)
    path, beside = export_run(loaded, output)
    click.echo(f"wrote {path}" + (f" (and {beside.name}: the preprocessing to apply before it)" if beside else ""))
    if check:
        found = check_run(loaded, path)
        click.echo(f"check: onnxruntime vs nnctl predict on {found['rows']} {found['split']} rows: largest "
                   f"difference {found['max_abs']:.3g} (relative {found['max_rel']:.3g})")
