"""A pickle-opcode interpreter that understands exactly one thing: a NumPy 1-D object array of integer rows
(Keras's imdb.npz / reuters.npz), rebuilt by us from validated pieces — no pickle, no `__setstate__`, no calls.

The opcodes are the ones NumPy 1 and 2 write with protocols 2-5 (seen with `pickletools.dis`): globals become
inert names, REDUCE and BUILD are recognised patterns, and every size is checked against the bytes left.
"""

from __future__ import annotations

import pickletools
import struct
from array import array

import numpy as np

from nnctl.data.pickle_lists import ListRef, ListStore
from nnctl.data.pickle_parts import (
    DTYPE, ENCODE, FALSE, FROMBUFFER, GLOBALS, INT_CODES, NDARRAY, RECONSTRUCT, TRUE, ArrayShell, DtypeShell, Name,
    ObjectRows, PickleRefused, dtype_from_state, integer_row, is_int, kind_of, latin1_bytes)

MAX_STACK = 1 << 16   # Python's pickler appends in batches of 1000 items; nothing legitimate nears this
MAX_MARKS = 64        # a NumPy object array nests MARKs 4 deep
_PAD = 16             # zero bytes after the payload: an op that runs past the end reads these, then is refused


class _Interpreter:
    """One pass over one payload: a stack, MARKs and a memo, each bounded, and the opcodes below."""

    def __init__(self, payload: bytes, rows: int):
        self.data = bytes(payload) + bytes(_PAD)
        self.end = len(payload)
        self.rows = rows
        self.stack: list = []
        self.marks: list[int] = []
        # the memo, as two parallel columns: a list's number (-1 for anything else), or the thing itself
        self.memo_lists, self.memo_things = array("i"), []
        # Budgets in payload bytes, so memory stays a small multiple of the payload: a legitimate pickle has one
        # list per row (each >= 2 bytes: EMPTY_LIST, MEMOIZE), one memo entry per object it made (>= 2 bytes
        # each), and per integer-array row (~70 bytes) 7 tuples, 3 strings, a dtype and an array shell.
        size = len(payload)
        self.lists = ListStore(max_lists=min(rows, size // 2) + 2, max_rows=rows)
        self.memo_budget = size // 2 + 64
        self.object_budget = size // 4 + 256
        self.built = False

    # --- reading --------------------------------------------------------------------------------------------
    def take(self, pos: int, size: int) -> bytes:
        if size < 0 or pos + size > self.end:
            raise PickleRefused(f"a length of {size} bytes runs past the end of the pickle")
        return self.data[pos:pos + size]

    def sized(self, pos: int, width: int, fmt: str) -> tuple[bytes, int]:
        """A length-prefixed string: the prefix is `width` bytes in `fmt`; (its bytes, the next position)."""
        if pos + width > self.end:
            raise PickleRefused("the pickle ends inside a length")
        (size,) = struct.unpack_from(fmt, self.data, pos)
        return self.take(pos + width, size), pos + width + size

    def text(self, raw: bytes) -> str:
        try:
            return raw.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            raise PickleRefused("a string is not valid UTF-8") from None

    # --- the stack ----------------------------------------------------------------------------------------------
    def pop_mark(self) -> list:
        if not self.marks:
            raise PickleRefused("an opcode needs a MARK that is not there")
        start = self.marks.pop()
        items = self.stack[start:]
        del self.stack[start:]
        return items

    def pop(self, count: int = 1) -> list:
        if len(self.stack) - count < (self.marks[-1] if self.marks else 0):
            raise PickleRefused("an opcode pops more items than the stack holds")
        items = self.stack[-count:]
        del self.stack[-count:]
        return items

    def put(self, index: int) -> None:
        if not self.stack:
            raise PickleRefused("a memo entry refers to an empty stack")
        top = self.stack[-1]
        number, thing = (top.number, None) if type(top) is ListRef else (-1, top)
        if index == len(self.memo_things):
            if index >= self.memo_budget:
                raise PickleRefused(f"more than {self.memo_budget} memo entries in a {self.end}-byte pickle")
            self.memo_lists.append(number)
            self.memo_things.append(thing)
        elif index < len(self.memo_things):
            self.memo_lists[index], self.memo_things[index] = number, thing
        else:  # NumPy's pickler numbers memo entries in order; a gap only comes from a crafted file
            raise PickleRefused(f"memo entry {index} skips past the {len(self.memo_things)} entries made")

    def get(self, index: int) -> None:
        if index >= len(self.memo_things):
            raise PickleRefused(f"memo entry {index} does not exist")
        number = self.memo_lists[index]
        self.stack.append(ListRef(number) if number >= 0 else self.memo_things[index])

    def made(self, thing):
        """`thing` (a tuple, string, dtype or array shell), counted against the object budget."""
        self.object_budget -= 1
        if self.object_budget < 0:
            raise PickleRefused(f"more objects than a {self.end}-byte NumPy pickle makes")
        return thing

    def append(self, items: list) -> None:
        if not self.stack or type(self.stack[-1]) is not ListRef:
            raise PickleRefused("APPEND to something that is not a list")
        if not items:
            return
        try:  # array('q') takes Python ints only (bools are pushed as Name markers) and checks the range
            ints = array("q", items)
        except TypeError:
            ints = None
        except OverflowError:
            raise PickleRefused("an integer does not fit in 64 bits") from None
        if ints is not None:
            self.lists.append_ints(self.stack[-1].number, ints)
        else:
            self.lists.append_rows(self.stack[-1].number, items)

    # --- REDUCE and BUILD: the only calls NumPy's pickles make, as recognised patterns -------------------------
    def reduce(self) -> None:
        func, args = self.pop(2)
        if type(args) is not tuple:
            raise PickleRefused("REDUCE arguments are not a tuple")
        # (type checks before every comparison: `==` on an ndarray the payload built would not be a bool)
        if func is RECONSTRUCT and len(args) == 3 and args[0] is NDARRAY and type(args[1]) is tuple \
                and len(args[1]) == 1 and is_int(args[1][0], 0) and type(args[2]) in (bytes, str):
            self.stack.append(self.made(ArrayShell()))
        elif func is DTYPE and len(args) == 3 and type(args[0]) is str and type(args[1]) is Name:
            if args[0] not in INT_CODES and args[0] not in ("O8", "O4"):
                raise PickleRefused(f"dtype {args[0][:20]!r} is neither object nor integer")
            self.stack.append(self.made(DtypeShell(args[0])))
        elif func is ENCODE and len(args) == 2 and type(args[0]) is str and type(args[1]) is str \
                and args[1] in ("latin1", "latin-1"):
            self.stack.append(latin1_bytes(args[0]))
        elif func is FROMBUFFER and len(args) == 4:
            buffer, dtype, shape, _order = args
            self.stack.append(integer_row(buffer, dtype, shape))
        else:
            raise PickleRefused(f"a call of {kind_of(func)} that NumPy's object-array pickles never make")

    def build(self) -> None:
        (state,) = self.pop(1)
        if not self.stack:
            raise PickleRefused("BUILD with nothing to build")
        target = self.stack[-1]
        if type(target) is DtypeShell and target.dtype is None:
            target.dtype = dtype_from_state(target.code, state)
        elif type(target) is ArrayShell and target.array is None:
            target.array = self.array_from_state(state)
        else:
            raise PickleRefused(f"BUILD on a {kind_of(target)}")

    def array_from_state(self, state):
        """The ndarray `__setstate__` would make of `state`, made by us once every part is checked."""
        if type(state) is not tuple or len(state) not in (4, 5) or (len(state) == 5 and not is_int(state[0], 1)):
            raise PickleRefused("an array's state is not NumPy's (version, shape, dtype, order, data)")
        shape, dtype, _fortran, data = state[-4:]
        if type(dtype) is not DtypeShell or dtype.dtype is None:
            raise PickleRefused("an array's dtype is not a dtype")
        if not dtype.dtype.hasobject:
            return integer_row(data, dtype, shape)
        if type(shape) is not tuple or len(shape) != 1 or type(shape[0]) is not int:
            raise PickleRefused("the object array is not 1-D")
        if shape[0] != self.rows:
            raise PickleRefused(f"the pickle declares {shape[0]} rows, the .npy header {self.rows}")
        have = self.lists.row_count(data.number) if type(data) is ListRef else None
        if have != shape[0]:
            raise PickleRefused(f"the object array declares {shape[0]} rows but holds "
                                f"{'something else' if have is None else have}")
        if self.built:
            raise PickleRefused("a second object array in one pickle")
        self.built = True
        return ObjectRows(data.number)  # its rows are read out after STOP, when no opcode can change them

    # --- the loop -------------------------------------------------------------------------------------------
    def run(self):
        data, stack, end = self.data, self.stack, self.end
        push = stack.append
        pos = 0
        while True:
            if pos >= end:
                raise PickleRefused("the pickle ends before its STOP")
            op = data[pos]
            pos += 1
            # the integer opcodes first: they are 99 % of a Keras file
            if op == 0x4B:    # BININT1
                push(data[pos])
                pos += 1
            elif op == 0x4D:  # BININT2
                push(data[pos] | data[pos + 1] << 8)
                pos += 2
            elif op == 0x4A:  # BININT
                push(int.from_bytes(data[pos:pos + 4], "little", signed=True))
                pos += 4
            elif op == 0x28:  # MARK
                if len(self.marks) >= MAX_MARKS:
                    raise PickleRefused(f"MARKs nest deeper than {MAX_MARKS}")
                self.marks.append(len(stack))
            elif op == 0x65:  # APPENDS
                self.append(self.pop_mark())
            elif op == 0x61:  # APPEND
                self.append(self.pop(1))
            elif op == 0x5D:  # EMPTY_LIST
                push(self.lists.new())
            elif op == 0x94:  # MEMOIZE
                self.put(len(self.memo_things))
            elif op == 0x71:  # BINPUT
                self.put(data[pos])
                pos += 1
            elif op == 0x72:  # LONG_BINPUT
                self.put(int.from_bytes(data[pos:pos + 4], "little"))
                pos += 4
            elif op == 0x68:  # BINGET
                self.get(data[pos])
                pos += 1
            elif op == 0x6A:  # LONG_BINGET
                self.get(int.from_bytes(data[pos:pos + 4], "little"))
                pos += 4
            else:
                pos = self.rare(op, pos)
                if pos < 0:
                    break
            if pos > end:
                raise PickleRefused("the pickle ends inside an opcode")
            if len(stack) > MAX_STACK:
                raise PickleRefused(f"more than {MAX_STACK} items on the pickle stack")
        if len(stack) != 1 or type(stack[0]) is not ArrayShell or type(stack[0].array) is not ObjectRows:
            raise PickleRefused("the pickle does not hold one object array")
        number = stack[0].array.number
        if self.lists.row_count(number) != self.rows:  # rows appended after the BUILD that counted them
            raise PickleRefused(f"the object array declares {self.rows} rows but holds {self.lists.row_count(number)}")
        self.data = self.memo_lists = self.memo_things = None  # done with: free them before the rows are copied
        return self.lists.flatten(number, limit=self.end)

    def rare(self, op: int, pos: int) -> int:
        """Every other opcode NumPy's object-array pickles use; returns the next position (-1 after STOP)."""
        data, push = self.data, self.stack.append
        if op == 0x2E:  # STOP
            return -1
        if op == 0x80:  # PROTO: once, first, as every pickler writes it
            if pos != 1:
                raise PickleRefused(f"a second PROTO at byte {pos - 1}")
            if not 2 <= data[pos] <= 5:
                raise PickleRefused(f"pickle protocol {data[pos]} (NumPy writes 2 to 5)")
            return pos + 1
        if op == 0x95:  # FRAME: only a length; the opcodes inside run on as usual
            size = int.from_bytes(data[pos:pos + 8], "little")
            if pos + 8 + size > self.end:
                raise PickleRefused(f"a FRAME of {size} bytes runs past the end of the pickle")
            return pos + 8
        if op in (0x4E, 0x88, 0x89):  # NONE, NEWTRUE, NEWFALSE
            push({0x4E: None, 0x88: TRUE, 0x89: FALSE}[op])
            return pos
        if op == 0x8A:  # LONG1: an integer of up to 8 bytes (Python 2 longs)
            size = data[pos]
            if size > 8:
                raise PickleRefused("an integer does not fit in 64 bits")
            push(int.from_bytes(self.take(pos + 1, size), "little", signed=True))
            return pos + 1 + size
        if op in _STRINGS:
            width, fmt, kind = _STRINGS[op]
            raw, pos = self.sized(pos, width, fmt)
            push(self.made(self.text(raw) if kind == "text" else raw.decode("latin-1") if kind == "latin1" else raw))
            return pos
        if op == 0x63:  # GLOBAL "module\nname\n"
            module, pos = self.line(pos)
            name, pos = self.line(pos)
            push(self.global_(module, name))
            return pos
        if op == 0x93:  # STACK_GLOBAL
            module, name = self.pop(2)
            if type(module) is not str or type(name) is not str:
                raise PickleRefused("STACK_GLOBAL of something that is not a name")
            push(self.global_(module, name))
            return pos
        if op in (0x29, 0x85, 0x86, 0x87, 0x74):  # EMPTY_TUPLE, TUPLE1, TUPLE2, TUPLE3, TUPLE
            # (the budget also keeps tuples from nesting millions deep)
            push(self.made(tuple(self.pop_mark()) if op == 0x74 else tuple(self.pop(op - 0x84)) if op != 0x29 else ()))
        elif op == 0x52:  # REDUCE
            self.reduce()
        elif op == 0x62:  # BUILD
            self.build()
        else:
            name = getattr(pickletools.code2op.get(chr(op)), "name", "unknown")
            raise PickleRefused(f"opcode {name} (0x{op:02x}) at byte {pos - 1}: NumPy's object-array pickles "
                                f"never use it")
        return pos

    def line(self, pos: int) -> tuple[str, int]:
        stop = self.data.find(b"\n", pos, min(pos + 256, self.end))
        if stop < 0:
            raise PickleRefused("a GLOBAL name is not a short line")
        return self.text(self.data[pos:stop]), stop + 1

    def global_(self, module: str, name: str) -> Name:
        found = GLOBALS.get((module, name))
        if found is None:
            raise PickleRefused(f"refusing to unpickle {module[:80]}.{name[:80]}: only NumPy arrays and plain "
                                f"lists/ints are allowed")
        return found


# opcode: (length-prefix width, struct format, what the bytes are)
_STRINGS = {
    0x8C: (1, "<B", "text"), 0x58: (4, "<I", "text"), 0x8D: (8, "<Q", "text"),             # (SHORT_)BINUNICODE(8)
    0x43: (1, "<B", "bytes"), 0x42: (4, "<I", "bytes"), 0x8E: (8, "<Q", "bytes"),           # (SHORT_)BINBYTES(8)
    0x96: (8, "<Q", "bytes"),                                                              # BYTEARRAY8
    0x55: (1, "<B", "latin1"), 0x54: (4, "<i", "latin1"),                                 # Python 2 strings
}


def decode_object_rows(payload: bytes, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, offsets) of the 1-D object array of `rows` integer rows pickled in `payload` (row r is
    tokens[offsets[r]:offsets[r + 1]], both int64); PickleRefused for anything else.

    Memory stays a small multiple of `len(payload)`: rows live flat in one buffer, and lists, memo entries and
    other objects are budgeted by the payload's size; rows shared through the memo may not add up to more
    tokens than the payload has bytes."""
    if len(payload) >= 1 << 31:
        raise PickleRefused(f"a pickle of {len(payload)} bytes (nnctl decodes them below 2 GiB)")
    if not 0 <= rows <= len(payload):
        raise PickleRefused(f"the header declares {rows} rows for {len(payload)} bytes of pickle")
    return _Interpreter(payload, rows).run()
