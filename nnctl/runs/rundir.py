"""One training run's folder: `runs/<name>/<YYYYmmdd-HHMMSS>/` plus the `latest` link beside it.

Every file under its final name is complete (temp file, then `os.replace`); a failed write is one RunWriteError.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
import os
import platform
import re
import secrets
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import safetensors
import safetensors.numpy

from nnctl.errors import ArgumentError, NnctlError
from nnctl.runs import untrusted
from nnctl.runs.filesystem import (RunWriteError, ancestors, check_folder, make_folders, why_unwritable,
                                   describe_os_error, shown_path)
from nnctl.runs.lock import LOCK, RunLockedError, current_writer, locked  # noqa: F401  (RunLockedError: API)

MANIFEST = "manifest.json"
EVENTS = "events.jsonl"
WEIGHTS = "weights.safetensors"
LATEST = "latest"
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")
_TEMP_NAME = re.compile(r"\..+\.\d+\.[0-9a-f]{8}\.tmp")  # atomic_write_bytes's temp files


def atomic_write_bytes(path, data: bytes) -> None:
    """Write `data` to `path` so that `path` holds either the old content or all of the new, never a part.
    A failure (full disk, read-only folder) raises RunWriteError naming `path` and leaves the old file whole."""
    path = Path(path)
    try:
        _replace_with(path, data)
    except OSError as error:
        raise describe_os_error(error, path) from None
    _fsync_directory(path.parent)


def _replace_with(path: Path, data: bytes) -> None:
    # Same folder as the target, so os.replace is a rename within one file system (atomic on POSIX and Windows).
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        # os.open with 0o666 lets the umask decide permissions; mkstemp would leave the final file 0600.
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        try:
            temp.unlink(missing_ok=True)
        except OSError:
            pass
        raise


def _fsync_directory(folder: Path) -> None:
    # Makes the rename itself survive a power cut; Windows cannot open a folder, which is fine to skip.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def canonical_safetensors(data: bytes) -> bytes:
    """The same file with its JSON header's keys sorted: safetensors writes `__metadata__` in hash-map order,
    which would make equal weights differ in bytes from one save to the next."""
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + size])
    text = json.dumps(header, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()
    if len(text) > size:  # cannot happen for a reordering of compact JSON; keep the original to be safe
        return data
    return data[:8] + text.ljust(size, b" ") + data[8 + size:]


def sha256_file(path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in `chunk`-byte pieces so large data sets never sit in memory twice."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def environment_versions() -> dict:
    """Versions that decide whether a run can be reproduced; reads Numba's from metadata so Numba never loads."""
    from nnctl import __version__

    try:
        numba_version = importlib.metadata.version("numba")
    except importlib.metadata.PackageNotFoundError:
        numba_version = None
    return {"nnctl": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "numba": numba_version, "platform": platform.platform()}


def to_strict_json(obj):
    """`obj` with NumPy scalars/arrays made plain Python and NaN/±inf made None, so strict JSON can hold it."""
    if isinstance(obj, dict):
        return {str(key): to_strict_json(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_strict_json(value) for value in obj]
    if isinstance(obj, (np.ndarray, np.generic)):
        return to_strict_json(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _dumps(obj, **options) -> str:
    # allow_nan=False is a second guard: a NaN that slipped past to_strict_json fails loudly, not silently.
    return json.dumps(to_strict_json(obj), allow_nan=False, **options)


def has_trained_weights(folder) -> bool:
    """Whether the run (or one of its K-fold folds) holds the weights of at least one finished epoch: its
    final weights or its checkpoint, which is first written at the end of epoch 1."""
    folder = Path(folder)
    places = [folder, *sorted(folder.glob("fold_*"))]
    return any((place / WEIGHTS).is_file() or (place / "checkpoints" / "last.safetensors").is_file()
               for place in places)


def _newest_trained(parent: Path, latest: Path) -> Path:
    # Folder names are start times (YYYYmmdd-HHMMSS[-N]): the newest run with weights, else the link's run.
    stamps = [path for path in parent.iterdir() if path.is_dir() and not path.is_symlink()
              and (path / MANIFEST).is_file() and path.name[:1].isdigit()]
    stamps.sort(key=lambda path: (path.name[:15], int(path.name[16:] or 0) if path.name[16:].isdigit() else 0))
    for path in reversed(stamps):
        if has_trained_weights(path):
            return path.resolve()
    return latest


@dataclass(frozen=True)
class RunDirectory:
    """A run folder. JSON written here is strict: NaN and ±inf are stored as null (a diverged loss reads as None).

    Files are named relative to `path`; `checkpoints/epoch-3.safetensors` creates the subfolder on write.
    """

    path: Path

    @classmethod
    def create(cls, runs_dir, name: str, now: datetime | None = None) -> RunDirectory:
        """Make `runs_dir/name/<YYYYmmdd-HHMMSS>[-N]/` (never reusing a folder) and point `latest` at it.
        Anything in the way (see `check_new`) or a failed mkdir is a RunWriteError, before any folder is made."""
        parent = cls.check_new(runs_dir, name)
        make_folders(parent)
        stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
        suffix = 0
        while True:
            folder = stamp if suffix == 0 else f"{stamp}-{suffix}"
            try:
                # Exclusive mkdir is the lock: two runs started in the same second both get a folder of their own.
                os.mkdir(parent / folder)
                break
            except FileExistsError:
                suffix += 1
            except OSError as error:
                raise describe_os_error(error, parent / folder, "create the run folder") from None
        # A relative link keeps working when the runs folder is moved or copied elsewhere.
        temp_link = parent / f".{LATEST}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            os.symlink(folder, temp_link, target_is_directory=True)
            try:
                os.replace(temp_link, parent / LATEST)
            except BaseException:
                temp_link.unlink(missing_ok=True)
                raise
        except OSError as error:
            raise describe_os_error(error, parent / LATEST, "point the link") from None
        return cls(parent / folder)

    def release_latest(self) -> None:
        """For a run that ended with no trained weights: points `latest` back at the newest run that has
        some (when the link still names this run and there is one), so the link means what `open` does."""
        link = self.path.parent / LATEST
        try:
            if not os.path.islink(link) or os.readlink(link) != self.path.name or has_trained_weights(self.path):
                return
            newest = _newest_trained(self.path.parent, self.path.resolve())
            if newest.name != self.path.name:
                temp_link = self.path.parent / f".{LATEST}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
                os.symlink(newest.name, temp_link, target_is_directory=True)
                os.replace(temp_link, link)
        except OSError:
            pass  # the link is a convenience: `open` finds the newest trained run without it

    @staticmethod
    def check_new(runs_dir, name: str) -> Path:
        """`runs_dir/name` after checking, without writing, that a run can be made there: a safe `name`, and no
        file, broken or looping link, or real `latest` folder in the way. A RunWriteError (or ArgumentError)
        naming the path and the cause otherwise."""
        if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name):
            raise ArgumentError("`name` must be one path component of letters, digits, `_`, `-` and `.`, "
                                f"not starting with `.`, got {shown_path(repr(name))}.")
        parent = Path(runs_dir) / name
        if len(name.encode()) > 255:  # most file systems hold names of up to 255 bytes
            raise RunWriteError(f"cannot create the run folder {shown_path(parent)}: File name too long "
                                f"({len(name.encode())} bytes; a run `name` may have at most 255)")
        existing = [path for path in ancestors(parent) if check_folder(path)]
        if existing and not os.access(existing[-1], os.W_OK | os.X_OK):
            raise RunWriteError(f"cannot create a run in {shown_path(existing[-1])}: {why_unwritable(existing[-1])}")
        latest = parent / LATEST
        if os.path.lexists(latest) and not os.path.islink(latest):
            kind = "folder" if latest.is_dir() else "file"
            raise RunWriteError(f"{shown_path(latest)} is a real {kind}, not the link to the newest run that nnctl "
                                f"keeps there: move it away")
        return parent

    @classmethod
    def open(cls, path) -> RunDirectory:
        """The run at `path`: a run folder, or a `latest` link or `runs/<name>`, both meaning the newest run
        that has trained weights (one stopped before its first epoch has none), else the newest run."""
        candidate = Path(path)
        if not candidate.exists():
            raise NnctlError(f"no such run: {path}")
        if candidate.is_symlink() and candidate.name == LATEST:
            candidate = _newest_trained(candidate.parent, candidate.resolve())
        elif candidate.is_symlink():
            # Pin the run the link names now, so a run started later cannot swap files under this one.
            candidate = candidate.resolve()
        elif not (candidate / MANIFEST).is_file() and (candidate / LATEST).exists():
            candidate = _newest_trained(candidate, (candidate / LATEST).resolve())
        if not (candidate / MANIFEST).is_file():
            raise NnctlError(f"{path} is not a run directory (no {MANIFEST})")
        return cls(candidate)

    @contextmanager
    def lock(self):
        """Holds this run's exclusive writer lock for a `with` block (which gets the run): RunLockedError
        naming the pid when a live process holds it, RunWriteError when the folder is read-only. Nests
        within one process. `train`, `train --resume`, K-fold and `evaluate` take it before writing."""
        with locked(self.path, lambda error, path: describe_os_error(error, path, "write the lock file")):
            yield self

    def writer(self) -> dict | None:
        """The live process writing this run now ({"pid", "host", "since"}), or None: tells a run that is
        training from one whose process was killed (both say `running`)."""
        return current_writer(self.path)

    def state(self, manifest: dict) -> str:
        """The run's state: the manifest's status (completed | interrupted | failed), except that a `running`
        run whose writer is gone (killed, even by SIGKILL, or its machine lost) is `stopped`."""
        status = str(manifest.get("status") or "unknown")
        return "stopped" if status == "running" and self.writer() is None else status

    def _target(self, filename) -> Path:
        target = self.path / filename
        if not target.parent.is_dir():
            make_folders(target.parent)
        return target

    def write_text(self, filename, text: str) -> Path:
        """Write `text` (UTF-8) to `filename` atomically."""
        target = self._target(filename)
        atomic_write_bytes(target, text.encode("utf-8"))
        return target

    def write_json(self, filename, obj) -> Path:
        """Write `obj` as indented strict JSON atomically; NumPy values become plain numbers, NaN/±inf null."""
        return self.write_text(filename, _dumps(obj, indent=2) + "\n")

    def read_json(self, filename):
        """The parsed content of `filename` through the run-file reader's bounded parser (size, depth, a folder
        or a link in its place): a RunFileError naming it when missing or damaged."""
        return untrusted.read_json(self.path / filename)

    def append_event(self, event: dict) -> None:
        """Append one strict-JSON line to events.jsonl (see `append_events`)."""
        self.append_events([event])

    def append_events(self, events: list[dict]) -> None:
        """Append one strict-JSON line per event to events.jsonl, in one write so a crash tears at most the
        last line."""
        if not events:
            return
        data = "".join(_dumps(event) + "\n" for event in events).encode("utf-8")
        target = self._target(EVENTS)
        try:
            # O_NOFOLLOW: an events.jsonl symlinked elsewhere must not make us append outside the run.
            flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0)
            fd = os.open(target, flags, 0o666)
            try:
                # After a crash (then --resume) the file can end mid-line; start afresh so new events stay whole.
                if os.fstat(fd).st_size:
                    os.lseek(fd, -1, os.SEEK_END)
                    if os.read(fd, 1) != b"\n":
                        data = b"\n" + data
                while data:
                    data = data[os.write(fd, data):]
            finally:
                os.close(fd)
        except OSError as error:
            raise describe_os_error(error, target) from None

    def remove_stale_temp_files(self) -> int:
        """Deletes the temp files a killed writer left (`.name.PID.XXXXXXXX.tmp`); call it holding the lock,
        when no other process can be writing one. Returns how many there were."""
        stale = [path for path in self.path.rglob(".*.tmp") if _TEMP_NAME.fullmatch(path.name) and path.is_file()]
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)

    def read_events(self) -> list[dict]:
        """Every whole event in events.jsonl, in order; torn lines left by a killed process are skipped."""
        try:
            raw = (self.path / EVENTS).read_bytes()
        except FileNotFoundError:
            return []
        events = []
        for line in raw.splitlines():
            try:
                events.append(json.loads(line))
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
        return events

    def save_weights(self, weights: dict, metadata: dict | None = None, filename=WEIGHTS) -> Path:
        """Write `{"dense/kernel": array, ...}` as safetensors atomically; dtypes are kept, memory made C-order."""
        if metadata is not None and not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise ArgumentError(f"`metadata` keys and values must all be str, got {metadata!r}.")
        tensors = {str(key): np.ascontiguousarray(value) for key, value in weights.items()}
        target = self._target(filename)
        atomic_write_bytes(target, canonical_safetensors(safetensors.numpy.save(tensors, metadata=metadata)))
        return target

    def load_weights(self, filename=WEIGHTS) -> dict:
        """The tensors in `filename` as writable NumPy arrays, or an NnctlError naming it when missing or corrupt."""
        source = self.path / filename
        try:
            # Reading bytes (no mmap) lets a later checkpoint replace the file while these arrays live on.
            return safetensors.numpy.load(source.read_bytes())
        except FileNotFoundError:
            raise NnctlError(f"{source}: file is missing") from None
        except safetensors.SafetensorError as error:
            raise NnctlError(f"{source}: not a valid safetensors file ({error})") from None

    def manifest(self) -> dict:
        """The parsed manifest.json; a RunFileError when it is not a mapping (`update_manifest` merges into it)."""
        found = self.read_json(MANIFEST)
        if not isinstance(found, dict):
            raise untrusted.RunFileError(self.path / MANIFEST, f"is {untrusted.show_value(found)}, not a mapping")
        return found

    def update_manifest(self, **fields) -> dict:
        """Merge `fields` into manifest.json (created when absent), write it atomically and return it."""
        current = self.manifest() if (self.path / MANIFEST).exists() else {}
        current.update(fields)
        self.write_json(MANIFEST, current)
        return current

