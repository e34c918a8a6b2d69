"""`nnctl datasets` and `nnctl datasets show`: the built-in datasets (registered on `main`).

Like cli.py, importing this stays cheap: the loaders import inside the commands.
"""

from __future__ import annotations

import click

from nnctl.cli import main, user_errors
from nnctl.cli_render import table


@main.group(invoke_without_command=True)
@click.pass_context
def datasets(ctx):
    """List the built-in datasets: sizes, classes, input shapes, and whether and where each is cached.

    \b
    Example:
      nnctl datasets
      nnctl datasets show imdb --index 0
    """
    if ctx.invoked_subcommand is not None:
        return
    from nnctl.data.builtin import DATASETS, cache_status

    rows = []
    for info in DATASETS.values():
        found = [path for name, path in cache_status(info.name) if not name.endswith(".tokens.npz")]
        where = ("no files needed" if not found else "not cached (downloads on first use)" if not all(found)
                 else str(found[0].parent))
        rows.append([info.name, info.description, info.samples, info.task + (f", {info.classes}" if info.classes
                                                                            else ""), info.input, where])
    table([("name", "left"), ("description", "left"), ("train / test", "right"), ("task", "left"),
            ("inputs", "left"), ("cached", "left")], rows, width=160)


@datasets.command("show")
@click.argument("name")
@click.option("--index", "-i", default=0, show_default=True, type=click.IntRange(min=0), help="Which sample.")
@click.option("--split", type=click.Choice(["train", "test"]), default="train", show_default=True)
@user_errors
def datasets_show(name, index, split):
    """Show one sample of a built-in dataset; text datasets are decoded back to words (the book's decoded_review).

    \b
    Example:
      nnctl datasets show imdb --index 0
    """
    from nnctl.data.builtin import DATASETS, decode, load_builtin
    from nnctl.errors import NnctlError

    data = load_builtin(name)
    x, y = (data.x_train, data.y_train) if split == "train" else (data.x_test, data.y_test)
    if index >= len(y):
        raise NnctlError(f"--index {index} is out of range: the {split} split has {len(y)} samples")
    labels = DATASETS[data.name].labels
    label = int(y[index]) if data.task != "regression" else float(y[index])
    named = f" ({labels[label]})" if labels and isinstance(label, int) and label < len(labels) else ""
    click.echo(f"{data.name} {split}[{index}]: label {label}{named}")
    if data.name in ("imdb", "reuters"):
        click.echo(decode(x[index], data.name))
    else:
        sample = x[index]
        click.echo(f"shape {list(sample.shape)}, values {sample.min()}..{sample.max()}")
        if sample.ndim == 2:  # an image: a coarse text rendering
            for row in sample[::2]:
                click.echo("".join(" .:-=+*#%@"[min(9, int(v) * 10 // 256)] for v in row[::1]))
