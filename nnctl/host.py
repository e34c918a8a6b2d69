"""What this machine allows: the memory a new allocation can take, sizes in words, and which paths are
regular files (a FIFO would block an open, a device could stream forever) — shared by configs and data."""

from __future__ import annotations

import os
import stat

from nnctl.errors import NnctlError


def available_memory() -> int | None:
    """Bytes a new allocation can take now: Linux's MemAvailable, else physical memory, else None (unknown)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def size_text(nbytes: float) -> str:
    """1536 → "1.5 KiB"; a size no float holds (a crafted header can declare one) as a power of two."""
    if nbytes >= 1 << 60:
        return f"2^{int(nbytes).bit_length() - 1}+ bytes"
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if nbytes < 1024:
            return f"{int(nbytes)} bytes" if unit == "bytes" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} TiB"


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words ("a FIFO (named pipe)")."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a socket" if stat.S_ISSOCK(mode) else "not a regular file"


def check_regular_file(path, what: str = "a data file") -> os.stat_result:
    """`path`'s stat when it is a regular file (after symlinks); an NnctlError naming it before anything opens
    it otherwise."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise NnctlError(f"no such file: {path}") from None
    except OSError as err:
        raise NnctlError(f"cannot read {path}: {err.strerror or err}") from None
    if not stat.S_ISREG(info.st_mode):
        raise NnctlError(f"{path} is {file_kind(info.st_mode)}, not {what}")
    return info


def check_fits(nbytes: int, where: str) -> None:
    """An NnctlError when `nbytes` more cannot fit in this machine's available memory."""
    free = available_memory()
    if free is not None and nbytes > free:
        raise NnctlError(f"{where} needs {size_text(nbytes)} of memory to load, but only {size_text(free)} is "
                         f"available")
