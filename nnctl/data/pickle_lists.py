"""The lists a pickle builds, stored flat: every row's integers in one shared int64 buffer (a row is a start and
a length), so memory stays a few bytes per payload byte however many rows a file declares.

A list is known by its number; the interpreter's stack and memo hold `ListRef`s (or bare numbers) to it.
"""

from __future__ import annotations

from array import array

import numpy as np

from nnctl.data.pickle_parts import ArrayShell, PickleRefused, kind_of

_FRESH, _ROW, _OUTER = 0, 1, 2


class ListRef:
    """A list on the interpreter's stack; two refs with the same `number` are the same list."""

    __slots__ = ("number",)

    def __init__(self, number: int):
        self.number = number


class _Outer:
    """A list of rows: row lists by number, integer arrays (rows pickled as ndarrays) as -(index + 1)."""

    __slots__ = ("members", "arrays")

    def __init__(self):
        self.members, self.arrays = array("i"), []


class ListStore:
    def __init__(self, max_lists: int, max_rows: int):
        self.tokens = array("q")
        # int32 positions (the interpreter refuses payloads of 2 GiB or more, so no count reaches 2**31)
        self.starts, self.lengths, self.kinds = array("i"), array("i"), bytearray()
        self.outers: dict[int, _Outer] = {}
        self.max_lists, self.max_rows = max_lists, max_rows

    def new(self) -> ListRef:
        if len(self.kinds) >= self.max_lists:
            raise PickleRefused(f"more than {self.max_lists} lists (the rows declared, plus the array's list)")
        self.starts.append(0)
        self.lengths.append(0)
        self.kinds.append(_FRESH)
        return ListRef(len(self.kinds) - 1)

    def append_ints(self, number: int, ints: array) -> None:
        """A row's integers, which must follow its earlier ones in the buffer (NumPy pickles a row whole)."""
        if self.kinds[number] == _OUTER:
            raise PickleRefused("a list mixes integers and rows")
        if self.lengths[number] == 0:
            self.starts[number] = len(self.tokens)
        elif self.starts[number] + self.lengths[number] != len(self.tokens):
            raise PickleRefused("rows' integers interleave, which NumPy's pickles never do")
        self.tokens.extend(ints)
        self.lengths[number] += len(ints)
        self.kinds[number] = _ROW

    def append_rows(self, number: int, items: list) -> None:
        """Rows (row lists or integer arrays) into list `number`, which becomes the array's list of rows."""
        if self.kinds[number] == _ROW:
            raise PickleRefused("a row holds something other than integers")
        outer = self.outers.get(number) or self.outers.setdefault(number, _Outer())
        if len(outer.members) + len(items) > self.max_rows:
            raise PickleRefused(f"a list holds more rows than the {self.max_rows} the header declares")
        for item in items:
            if type(item) is ListRef:
                if self.kinds[item.number] == _OUTER or item.number == number:
                    raise PickleRefused("rows nest deeper than an array of integer lists")
                self.kinds[item.number] = _ROW
                outer.members.append(item.number)
                continue
            row = item.array if type(item) is ArrayShell else item
            if type(row) is not np.ndarray:
                raise PickleRefused(f"a row is a {kind_of(item)}, not a list of integers")
            outer.arrays.append(row)
            outer.members.append(-len(outer.arrays))
        self.kinds[number] = _OUTER

    def row_count(self, number: int) -> int | None:
        """How many rows list `number` holds; None when it is a row of integers itself."""
        if self.kinds[number] == _ROW:
            return None
        outer = self.outers.get(number)
        return len(outer.members) if outer else 0

    def flatten(self, number: int, limit: int) -> tuple[np.ndarray, np.ndarray]:
        """(tokens, offsets) of list `number`'s rows: row r is tokens[offsets[r]:offsets[r + 1]]. Rows shared
        through the memo may repeat, but never past `limit` tokens in all (counted before anything is copied)."""
        outer = self.outers.get(number) or _Outer()
        members = np.frombuffer(outer.members, np.int32) if len(outer.members) else np.zeros(0, np.int32)
        buffer = np.frombuffer(self.tokens, np.int64) if len(self.tokens) else np.zeros(0, np.int64)
        if not outer.arrays:  # rows that are all lists: a gather by row number, and mostly not even that
            lengths = np.frombuffer(self.lengths, np.int32)[members]
            offsets = self._offsets(lengths, limit)
            starts = np.frombuffer(self.starts, np.int32)[members]
            if offsets[-1] == len(buffer) and np.array_equal(starts, offsets[:-1]):
                return buffer, offsets  # NumPy's own layout: the rows already lie in order, back to back
            return buffer[np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])], offsets
        is_list = members >= 0
        lengths = np.zeros(len(members), np.int64)
        lengths[is_list] = np.frombuffer(self.lengths, np.int32)[members[is_list]]
        for place in np.flatnonzero(~is_list):
            lengths[place] = len(outer.arrays[-members[place] - 1])
        offsets = self._offsets(lengths, limit)
        tokens = np.empty(offsets[-1], np.int64)
        starts = np.frombuffer(self.starts, np.int32)[members[is_list]]
        tokens[np.repeat(is_list, lengths)] = buffer[np.repeat(starts - offsets[:-1][is_list], lengths[is_list])
                                                     + np.flatnonzero(np.repeat(is_list, lengths))]
        for place in np.flatnonzero(~is_list):
            row = outer.arrays[-members[place] - 1]
            if row.dtype == np.uint64 and len(row) and row.max() > np.iinfo(np.int64).max:
                raise PickleRefused("an integer does not fit in 64 bits")
            tokens[offsets[place]:offsets[place + 1]] = row
        return tokens, offsets

    @staticmethod
    def _offsets(lengths: np.ndarray, limit: int) -> np.ndarray:
        offsets = np.zeros(len(lengths) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        if offsets[-1] > limit:
            raise PickleRefused(f"rows shared through the memo add up to {offsets[-1]} tokens, more than the "
                                f"pickle's {limit} bytes could hold")
        return offsets
