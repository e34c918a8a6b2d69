"""File-system errors of run folders as one-line RunWriteErrors (path and cause, never a traceback), and the
checks that a folder can take a new run: no file, broken or looping link, or read-only folder in the way.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from nnctl.errors import NnctlError


class RunWriteError(NnctlError, OSError):
    """A file or folder of a run could not be written (read-only, disk full, a name too long, ...).

    An OSError too (same errno), so code that handles file-system errors keeps working; the message is one
    line naming the path and the cause, e.g. `cannot write runs/x/1/manifest.json: No space left on device`.
    """

    def __init__(self, message: str, cause: OSError | None = None):
        super().__init__(getattr(cause, "errno", None), getattr(cause, "strerror", None) or message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def shown_path(path) -> str:
    """`path` as a message shows it: at most ~200 characters (a 300-character run name is cut in the middle)."""
    text = str(path)
    return text if len(text) <= 200 else f"{text[:140]}…{text[-59:]} ({len(text)} characters)"


def describe_os_error(error: OSError, path=None, doing: str = "write") -> RunWriteError:
    """One line for a failed file-system call: `cannot write PATH: Read-only file system`."""
    if isinstance(error, RunWriteError):
        return error
    path = path if path is not None else error.filename
    cause = error.strerror or str(error) or type(error).__name__
    return RunWriteError(f"cannot {doing} {shown_path(path)}: {cause}", error)


def ancestors(path: Path) -> list[Path]:
    """`path` and the folders above it that the path names, outermost first (`runs`, `runs/name`)."""
    parts = [path]
    while parts[-1].parent != parts[-1] and parts[-1].name:
        parts.append(parts[-1].parent)
    return parts[::-1]


def check_folder(path: Path) -> bool:
    """True when `path` is a folder, False when absent; a RunWriteError saying why no run folder can be made
    inside it otherwise."""
    try:
        os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise RunWriteError(f"cannot create a run in {shown_path(path)}: it is a broken symbolic link "
                                f"(to {shown_path(os.readlink(path))}, which does not exist)") from None
        return False
    except OSError as error:  # a symlink loop (ELOOP), a name too long, a folder we may not enter
        raise describe_os_error(error, path, "create a run in") from None
    if not path.is_dir():
        raise RunWriteError(f"cannot create a run in {shown_path(path)}: it is a file, not a folder")
    return True


def why_unwritable(folder: Path) -> str:
    """The cause to name for a folder we may not write: a read-only file system, or permissions."""
    try:
        if os.statvfs(folder).f_flag & getattr(os, "ST_RDONLY", 1):
            return os.strerror(errno.EROFS)
    except (OSError, AttributeError):  # no statvfs on Windows
        pass
    return os.strerror(errno.EACCES)


def make_folders(path: Path) -> None:
    """`mkdir -p path`, its failure a RunWriteError naming the path (or what is in the way) and the cause."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        for part in ancestors(path):
            check_folder(part)
        raise RunWriteError(f"cannot create the folder {shown_path(path)}: something is in the way") from None
    except OSError as error:
        raise describe_os_error(error, path, "create the folder") from None
