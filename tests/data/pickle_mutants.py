"""Seeded mutants of the pickles NumPy writes for object arrays of int lists, for the unpickler fuzz test, and
a runner that counts outcomes of any nnctl checkout in crash-proof subprocesses (segfaults are counted).

    PYTHONPATH=/work/base python tests/data/pickle_mutants.py --count 5000   # the decoder before issue #14
"""

from __future__ import annotations

import io
import pickle
import pickletools
import random
import struct
import warnings

import numpy as np

_RECONSTRUCT = np.empty(0).__reduce__()[0]
# opcodes whose argument starts with a length: name -> (bytes of the length, struct format)
_LENGTHS = {"FRAME": (8, "<Q"), "BINUNICODE": (4, "<I"), "SHORT_BINUNICODE": (1, "<B"), "BINUNICODE8": (8, "<Q"),
            "BINBYTES": (4, "<I"), "SHORT_BINBYTES": (1, "<B"), "BINBYTES8": (8, "<Q"), "BYTEARRAY8": (8, "<Q"),
            "LONG1": (1, "<B"), "BINSTRING": (4, "<i"), "SHORT_BINSTRING": (1, "<B")}
_HUGE = [2**31 - 1, 2**32 - 1, 2**63 - 1, 2**64 - 1, 10**9, 255, 65535]


def object_array(rows) -> np.ndarray:
    array = np.empty(len(rows), dtype=object)
    for i, row in enumerate(rows):
        array[i] = row
    return array


def npy_member(payload: bytes, rows: int) -> bytes:
    """A .npy member: the header of a 1-D object array of `rows` rows, then `payload` (a pickle)."""
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": "|O", "fortran_order": False, "shape": (rows,)})
    return out.getvalue() + payload


def _numpy_pickle(array: np.ndarray, protocol: int) -> bytes:
    """The pickle a NumPy writer leaves after the .npy header: NumPy 2's `np.save(allow_pickle=True)` itself for
    protocol 4 (its fixed choice), `pickle.dumps` for the protocols other writers use (NumPy 1: 3)."""
    if protocol != 4:
        return pickle.dumps(array, protocol=protocol)
    out = io.BytesIO()
    np.save(out, array, allow_pickle=True)
    out.seek(0)
    np.lib.format.read_magic(out)
    np.lib.format.read_array_header_1_0(out)
    return out.read()


class _Python2Pickler(pickle._Pickler):
    """Python 2's pickler as far as NumPy's arrays show it: `str` and `bytes` both as (SHORT_)BINSTRING."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_string(self, obj):
        raw = obj.encode("latin-1") if isinstance(obj, str) else obj
        self.write((b"U" + bytes([len(raw)])) if len(raw) < 256 else (b"T" + struct.pack("<i", len(raw))))
        self.write(raw)
        self.memoize(obj)

    dispatch[str] = dispatch[bytes] = save_string


def _python2_pickle(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    _Python2Pickler(out, protocol=2).dump(array)
    return out.getvalue().replace(b"numpy._core", b"numpy.core")


class _Overdeclared:
    """The payload that crashed NumPy: `_reconstruct` + a `__setstate__` tuple whose shape outruns its list."""

    def __init__(self, shape, dtype, data):
        self.state = (1, shape, dtype, False, data)

    def __reduce__(self):
        return _RECONSTRUCT, (np.ndarray, (0,), b"b"), self.state


def base_pickles() -> list[tuple[str, int, bytes]]:
    """(name, rows, pickle) of small realistic object arrays, written by NumPy at protocols 2-5 (NumPy 2's
    module names), 2-3 with NumPy 1's `numpy.core` spelling, Python 2's strings, rows as lists and as int32 arrays."""
    rng = np.random.default_rng(14)
    lists = [rng.integers(0, 30000, rng.integers(0, 12)).tolist() for _ in range(7)] + [[5]]
    arrays = [np.array(row, np.int32) for row in lists[:4]]
    out = []
    for protocol in (2, 3, 4, 5):
        out.append((f"lists-p{protocol}", len(lists), _numpy_pickle(object_array(lists), protocol)))
        out.append((f"arrays-p{protocol}", len(arrays), _numpy_pickle(object_array(arrays), protocol)))
    for protocol in (2, 3):  # protocols 2-3 name globals in text lines, so the NumPy 1 spelling is a replace
        payload = _numpy_pickle(object_array(lists), protocol).replace(b"numpy._core", b"numpy.core")
        out.append((f"numpy1-p{protocol}", len(lists), payload))
    out.append(("python2-lists", len(lists), _python2_pickle(object_array(lists))))
    out.append(("python2-arrays", len(arrays), _python2_pickle(object_array(arrays))))
    return out


def overdeclared_pickles() -> list[tuple[str, int, bytes]]:
    """The known SIGSEGV payload and its relatives: declared shapes far past the list or the bytes."""
    out = []
    for declared in (2, 1000, 10**7, 2**31, 2**40):
        for header in (1, min(declared, 100)):
            for protocol in (2, 4):
                payload = pickle.dumps(_Overdeclared((declared,), np.dtype(object), [[1]]), protocol=protocol)
                out.append((f"overdeclared-{declared}-h{header}-p{protocol}", header, payload))
    for shape, data in (((10**6,), b"\x01\x00\x00\x00"), ((2, 2), b"\x00" * 16), ((3,), [[1], [2]]),
                        ((2**62,), b"")):
        payload = pickle.dumps(_Overdeclared(shape, np.dtype(np.int32), data), protocol=4)
        out.append((f"overdeclared-int-{shape}", 1, payload))
    return out


def _ops(payload: bytes):
    try:
        with warnings.catch_warnings():  # genops decodes text opcodes a mutant may have garbled
            warnings.simplefilter("ignore")
            return list(pickletools.genops(payload))
    except Exception:  # noqa: BLE001 - a mutant need not parse; it only steers where we mutate
        return []


def _huge_length(rng: random.Random, payload: bytes) -> bytes:
    """A length-prefixed opcode's length (FRAME, BINUNICODE, BINBYTES, LONG1, ...) set to a huge value."""
    targets = [(op.name, pos) for op, _, pos in _ops(payload) if op.name in _LENGTHS]
    if not targets:
        return payload
    name, pos = rng.choice(targets)
    width, fmt = _LENGTHS[name]
    limit = 2 ** (8 * width - (1 if fmt.islower() else 0)) - 1
    value = min(rng.choice(_HUGE), limit)
    return payload[:pos + 1] + struct.pack(fmt, value) + payload[pos + 1 + width:]


def _inflated_count(rng: random.Random, payload: bytes) -> bytes:
    """An integer opcode (a shape, a count, a version) replaced by a BININT of a huge or negative value."""
    targets = [(pos, op.name) for op, _, pos in _ops(payload) if op.name in ("BININT1", "BININT2", "BININT")]
    if not targets:
        return payload
    pos, name = rng.choice(targets)
    size = {"BININT1": 1, "BININT2": 2, "BININT": 4}[name]
    value = rng.choice([2**31 - 1, -1, -(2**31), 10**6, 0, 1000])
    return payload[:pos] + b"J" + struct.pack("<i", value) + payload[pos + 1 + size:]


def _flip(rng, payload):
    data = bytearray(payload)
    for _ in range(rng.randint(1, 4)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


def _insert(rng, payload):
    at = rng.randrange(len(payload) + 1)
    return payload[:at] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 8))) + payload[at:]


def _delete(rng, payload):
    at = rng.randrange(len(payload))
    return payload[:at] + payload[at + rng.randint(1, 8):]


def _splice(rng, payload):
    """A run of another spot's bytes copied here: opcodes out of their context (memo gets, BUILDs, REDUCEs)."""
    start = rng.randrange(len(payload))
    chunk = payload[start:start + rng.randint(1, 24)]
    at = rng.randrange(len(payload) + 1)
    return payload[:at] + chunk + payload[at:]


def _reorder(rng, payload):
    """Whole opcodes moved, repeated or dropped: structure out of order (rows interleaved, a BUILD twice, ...)."""
    starts = [pos for _, _, pos in _ops(payload)]
    if len(starts) < 3:
        return payload
    ops = [payload[a:b] for a, b in zip(starts, starts[1:] + [len(payload)])]
    i, j = rng.randrange(len(ops)), rng.randrange(len(ops))
    kind = rng.random()
    if kind < 0.4:
        ops[i], ops[j] = ops[j], ops[i]
    elif kind < 0.8:
        ops.insert(j, ops[i])
    else:
        del ops[i]
    return b"".join(ops)


_MUTATIONS = [_flip, _insert, _delete, _splice, _huge_length, _inflated_count, _reorder]


def mutants(seed: int, count: int):
    """`count` (label, rows, payload) cases: truncations of every base pickle at every offset first, then the
    overdeclared payloads, then random mutations (one to three stacked), all from `seed`."""
    rng = random.Random(seed)
    bases = base_pickles()
    fixed = [(f"{name}-cut{cut}", rows, payload[:cut]) for name, rows, payload in bases
             for cut in range(len(payload))] + overdeclared_pickles()
    rng.shuffle(fixed)
    made = 0
    for case in fixed[:count // 3]:
        yield case
        made += 1
    while made < count:
        name, rows, payload = rng.choice(bases)
        steps = []
        for _ in range(rng.choice((1, 1, 2, 3))):
            mutation = rng.choice(_MUTATIONS)
            payload = mutation(rng, payload) or payload
            steps.append(mutation.__name__.strip("_"))
        if rng.random() < 0.1:
            rows = rng.choice([0, rows + 1, 10**6, 2**31])
        yield f"{name}-{'+'.join(steps)}", rows, payload
        made += 1


def classify(loaded: dict) -> str:
    """"ok" when every object member is a 1-D object array of 1-D integer rows, else "invalid"."""
    for array in loaded.values():
        if array.dtype == object:
            if array.ndim != 1 or not all(isinstance(row, np.ndarray) and row.ndim == 1 and row.dtype.kind in "iu"
                                          for row in array):
                return "invalid"
    return "ok"


# --- the before/after counter: a worker subprocess per run of mutants, restarted after each crash -------------

def _worker(cases_file: str, start: int, folder: str) -> None:
    import os
    import resource
    import sys
    import zipfile

    from nnctl.data.safe_pickle import load_npz_objects
    from nnctl.errors import NnctlError

    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
    with open(cases_file, "rb") as handle:
        cases = pickle.load(handle)  # our own list of (label, rows, bytes), written by the parent
    path = os.path.join(folder, "mutant.npz")
    for index in range(start, len(cases)):
        _, rows, payload = cases[index]
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("x.npy", npy_member(payload, rows))
        print(f"start {index}", flush=True)
        try:
            outcome = classify(load_npz_objects(path))
        except NnctlError:
            outcome = "refused"
        except BaseException as err:  # noqa: BLE001 - counting exactly what escapes is the point
            outcome = f"uncaught {type(err).__name__}"
        print(f"done {index} {outcome}", flush=True)
        sys.stdout.flush()


def count_outcomes(count: int, seed: int = 14, timeout_s: float = 20.0) -> dict[str, int]:
    import collections
    import os
    import select
    import signal
    import subprocess
    import sys
    import tempfile

    cases = list(mutants(seed, count))
    tally = collections.Counter()
    with tempfile.TemporaryDirectory() as folder:
        cases_file = os.path.join(folder, "cases.pickle")
        with open(cases_file, "wb") as handle:
            pickle.dump(cases, handle)
        start = 0
        while start < len(cases):
            proc = subprocess.Popen([sys.executable, __file__, "--worker", cases_file, str(start), folder],
                                    stdout=subprocess.PIPE, text=True)
            current, hung = start, False
            while True:  # one line per start and per outcome; silence past timeout_s is a hang
                ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
                line = proc.stdout.readline() if ready else None
                if line is None:
                    hung = True
                    proc.kill()
                    break
                if not line:
                    break
                kind, index, *outcome = line.split(" ", 2)
                if kind == "start":
                    current = int(index)
                else:
                    tally[outcome[0].strip()] += 1
                    current = int(index) + 1
            code = proc.wait()
            if current < len(cases):
                tally["hang" if hung else "crash " + (signal.Signals(-code).name if code < 0 else f"exit {code}")] += 1
                current += 1
            start = current
    return dict(tally)


if __name__ == "__main__":
    import sys

    if sys.argv[1] == "--worker":
        _worker(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        import argparse

        parser = argparse.ArgumentParser()
        parser.add_argument("--count", type=int, default=5000)
        parser.add_argument("--seed", type=int, default=14)
        args = parser.parse_args()
        print(count_outcomes(args.count, args.seed))
