"""`nnctl predict` for a model with several inputs or outputs: read its named inputs, then print one table or
write a .npz by output name (or a file per output). Called by `predict` in nnctl/cli.py.
"""

from __future__ import annotations

import click

from nnctl.cli_render import table


def predict_named(loaded, input_file, texts):
    """The outputs of a model with several inputs or outputs (train/inference_named.py)."""
    from nnctl.train.inference_named import predict_named, read_named_inputs

    if texts:
        raise click.UsageError("--text needs a model with one text input: this one takes "
                               + ", ".join(loaded.model.input_names))
    return predict_named(loaded, read_named_inputs(input_file, loaded.model, loaded.run))


def show_named(loaded, outputs, output_file):
    """Writes or prints several outputs: a .npz by output name, a file per output, or one table."""
    from nnctl.train.inference_named import class_names, describe_named, write_named_outputs

    if output_file:
        written = write_named_outputs(output_file, outputs, loaded.model.output_names)
        click.echo(f"wrote {len(outputs[0])} prediction(s) of {len(outputs)} outputs to "
                   + ", ".join(str(path) for path in written))
        return
    columns, rows = describe_named(loaded.model, outputs, class_names(loaded.run))
    table([(name, "left" if name.endswith("class") else "right") for name in columns],
          [[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row] for row in rows[:50]])
    if len(rows) > 50:
        click.echo(f"… {len(rows) - 50} more rows: use --output FILE to save them all")
