"""How every command prints a run's path: relative to the working folder when the run is inside it, else absolute,
so `run:`, `plot:`, `nnctl runs --json` and `compare` name one run the same way (and it can be pasted back)."""

from __future__ import annotations

import os
from pathlib import Path


def display_path(path) -> str:
    """`runs/mnist/20240513-093005` from inside the project, `/data/runs/mnist/…` from elsewhere."""
    absolute = Path(os.path.abspath(path))
    for folder in dict.fromkeys((Path(os.path.abspath(os.getcwd())), Path.cwd().resolve())):
        try:  # the working folder as spelled and with its links resolved: a resolved `latest` is still inside
            inside = absolute.relative_to(folder)
        except ValueError:
            continue
        return str(inside) if inside.parts else "."
    return str(absolute)
