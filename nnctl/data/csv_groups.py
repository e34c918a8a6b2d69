"""A CSV's column groups for a model with several inputs or outputs:

    dataset:
      type: csv
      path: tickets.csv
      features: {title: [t0, t1, t2], tags: [tag_a, tag_b]}    # input name → its columns
      target: {priority: priority, department: department}    # output name → its column

Each target column is read as `labels` reads one (numbers, or text classes mapped to ids, per output); a
feature list (or none: every other column) with several targets gives one unnamed input.
"""

from __future__ import annotations

import numpy as np

from nnctl.errors import NnctlError, clip
from nnctl.named import NamedArrays


def grouped(spec) -> bool:
    return isinstance(spec.features, dict) or isinstance(spec.target, dict)


def read_groups(table, spec, classes, imputed: bool, locate):
    """(x, y, record) from a split `table`; `classes`: the training file's per target (a test file's), or None.
    `locate(key, message)` makes the located error for a key under data.dataset."""
    from nnctl.data import csv_table

    targets = spec.target if isinstance(spec.target, dict) else {None: spec.target}
    columns = {}
    for name, column in targets.items():
        try:
            columns[name] = table.index(column, "target")
        except NnctlError as err:
            raise locate(("target",) + ((name,) if name is not None else ()), str(err)) from None
    groups = spec.features if isinstance(spec.features, dict) else {None: spec.features}
    picked = {}
    for name, given in groups.items():
        try:
            picked[name] = ([table.index(column, "feature") for column in given] if given
                            else [i for i in range(len(table.names)) if i not in columns.values()])
        except NnctlError as err:
            raise locate(("features",) + ((name,) if name is not None else ()), str(err)) from None
        both = [table.names[i] for i in picked[name] if i in columns.values()]
        if both:
            raise locate(("features",) + ((name,) if name is not None else ()),
                         f"column '{clip(both[0], 60)}' is a target; it cannot also be a feature")
    try:
        table.check_widths()
        x = {name: csv_table.numbers(table, cols, allow_missing=imputed).astype(np.float32)
             for name, cols in picked.items()}
        y, found = {}, {}
        for name, column in columns.items():
            given = (classes or {}).get(name) if isinstance(classes, dict) else classes
            values, found[name] = csv_table.labels(table, column, given)
            y[name] = values.astype(np.float32)
    except NnctlError as err:
        raise locate((), str(err)) from None
    record = {"header": table.has_header, "columns": table.names,
              "features": {k: [table.names[i] for i in v] for k, v in picked.items()} if None not in picked
              else [table.names[i] for i in picked[None]],
              "target": {k: table.names[v] for k, v in columns.items()} if None not in columns
              else table.names[columns[None]],
              "classes": found if None not in columns else found[None]}
    return (x[None] if None in x else NamedArrays(x), y[None] if None in y else NamedArrays(y), record)
