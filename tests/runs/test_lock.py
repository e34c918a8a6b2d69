"""The writer's lock on a run folder: a second writer is refused naming the pid; a killed holder leaves none."""

import errno
import os
import signal
import subprocess
import sys
import time

import pytest

from nnctl.errors import NnctlError
from nnctl.runs.lock import LOCK
from nnctl.runs.rundir import RunDirectory, RunLockedError, RunWriteError

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")

HOLD = """
import sys, time
from nnctl.runs.rundir import RunDirectory
with RunDirectory(sys.argv[1]).lock():
    print("locked", flush=True)
    time.sleep(60)
"""


def hold_lock(folder):
    """A child process that holds `folder`'s lock until it is killed."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "locked"
    return process


def test_a_second_writer_is_refused_naming_the_pid_and_a_sigkilled_holder_leaves_no_stale_lock(tmp_path):
    run = RunDirectory.create(tmp_path / "runs", "mlp")
    holder = hold_lock(run.path)
    try:
        with pytest.raises(RunLockedError) as refused:
            with run.lock():
                pass
        assert isinstance(refused.value, NnctlError) and refused.value.pid == str(holder.pid)
        assert run.writer()["pid"] == str(holder.pid)
        message = str(refused.value)
        assert f"process {holder.pid}" in message and str(run.path) in message and "\n" not in message
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (run.path / LOCK).exists()  # the file stays; the kernel dropped the lock with its holder
    assert run.writer() is None  # it names a pid that is gone
    with run.lock() as locked:
        assert locked is run
        assert f'"pid": {os.getpid()}' in (run.path / LOCK).read_text()
    assert (run.path / LOCK).read_text() == "" and run.writer() is None  # released: no holder named any more


def test_the_lock_nests_within_one_process_and_is_released_after_an_error(tmp_path):
    run = RunDirectory.create(tmp_path / "runs", "mlp")
    with pytest.raises(ValueError):
        with run.lock():
            with RunDirectory(run.path).lock():
                pass
            raise ValueError("boom")
    holder = hold_lock(run.path)  # another process can take it now
    holder.kill()
    holder.wait()


def test_a_read_only_run_cannot_be_locked_and_says_so_in_one_line(tmp_path, monkeypatch):
    run = RunDirectory.create(tmp_path / "runs", "mlp")
    real_open = os.open

    def read_only(path, flags, *args):
        if str(path).startswith(str(run.path)) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(RunWriteError) as error:
        with run.lock():
            pass
    assert str(error.value) == f"cannot write the lock file {run.path / LOCK}: Read-only file system"
    assert error.value.errno == errno.EROFS


def test_a_lock_file_symlinked_outside_the_run_is_refused_and_left_alone(tmp_path):
    run = RunDirectory.create(tmp_path / "runs", "mlp")
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    os.symlink(outside, run.path / LOCK)
    with pytest.raises(RunWriteError, match="cannot write the lock file .*: Too many levels of symbolic links"):
        with run.lock():
            pass
    assert outside.read_text() == "keep me"


@pytest.mark.parametrize("age, alive", [(5, True), (3600, False)])
def test_a_holder_on_another_host_counts_as_alive_while_its_heartbeat_is_fresh(tmp_path, age, alive):
    import json
    from datetime import datetime, timedelta, timezone

    run = RunDirectory.create(tmp_path / "runs", "mlp")
    beat = (datetime.now(timezone.utc) - timedelta(seconds=age)).isoformat(timespec="seconds")
    (run.path / LOCK).write_text(json.dumps({"pid": 1, "host": "elsewhere.example", "since": beat,
                                             "heartbeat": beat}))
    run.update_manifest(status="running", name="mlp")
    assert (run.writer() is not None) is alive
    assert run.state(run.manifest()) == ("running" if alive else "stopped")


def test_a_holder_rewrites_its_heartbeat_while_it_holds_the_lock(tmp_path, monkeypatch):
    import json

    from nnctl.runs import lock

    monkeypatch.setattr(lock, "HEARTBEAT_SECONDS", 0.05)
    run = RunDirectory.create(tmp_path / "runs", "mlp")
    with run.lock():
        first = json.loads((run.path / LOCK).read_text())
        time.sleep(1.2)
        later = json.loads((run.path / LOCK).read_text())
        assert later["pid"] == os.getpid() and later["since"] == first["since"]
        assert later["heartbeat"] > first["heartbeat"]
    assert (run.path / LOCK).read_text() == ""  # released: no holder is named
