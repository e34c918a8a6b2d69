"""Reading a run file that may be damaged: what stands in its place, size and nesting bounds, and pydantic's
complaints turned into one short line. Every error is a RunFileError naming the file.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from nnctl.errors import NnctlError
from nnctl.host import file_kind

MAX_JSON_BYTES = 256 << 20  # far above any record nnctl writes; refuses a file that would only exhaust memory
MAX_DEPTH = 64  # nnctl's records nest at most 5 deep; deeper input is damage, and would overflow recursive code
_SHOWN = 60  # characters of a damaged value quoted back


class RunFileError(NnctlError):
    """A file of a run folder is missing or damaged: `str()` is "RUN/file: what is wrong"."""

    def __init__(self, path, problem: str):
        self.path, self.problem = Path(path), problem
        super().__init__(f"{path}: {problem}")


# ---- bytes, text and JSON ------------------------------------------------------------------------------------
def read_bytes(path, limit: int | None = None) -> bytes:
    """The bytes of the regular file at `path`; what stands in its place (nothing, a folder, a dangling link, a
    link loop, a FIFO) is a RunFileError. O_NONBLOCK so a FIFO cannot block the open."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise RunFileError(path, "is a symlink to nowhere" if path.is_symlink() else "file is missing") from None
    except OSError as error:
        raise RunFileError(path, _os_problem(error)) from None
    try:  # checked on the descriptor before wrapping it: io refuses a folder's with its own error
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise RunFileError(path, f"is {file_kind(info.st_mode)}, not a file")
        if limit is not None and info.st_size > limit:
            raise RunFileError(path, f"is {info.st_size:,} bytes, more than nnctl ever writes there ({limit:,})")
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as handle:
        try:
            return handle.read()
        except OSError as error:
            raise RunFileError(path, _os_problem(error)) from None


def _os_problem(error: OSError) -> str:
    if error.errno == errno.ELOOP:
        return "is a symlink loop"
    if error.errno == errno.EISDIR:
        return "is a folder, not a file"
    return f"cannot be read ({error.strerror or error})"


def read_text(path) -> str:
    """The UTF-8 text of the file at `path`, or a RunFileError."""
    data = read_bytes(path, MAX_JSON_BYTES)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RunFileError(path, f"is not UTF-8 text (byte {error.start})") from None


def parse_json(data: bytes | str, path, nan_as_null: bool = True) -> Any:
    """`data` parsed as JSON, NaN/±Infinity read as null (how nnctl's records store them) unless not
    `nan_as_null`; a RunFileError when it is empty, not UTF-8, not JSON, or nested deeper than MAX_DEPTH."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise RunFileError(path, f"is not UTF-8 text (byte {error.start})") from None
    if not data.strip():
        raise RunFileError(path, "is empty")
    try:
        value = json.loads(data, parse_constant=(lambda _: None) if nan_as_null else float)
    except RecursionError:
        raise RunFileError(path, f"nests deeper than {MAX_DEPTH} levels") from None
    except ValueError as error:  # JSONDecodeError, or an integer of too many digits
        where = f"line {error.lineno}, column {error.colno}: " if isinstance(error, json.JSONDecodeError) else ""
        raise RunFileError(path, f"is not valid JSON ({where}{clip_text(getattr(error, 'msg', str(error)))})") from None
    if _depth(value) > MAX_DEPTH:
        raise RunFileError(path, f"nests deeper than {MAX_DEPTH} levels")
    return value


def _depth(value) -> int:
    # Iterative, so a deep (but parseable) value cannot overflow the stack here.
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            if level > MAX_DEPTH:
                return level
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def read_json(path) -> Any:
    """The JSON value in the file at `path`, or a RunFileError."""
    return parse_json(read_bytes(path, MAX_JSON_BYTES), path)


def clip_text(text: str) -> str:
    text = str(text)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "…"


def show_value(value) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return clip_text(json.dumps(value) if isinstance(value, str) else repr(value))


def _where(loc) -> str:
    # A key is data too: a damaged file's 10,000-character key is cut like any other value.
    parts = [part if isinstance(part, int) else (str(part) if len(str(part)) <= 40 else str(part)[:39] + "…")
             for part in loc if part not in ("[one]", "[by name]")]  # a union's tags (records._or_by_name)
    return "".join(f"[{part}]" if isinstance(part, int) else (f".{part}" if i else part)
                   for i, part in enumerate(parts))


_EXPECTED = {"int_type": "an integer", "float_type": "a number", "string_type": "a string", "dict_type": "a mapping",
             "list_type": "a list", "bool_type": "true or false", "finite_number": "a finite number",
             "model_type": "a mapping", "model_attributes_type": "a mapping"}


def describe_validation(error: ValidationError, shown: int = 2) -> str:
    """The first problems of a pydantic error as "`key.path` should be …, got …": up to `shown` of them, as many
    as fit in about 160 characters, so that the whole message stays one readable line."""
    parts = []
    for issue in error.errors()[:shown]:
        key = f"`{_where(issue['loc'])}` " if issue["loc"] else ""
        if issue["type"] in ("missing", "extra_forbidden"):
            part = f"{key}is missing" if issue["type"] == "missing" else f"{key}is not a key this file has"
        else:
            expected = _EXPECTED.get(issue["type"])
            message = f"should be {expected}" if expected else issue["msg"].replace("Input should be", "should be")
            part = f"{key}{message[0].lower() + message[1:]}, got {show_value(issue.get('input'))}"
        if parts and len("; ".join(parts + [part])) > 160:
            break
        parts.append(part)
    more = error.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _kind(value) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "true/false", type(None): "null"}.get(
        type(value), "a number")


def validate(model, value, path):
    """`value` validated by `model` (a pydantic model or TypeAdapter); a RunFileError naming `path` otherwise."""
    if not isinstance(value, dict):
        raise RunFileError(path, f"holds {_kind(value)}, expected a JSON object (mapping)")
    try:
        return model.validate_python(value) if isinstance(model, TypeAdapter) else model.model_validate(value)
    except ValidationError as error:
        raise RunFileError(path, describe_validation(error)) from None
    except RecursionError:  # defence in depth: parse_json already bounds the nesting
        raise RunFileError(path, f"nests deeper than {MAX_DEPTH} levels") from None
