"""The writer's lock on a run folder: one process at a time trains, resumes or evaluates into a run.

An `fcntl.flock` on `RUN/.lock`, which holds the writer's pid and host for the message a second writer gets.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from nnctl.errors import NnctlError

try:
    import fcntl
except ImportError:  # Windows: no flock; runs there are not locked
    fcntl = None

LOCK = ".lock"
HEARTBEAT_SECONDS = 30.0  # how often a holder rewrites its record's `heartbeat` time
STALE_AFTER = 10 * HEARTBEAT_SECONDS  # a holder on another host silent this long is taken to be gone

# Locks this process holds, by real path: taking one again (evaluate inside a training run's own process,
# CliRunner tests) nests instead of failing against ourselves, since flock conflicts between two open files.
_held: dict[str, list] = {}
_guard = threading.Lock()


class RunLockedError(NnctlError):
    """Another live process holds the run folder's lock; the message names its pid and host."""

    def __init__(self, folder: Path, holder: dict):
        self.folder, self.pid, self.host = folder, holder.get("pid"), holder.get("host")
        who = f"process {self.pid}" if self.pid else "another process"
        if self.host and self.host != socket.gethostname():
            who += f" on {self.host}"
        since = f" since {holder['since']}" if holder.get("since") else ""
        super().__init__(f"{folder} is being written by {who}{since}: wait for it to end or stop it "
                         f"(lock file {folder / LOCK})")


def _holder(fd: int) -> dict:
    """Who holds the lock, as the lock file says; {} when it is empty or damaged."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return _parse(os.read(fd, 4096))
    except OSError:
        return {}


def current_writer(folder) -> dict | None:
    """The live process writing `folder` ({"pid", "host", "since"}, as its lock file says), or None. Reads
    only (no lock is taken, so a writer starting now is never refused because of us): a holder that died,
    even by SIGKILL, names a pid that no longer exists. A holder on another host is taken to be alive."""
    try:
        with open(Path(folder) / LOCK, "rb") as handle:
            holder = _parse(handle.read(4096))
    except OSError:
        return None
    if not holder.get("pid"):
        return None
    if holder.get("host", socket.gethostname()) != socket.gethostname():
        # No pid to test on another machine: its heartbeat says whether it still runs (a lost machine stops).
        beat = _seconds_since(holder.get("heartbeat") or holder.get("since"))
        return None if beat is not None and beat > STALE_AFTER else holder
    try:
        os.kill(int(holder["pid"]), 0)
    except PermissionError:  # alive, but another user's
        return holder
    except (OSError, ValueError, OverflowError):
        return None
    return holder


def _seconds_since(text) -> float | None:
    try:
        moment = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    return (datetime.now(timezone.utc) - moment).total_seconds()


def _record() -> bytes:
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": now, "heartbeat": now}).encode()


def _beat(fd: int, since: str, stop: threading.Event) -> None:
    # Only the heartbeat changes, and ISO times have one width: the record keeps its length, so one pwrite
    # over it never leaves a reader half of an old one.
    while not stop.wait(HEARTBEAT_SECONDS):
        record = {"pid": os.getpid(), "host": socket.gethostname(), "since": since,
                  "heartbeat": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        try:
            os.pwrite(fd, json.dumps(record).encode() + b"\n", 0)
        except OSError:
            pass


def _parse(data: bytes) -> dict:
    try:
        found = json.loads(data or b"{}")
    except ValueError:
        return {}
    if not isinstance(found, dict):
        return {}
    return {key: str(found[key])[:100] for key in ("pid", "host", "since", "heartbeat") if found.get(key) is not None}


@contextmanager
def locked(folder, describe_error):
    """Holds the exclusive lock on `folder` for the block. RunLockedError when a live process holds it;
    `describe_error(error, path)` makes the error raised when the lock file cannot be made (read-only folder).

    The kernel drops a flock when its holder dies, even by SIGKILL, so a killed run never leaves a stale lock.
    """
    folder = Path(folder)
    key = os.path.realpath(folder)
    with _guard:
        entry = _held.get(key)
        if entry is not None:
            entry[1] += 1
    if entry is not None:
        try:
            yield
        finally:
            with _guard:
                entry[1] -= 1
        return
    if fcntl is None:
        yield
        return
    path = folder / LOCK
    try:
        # O_NOFOLLOW: a `.lock` symlinked elsewhere must not make us truncate a file outside the run.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
    except OSError as error:
        raise describe_error(error, path) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLockedError(folder, _holder(fd)) from None
        except OSError as error:  # a file system without locks (some network mounts)
            raise describe_error(error, path) from None
        record = _record()
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, record + b"\n", 0)
        except OSError:
            pass  # a full disk: the lock still holds, only the message a second writer gets is poorer
        with _guard:
            _held[key] = [fd, 1]
        stop = threading.Event()
        beating = threading.Thread(target=_beat, args=(fd, json.loads(record)["since"], stop), daemon=True,
                                   name="nnctl-lock-heartbeat")
        beating.start()
        try:
            yield
        finally:
            stop.set()
            beating.join()
            with _guard:
                del _held[key]
            try:
                os.ftruncate(fd, 0)  # the holder is gone; closing the file releases the lock
            except OSError:
                pass
    finally:
        os.close(fd)
