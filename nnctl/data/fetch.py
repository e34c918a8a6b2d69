"""Finding a built-in dataset file: `$NNCTL_DATA_DIR`, then the user cache, then a verified download.

Files found locally are used as they are (local copies may legitimately differ from Keras's bytes); only
downloads are checked against Keras's published hash, and a mismatching download is deleted.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import secrets
import sys
import urllib.request
from pathlib import Path

from nnctl.errors import NnctlError

KERAS_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
TIMEOUT_S = 30
_CHUNK = 1 << 20


def cache_dir() -> Path:
    """`$NNCTL_DATASETS_CACHE`, else `$NNCTL_CACHE_DIR/datasets`, `$XDG_CACHE_HOME/nnctl/datasets`,
    `~/.cache/nnctl/datasets` (the first that is set)."""
    if os.environ.get("NNCTL_DATASETS_CACHE"):
        return Path(os.environ["NNCTL_DATASETS_CACHE"]).expanduser()
    if os.environ.get("NNCTL_CACHE_DIR"):
        return Path(os.environ["NNCTL_CACHE_DIR"]).expanduser() / "datasets"
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "nnctl" / "datasets"
    return Path.home() / ".cache" / "nnctl" / "datasets"


def data_dirs() -> list[Path]:
    """Where files are looked for, in order: `$NNCTL_DATA_DIR` (when set), then `cache_dir()`."""
    dirs = [Path(os.environ["NNCTL_DATA_DIR"]).expanduser()] if os.environ.get("NNCTL_DATA_DIR") else []
    return dirs + [cache_dir()]


def find_local(filename: str) -> Path | None:
    """The first `data_dirs()` folder's copy of `filename` (a relative path), or None."""
    for folder in data_dirs():
        if (folder / filename).is_file():
            return folder / filename
    return None


def _expected(sha256: str | None, md5: str | None) -> str:
    return f"sha256 {sha256}" if sha256 else f"md5 {md5}" if md5 else "no published hash"


def _missing_message(filename: str, url: str, sha256: str | None, md5: str | None, reason: str) -> str:
    folders = " or ".join(str(folder / filename) for folder in data_dirs())
    return (f"dataset file {filename} is not available locally and could not be downloaded from {url} "
            f"({reason}); put a copy ({_expected(sha256, md5)}) at {folders}, "
            f"or set NNCTL_DATA_DIR to a folder that holds {filename}")


def _progress_copy(response, out, total: int | None, label: str, hashers) -> None:
    """Streams `response` into `out`, feeding `hashers`; a transient rich bar on a terminal's stderr."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        print(f"downloading {label}{f' ({total / 1e6:.1f} MB)' if total else ''} ...", file=sys.stderr)
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task(f"downloading {label}", total=total)
        while chunk := response.read(_CHUNK):
            out.write(chunk)
            for hasher in hashers:
                hasher.update(chunk)
            progress.advance(task, len(chunk))


def download_file(url: str, target: Path, sha256: str | None = None, md5: str | None = None) -> Path:
    """`url` saved at `target` only once its hash matches; NnctlError (nothing left behind) otherwise."""
    target.parent.mkdir(parents=True, exist_ok=True)
    hashers = {name: hashlib.new(name) for name, want in (("sha256", sha256), ("md5", md5)) if want}
    temp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.part")
    try:
        with open(temp, "xb") as out, urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            length = response.headers.get("Content-Length") if getattr(response, "headers", None) else None
            _progress_copy(response, out, int(length) if length else None, target.name, hashers.values())
        for name, want in (("sha256", sha256), ("md5", md5)):
            if want and hashers[name].hexdigest() != want.lower():
                raise NnctlError(f"{target.name}: the download from {url} has {name} {hashers[name].hexdigest()}, "
                                 f"expected {want}; the file was deleted. Try again, or put a good copy at "
                                 f"{target} (or in NNCTL_DATA_DIR)")
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    return target


def locate(filename: str, url: str, sha256: str | None = None, md5: str | None = None,
           download: bool = True) -> Path:
    """The local path of dataset file `filename` (a path relative to a data folder, e.g.
    "fashion-mnist/t10k-labels-idx1-ubyte.gz"): found in `data_dirs()`, else downloaded into `cache_dir()`."""
    found = find_local(filename)
    if found is not None:
        return found
    if not download:
        raise NnctlError(_missing_message(filename, url, sha256, md5, "downloads are off"))
    try:
        return download_file(url, cache_dir() / filename, sha256=sha256, md5=md5)
    except (OSError, ValueError, http.client.HTTPException) as err:  # URLError and timeouts are OSErrors
        reason = getattr(err, "reason", None) or err
        raise NnctlError(_missing_message(filename, url, sha256, md5, f"{type(err).__name__}: {reason}")) from None
