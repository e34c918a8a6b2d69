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
