"""CSV tables as people have them: a header or none, columns by name or index, text class labels, missing cells.

Every error names the file, the line and the column, and quotes the bad value (short) before anything else long.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnctl.errors import NnctlError, clip, show

# Cells read as a missing value (compared lower-cased): what pandas and spreadsheets write for "no value".
MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})
MAX_LABEL = 100
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass
class Table:
    """A CSV's cells as text: `names` from its header (or `column0`, `column1`, … without one)."""

    path: Path
    names: list[str]
    has_header: bool
    rows: list[list[str]]
    lines: list[int]  # each row's line number in the file (blank lines count)

    def check_widths(self) -> None:
        """Every row has as many cells as the header (or the first row); checked once the columns are known,
        so a file that is not a table says first that it lacks the columns asked for."""
        for cells, number in zip(self.rows, self.lines):
            if len(cells) != len(self.names):
                raise NnctlError(f"{self.path}:{number}: expected {len(self.names)} values, got {len(cells)}")

    def index(self, column, key: str = "column") -> int:
        """The 0-based index of `column` (a name, or an index into the row)."""
        if isinstance(column, int):
            if column >= len(self.names):
                raise NnctlError(f"{self.path.name}: {key} {column} is out of range: the file has "
                                 f"{len(self.names)} columns (0 to {len(self.names) - 1})")
            return column
        if column not in self.names:
            raise NnctlError(f"{self.path.name} has no column '{clip(column, 60)}' (columns: "
                             f"{clip(', '.join(self.names))})")
        return self.names.index(column)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def looks_like_header(cells: list[str], names=(), labels=()) -> bool:
    """A first row is a header when it holds one of the known column `names`, or a cell that is neither a
    number, a missing value nor one of the known class `labels` (a headerless row may hold its class)."""
    return any(cell in names for cell in cells) or any(
        not _is_number(cell) and cell.lower() not in MISSING and cell not in labels for cell in cells)


def split_table(path: Path, text: str, delimiter: str = ",", header: bool | None = True, names=(),
                labels=()) -> Table:
    """The cells of `text` (the file at `path`, named so in errors); `header` None guesses it from the first row
    (see `looks_like_header`)."""
    numbered = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not numbered:
        raise NnctlError(f"{path} needs a header row and at least one data row" if header else
                         f"{path}: the file has no rows")
    # csv.reader for the quoting spreadsheets and pandas write ("a, b",1); one record per line, so a line
    # number stays a line number
    split = _split_lines(path, numbered, delimiter)
    first = split[0]
    has_header = looks_like_header(first, names, labels) if header is None else header
    names = first if has_header else [f"column{i}" for i in range(len(first))]
    if has_header:
        doubled = sorted({name for name in names if names.count(name) > 1})
        if doubled:
            raise NnctlError(f"{path}:{numbered[0][0]}: the header names column '{clip(doubled[0], 60)}' twice")
        numbered, split = numbered[1:], split[1:]
    if not numbered:
        raise NnctlError(f"{path} needs a header row and at least one data row" if has_header else
                         f"{path}: the file has no rows")
    return Table(path, names, has_header, split, [number for number, _ in numbered])


def _split_lines(path: Path, numbered: list, delimiter: str) -> list[list[str]]:
    reader = csv.reader([line for _, line in numbered], delimiter=delimiter)
    rows = []
    try:
        for cells in reader:
            rows.append([cell.strip() for cell in cells])
    except csv.Error as error:  # a NUL byte, a field past csv's size limit
        raise NnctlError(f"{path}:{numbered[reader.line_num - 1][0]}: not a CSV row ({clip(str(error), 80)})") from None
    return rows


def numbers(table: Table, columns: list[int], allow_missing: bool = False) -> np.ndarray:
    """The `columns` of `table` as float64 (n, len(columns)); missing cells are NaN when `allow_missing`,
    an error otherwise, as is any text or a value float32 cannot hold."""
    out = np.empty((len(table.rows), len(columns)), np.float64)
    for row, cells in enumerate(table.rows):
        for j, column in enumerate(columns):
            cell = cells[column]
            try:
                value = float(cell)
            except ValueError:
                value = None
            if cell.lower() in MISSING:
                if not allow_missing:
                    raise _bad(table, row, column, "is missing a value, got", cell,
                               "; fill it in or add an `impute` transform")
                value = np.nan
            elif value is None:
                raise _bad(table, row, column, "must be a number, got", cell)
            elif not abs(value) <= _FLOAT32_MAX:
                raise _bad(table, row, column, "must be a finite number (at most ±3.4e38), got", cell)
            out[row, j] = value
    return out


def labels(table: Table, column: int, classes: list[str] | None = None) -> tuple[np.ndarray, list[str] | None]:
    """The target column: numbers as they are, or text labels mapped to ids in sorted order (`classes`, the
    training file's, when given: a label it lacks is an error)."""
    cells = [cells[column] for cells in table.rows]
    for row, cell in enumerate(cells):
        if cell.lower() in MISSING:
            raise _bad(table, row, column, "(the target) is missing a value, got", cell)
    if classes is None and all(_is_number(cell) for cell in cells):
        return numbers(table, [column])[:, 0], None
    if classes is None:
        for row, cell in enumerate(cells):
            if len(cell) > MAX_LABEL:  # a class name is shown in tables and saved with the run
                raise _bad(table, row, column, f"(the target) holds a class name longer than {MAX_LABEL} "
                                               f"characters, got", cell)
        classes = sorted(set(cells))
    ids = {name: i for i, name in enumerate(classes)}
    for row, cell in enumerate(cells):
        if cell not in ids:
            raise _bad(table, row, column, "holds a class the training file does not have, got", cell,
                       f" (classes: {clip(', '.join(classes), 100)})")
    return np.array([ids[cell] for cell in cells], np.float64), classes


def _bad(table: Table, row: int, column: int, what: str, cell: str, hint: str = "") -> NnctlError:
    return NnctlError(f"{table.path}:{table.lines[row]}: column '{clip(table.names[column], 40)}' {what} "
                      f"{show(cell, 40)}{hint}")
