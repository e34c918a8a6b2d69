"""Ragged integer sequences (word-index reviews, newswires) as one flat int32 array plus row offsets.

Row r is `tokens[offsets[r]:offsets[r+1]]`; every operation here is vectorized over all rows at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain

import numpy as np

from nnctl.engine.csr import CSRMatrix
from nnctl.errors import ArgumentError

_INT32_MAX = np.iinfo(np.int32).max


def _row_ids(offsets: np.ndarray) -> np.ndarray:
    """For every token, the number of the row it belongs to."""
    return np.repeat(np.arange(len(offsets) - 1, dtype=np.int64), np.diff(offsets))


def _offsets_from_lengths(lengths: np.ndarray) -> np.ndarray:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


@dataclass(eq=False)
class Sequences:
    """`len(offsets) - 1` rows of int32 tokens: row r is `tokens[offsets[r]:offsets[r+1]]` (offsets int64)."""

    tokens: np.ndarray
    offsets: np.ndarray

    def __post_init__(self):
        self.tokens = np.ascontiguousarray(self.tokens, dtype=np.int32)
        self.offsets = np.ascontiguousarray(self.offsets, dtype=np.int64)
        if (self.offsets.ndim != 1 or len(self.offsets) == 0 or self.offsets[0] != 0
                or self.offsets[-1] != len(self.tokens) or np.any(np.diff(self.offsets) < 0)):
            raise ValueError("offsets must start at 0, never decrease and end at len(tokens)")

    @classmethod
    def from_lists(cls, sequences) -> "Sequences":
        """From any iterable of integer sequences (lists, tuples or 1-D arrays)."""
        rows = [np.asarray(row, dtype=np.int64).reshape(-1) if isinstance(row, np.ndarray) else row
                for row in sequences]
        lengths = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
        total = int(lengths.sum())
        if rows and all(isinstance(row, np.ndarray) for row in rows):
            flat = np.concatenate(rows) if total else np.zeros(0, np.int64)
        else:
            flat = np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=total)
        if total and (flat.min() < -_INT32_MAX - 1 or flat.max() > _INT32_MAX):
            raise ArgumentError("sequence tokens must fit in int32.")
        return cls(flat.astype(np.int32), _offsets_from_lengths(lengths))

    def to_lists(self) -> list[list[int]]:
        return [row.tolist() for row in np.split(self.tokens, self.offsets[1:-1])] if len(self) else []

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index):
        """An int gives row `index` as an int32 view; a slice or an index array gives a new `Sequences`."""
        if isinstance(index, (int, np.integer)):
            row = int(index) + len(self) if index < 0 else int(index)
            if not 0 <= row < len(self):
                raise IndexError(f"row {index} out of range for {len(self)} sequences")
            return self.tokens[self.offsets[row]:self.offsets[row + 1]]
        if isinstance(index, slice):
            return self.take(np.arange(len(self))[index])
        return self.take(index)

    def __iter__(self):
        for start, stop in zip(self.offsets[:-1], self.offsets[1:]):
            yield self.tokens[start:stop]

    def __repr__(self) -> str:
        return f"Sequences({len(self)} rows, {len(self.tokens)} tokens)"

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def take(self, rows) -> "Sequences":
        """The given rows, in that order (a boolean mask selects rows too)."""
        rows = np.asarray(rows)
        rows = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.int64).reshape(-1)
        starts = self.offsets[rows]
        lengths = self.offsets[rows + 1] - starts
        offsets = _offsets_from_lengths(lengths)
        # position of each output token in the input: its row's input start plus its place within the row
        gather = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1], dtype=np.int64)
        return Sequences(self.tokens[gather], offsets)

    def prepend(self, value: int) -> "Sequences":
        """Every row with `value` put in front (Keras's `start_char`)."""
        offsets = self.offsets + np.arange(len(self.offsets), dtype=np.int64)
        tokens = np.empty(offsets[-1], dtype=np.int32)
        starts = np.zeros(offsets[-1], dtype=bool)
        starts[offsets[:-1]] = True
        tokens[starts] = value
        tokens[~starts] = self.tokens
        return Sequences(tokens, offsets)

    def keep_tokens(self, mask: np.ndarray) -> "Sequences":
        """Only the tokens where `mask` is true, rows kept (and possibly emptied)."""
        kept_per_row = np.bincount(_row_ids(self.offsets)[mask], minlength=len(self))
        return Sequences(self.tokens[mask], _offsets_from_lengths(kept_per_row))

    def multi_hot(self, width: int) -> CSRMatrix:
        """(rows, width) 0/1 matrix: row r has 1.0 at each distinct token of row r below `width` (sorted)."""
        rows = _row_ids(self.offsets)
        inside = (self.tokens >= 0) & (self.tokens < width)
        # one sort of (row, token) keys orders tokens by row and then by token; dropping repeats leaves the
        # distinct ones (np.unique would do the same, but is many times slower on NumPy 2.4)
        keys = np.sort(rows[inside] * np.int64(width) + self.tokens[inside])
        keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))] if len(keys) else keys
        key_rows = keys // width
        indptr = _offsets_from_lengths(np.bincount(key_rows, minlength=len(self)))
        indices = (keys - key_rows * width).astype(np.int32)
        return CSRMatrix(indptr, indices, np.ones(len(indices), np.float32), (len(self), int(width)))

    def pad(self, maxlen: int | None = None, padding: str = "pre", truncating: str = "pre",
            value: int = 0) -> np.ndarray:
        """(rows, maxlen) int32 array with Keras `pad_sequences` semantics (maxlen None: the longest row).

        `truncating="pre"` drops tokens from the start of long rows, "post" from the end; `padding="pre"`
        puts `value` before short rows, "post" after.
        """
        for name, given in (("padding", padding), ("truncating", truncating)):
            if given not in ("pre", "post"):
                raise ArgumentError(f"`{name}` must be 'pre' or 'post', got {given!r}.")
        lengths = self.lengths()
        if maxlen is None:
            maxlen = int(lengths.max()) if len(self) else 0
        if isinstance(maxlen, bool) or not isinstance(maxlen, (int, np.integer)) or maxlen < 0:
            raise ArgumentError(f"`maxlen` must be a non-negative integer, got {maxlen!r}.")
        out = np.full((len(self), int(maxlen)), value, dtype=np.int32)
        kept = np.minimum(lengths, maxlen)
        source_start = self.offsets[:-1] + (lengths - kept if truncating == "pre" else 0)
        target_start = (maxlen - kept) if padding == "pre" else np.zeros_like(kept)
        kept_offsets = _offsets_from_lengths(kept)
        rows = _row_ids(kept_offsets)
        within = np.arange(kept_offsets[-1], dtype=np.int64) - kept_offsets[rows]
        out[rows, target_start[rows] + within] = self.tokens[source_start[rows] + within]
        return out
