"""User-facing error types: each carries *where* the problem is and *what* is allowed.

The CLI turns any `NnctlError` into one red line and exit code 2; nothing else is caught.
"""

from __future__ import annotations

import difflib


class NnctlError(Exception):
    """Base of every error that is the user's to fix (bad argument, shape, name or config)."""


class ArgumentError(NnctlError, ValueError):
    """A constructor argument is out of range or of the wrong type; the message names it in backticks."""


class ShapeError(NnctlError, ValueError):
    """Two layers (or a layer and the data) disagree on a shape."""


class UnknownNameError(NnctlError, ValueError):
    """A registry lookup failed; carries the closest match and the allowed names."""

    def __init__(self, kind: str, name: str, allowed: list[str], spellings: list[str] | None = None):
        """`allowed` is listed; the suggestion may also be one of `spellings` (aliases)."""
        self.kind, self.name, self.allowed = kind, name, sorted(allowed)
        self.suggestion = did_you_mean(name, sorted(set(allowed) | set(spellings or ())))
        hint = f" — did you mean '{self.suggestion}'?" if self.suggestion else ""
        super().__init__(f"unknown {kind} {show(name)}{hint} (allowed: {', '.join(self.allowed)})")


# Names people bring from other tools, too far from ours in spelling for difflib to find (`lr` is 2 letters).
WELL_KNOWN_NAMES = {"lr": "learning_rate", "gpu": "cuda"}


def did_you_mean(name: str, allowed: list[str]) -> str | None:
    """The closest allowed spelling of `name`, or None when nothing is close."""
    if not isinstance(name, str) or len(name) > 100:  # nothing that long is a misspelling of a short name
        return None
    known = WELL_KNOWN_NAMES.get(name.lower())
    if known in allowed:
        return known
    matches = difflib.get_close_matches(name.lower(), [a.lower() for a in allowed], n=1, cutoff=0.6)
    if not matches:
        return None
    return next(a for a in allowed if a.lower() == matches[0])


def check_positive_int(name: str, value) -> int:
    """`value` as an int > 0, or an ArgumentError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ArgumentError(f"`{name}` must be a positive integer, got {show(value)}.")
    return value


def check_float_range(name: str, value, low: float, high: float, *, low_open=False, high_open=False) -> float:
    """`value` as a float inside [low, high] (open ends on request), or an ArgumentError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentError(f"`{name}` must be a number, got {show(value)}.")
    value = float(value)
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        lb, hb = ("(" if low_open else "["), (")" if high_open else "]")
        raise ArgumentError(f"`{name}` must be a float in {lb}{low}, {high}{hb}, got {show(value)}.")
    return value


SHOWN_CHARACTERS = 200  # the most of a user's value any message repeats


def clip(text: str, limit: int = SHOWN_CHARACTERS) -> str:
    """`text` (any value, as str) with control characters escaped and, past `limit` characters, its middle cut
    out."""
    text = str(text)
    text = "".join(ch if ch.isprintable() or ch == " " else repr(ch)[1:-1] for ch in text[:4 * limit + 8])
    if len(text) <= limit:
        return text
    tail = limit // 4
    return f"{text[:limit - tail - 1]}…{text[-tail:]}"


def show(value, limit: int = SHOWN_CHARACTERS) -> str:
    """A user's value as a message quotes it (repr), never longer than about `limit` characters."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"an integer of {len(str(abs(value))) if value.bit_length() < 13000 else 'thousands of'} digits"
    if isinstance(value, str) and len(value) > limit:
        quoted = clip(repr(value[:limit // 2]), limit)
        return f"{quoted[:-1]}…{quoted[-1]} ({len(value):,} characters)"
    if isinstance(value, (list, dict, tuple, set)) and len(value) > limit:
        return f"a {type(value).__name__} of {len(value):,} entries"
    try:
        return clip(repr(value), limit)
    except (ValueError, RecursionError):  # repr of a huge int, or of a structure that holds itself
        return f"a {type(value).__name__}"
