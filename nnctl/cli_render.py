"""How the commands render results: rich tables on stdout and strict JSON (RFC 8259 has no NaN or Infinity).

Imported by the command modules; what it needs (rich, NumPy) loads only when a command renders.
"""

from __future__ import annotations

import json
import sys


def strict_json(obj, indent: int | None = 2) -> str:
    """`obj` as strict JSON: NumPy values made plain, non-finite numbers null (the run folder's own rule)."""
    from nnctl.runs.rundir import to_strict_json

    return json.dumps(to_strict_json(obj), indent=indent, allow_nan=False)


def table(columns, rows, title=None, width=None) -> None:
    """Prints `rows` under `columns` ((name, "left" | "right"), ...) as a rich table on stdout."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    shown = Table(title=title, box=box.HEAVY_HEAD, title_justify="left")
    for name, justify in columns:
        shown.add_column(name, justify=justify, overflow="fold")
    for row in rows:
        shown.add_row(*row)
    Console(file=sys.stdout, width=width or max(80, min(120, sum(len(c[0]) for c in columns) + 60))).print(shown)


def summary_table(info: dict, name: str) -> None:
    """Keras's summary of a model (`model.summary()`'s rows and totals) as a table on stdout; a graph's has the
    "Connected to" column."""
    graph = all("connected_to" in row for row in info["rows"])
    rows = [[f"{row['name']} ({row['type']})", str(row["output_shape"]).replace(",)", ")"), f"{row['params']:,}"]
            + ([", ".join(row["connected_to"])] if graph else []) for row in info["rows"]]
    table([("Layer (type)", "left"), ("Output Shape", "left"), ("Param #", "right")]
          + ([("Connected to", "left")] if graph else []), rows, title=f'Model: "{name}"')
    for label, key in (("Total", "total_params"), ("Trainable", "trainable_params"),
                       ("Non-trainable", "non_trainable_params")):
        print(f" {label} params: {info[key]:,} ({_size(info[key] * 4)})")


def _size(nbytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if nbytes < 1024 or unit == "GB":
            return f"{nbytes:.2f} {unit}"
        nbytes /= 1024
