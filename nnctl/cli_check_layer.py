"""`nnctl check-layer FILE.py:Class` (registered on `main`): a user's layer through the gradient check and the
config round trip, one line per check."""

from __future__ import annotations

import click
import yaml

from nnctl.cli import main, user_errors


@main.command("check-layer")
@click.argument("layer")
@click.option("--input-shape", required=True, help="Per-sample input shape, e.g. 8 or 10,4.")
@click.option("--arg", "arguments", multiple=True, metavar="KEY=VALUE",
              help="A constructor argument (repeatable; VALUE is YAML: 4, true, relu, [2, 2]).")
@user_errors
def check_layer(layer, input_shape, arguments):
    """Check a custom layer class LAYER (FILE.py:Class or module:Class): its gradients against central
    differences and its config round trip. Exit 1 when a check fails.

    \b
    Example:
      nnctl check-layer my_layers.py:SimpleDense --input-shape 8 --arg units=4
    """
    from nnctl.errors import NnctlError
    from nnctl.nn import layer_check

    try:
        shape = tuple(int(part) for part in str(input_shape).split(","))
    except ValueError:
        raise NnctlError(f"--input-shape: give positive integers, e.g. 8 or 10,4, got {input_shape!r}") from None
    kwargs = {}
    for item in arguments:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise NnctlError(f"--arg: give KEY=VALUE, got {item!r}")
        kwargs[key] = yaml.safe_load(value)
    cls = layer_check.load_class(layer)
    try:
        results = layer_check.check_layer(cls, kwargs, shape)
    except (TypeError, ValueError) as err:
        raise NnctlError(f"{layer}: cannot build or run it with {kwargs} on inputs of shape {shape}: "
                         f"{type(err).__name__}: {err}") from None
    for name, passed, detail in results:
        click.secho(f"{'ok  ' if passed else 'FAIL'} {name}: {detail}", fg=None if passed else "red")
    if not all(passed for _, passed, _ in results):
        raise SystemExit(1)
