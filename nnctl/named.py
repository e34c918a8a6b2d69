"""`NamedArrays`: several arrays with one row per sample each, by name — a multi-input model's inputs or a
multi-output model's targets. Rows are taken from all of them at once, so splits, shuffles and batches stay
aligned; it answers `len`, `shape[0]` and `take` as the single arrays it stands for do.
"""

from __future__ import annotations

import numpy as np

from nnctl.errors import ShapeError


class NamedArrays:
    """Arrays by name, all with the same number of rows (samples).

    Example:
        x = NamedArrays({"title": titles, "tags": tags})
        x.take(np.array([0, 2]))["tags"]    # rows 0 and 2 of `tags`
    """

    def __init__(self, arrays: dict, what: str = "the inputs"):
        if not arrays:
            raise ShapeError(f"{what} hold no arrays")
        self.arrays = {str(name): value if hasattr(value, "take") else np.asarray(value)
                       for name, value in arrays.items()}
        rows = {name: value.shape[0] if hasattr(value, "shape") and len(value.shape) else len(value)
                for name, value in self.arrays.items()}
        if len(set(rows.values())) > 1:
            raise ShapeError(f"{what} must have the same number of rows (samples), got "
                             + ", ".join(f"{name}: {count}" for name, count in rows.items()))
        self.rows = next(iter(rows.values()))

    @property
    def shape(self) -> tuple[int]:
        return (self.rows,)

    def __len__(self) -> int:
        return self.rows

    def names(self) -> list[str]:
        return list(self.arrays)

    def values(self) -> list:
        return list(self.arrays.values())

    def items(self):
        return self.arrays.items()

    def take(self, rows) -> "NamedArrays":
        rows = np.asarray(rows)
        return NamedArrays({name: value.take(rows) if not isinstance(value, np.ndarray) else value[rows]
                            for name, value in self.arrays.items()})

    def __getitem__(self, key):
        if isinstance(key, str):
            return self.arrays[key]
        if isinstance(key, slice):
            return self.take(np.arange(self.rows)[key])
        return self.take(key)

    def __array__(self, dtype=None, copy=None):
        raise ShapeError(f"{self!r} holds several named arrays: it is no single array (give them by name)")

    def __repr__(self):
        parts = ", ".join(f"{name}: {tuple(getattr(value, 'shape', (len(value),)))}"
                          for name, value in self.arrays.items())
        return f"NamedArrays({parts})"


def named(value, names: list[str], what: str) -> NamedArrays:
    """`value` (a dict by name, a list or tuple in `names` order, or a NamedArrays) as a NamedArrays in `names`
    order; a missing, extra or unknown name is a ShapeError that lists the names wanted."""
    if isinstance(value, NamedArrays):
        value = value.arrays
    if isinstance(value, dict):
        unknown = [str(key) for key in value if key not in names]
        missing = [name for name in names if name not in value]
        if unknown or missing:
            raise ShapeError(f"{what} are given by name: " + "; ".join(
                part for part in (f"no {', '.join(repr(m) for m in missing)}" if missing else "",
                                  f"unknown {', '.join(repr(u) for u in unknown)}" if unknown else "") if part)
                + f" (the model's: {', '.join(names)})")
        return NamedArrays({name: value[name] for name in names}, what)
    if isinstance(value, (list, tuple)):
        if len(value) != len(names):
            raise ShapeError(f"the model has {len(names)} {what.split()[-1]} ({', '.join(names)}), "
                             f"{len(value)} arrays were given")
        return NamedArrays(dict(zip(names, value)), what)
    if len(names) == 1:
        return NamedArrays({names[0]: value}, what)
    raise ShapeError(f"the model has {len(names)} {what.split()[-1]} ({', '.join(names)}): give a dict by name "
                     f"or a list in that order, got one {type(value).__name__}")
