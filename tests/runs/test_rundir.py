"""RunDirectory: unique folders and `latest`, strict atomic JSON, torn event lines, safetensors weights, errors."""

import errno
import hashlib
import json
import os
import re
import subprocess
import sys
from datetime import datetime

import numpy as np
import pytest
import safetensors

from nnctl.errors import ArgumentError, NnctlError
from nnctl.runs import RunDirectory, environment_versions, sha256_bytes, sha256_file

NOW = datetime(2024, 5, 17, 9, 30, 5)


def reject_constant(token):
    raise ValueError(f"non-strict JSON token {token}")


def temp_files(folder):
    return [p.name for p in folder.rglob("*.tmp")]


@pytest.fixture
def run(tmp_path):
    return RunDirectory.create(tmp_path / "runs", "mlp")


# --- create / open ----------------------------------------------------------------------------------------

def test_create_same_second_gets_suffix_and_latest_follows(tmp_path):
    runs = tmp_path / "runs"
    first = RunDirectory.create(runs, "mlp", now=NOW)
    second = RunDirectory.create(runs, "mlp", now=NOW)
    assert first.path.name == "20240517-093005"
    assert second.path.name == "20240517-093005-1"
    assert first.path.is_dir() and second.path.is_dir()
    latest = runs / "mlp" / "latest"
    assert latest.is_symlink()
    assert os.readlink(latest) == "20240517-093005-1"  # relative, so the runs folder can move
    assert temp_files(runs) == []

    second.update_manifest(status="running")
    assert RunDirectory.open(runs / "mlp").path.resolve() == second.path.resolve()
    assert RunDirectory.open(latest).path.resolve() == second.path.resolve()
    first.update_manifest(status="completed")
    assert RunDirectory.open(first.path).path == first.path


@pytest.mark.parametrize("name", ["../x", "a/b", ".hidden", "", "..", "a\\b", None])
def test_create_rejects_unsafe_names(tmp_path, name):
    with pytest.raises(ArgumentError, match="`name`"):
        RunDirectory.create(tmp_path / "runs", name)
    assert not (tmp_path / "x").exists()


def test_open_missing_path(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(NnctlError, match=re.escape(f"no such run: {missing}")):
        RunDirectory.open(missing)


def test_open_folder_without_manifest(tmp_path):
    with pytest.raises(NnctlError, match=r"is not a run directory \(no manifest.json\)"):
        RunDirectory.open(tmp_path)


# --- JSON -------------------------------------------------------------------------------------------------

def test_json_round_trip_is_strict(run):
    record = {"loss": [np.float32(0.5), float("nan"), np.float64("inf")], "epochs": np.int64(3),
              "mean": np.array([1.0, np.nan], dtype=np.float32), "ok": np.bool_(True), "nested": {1: (2, 3)}}
    path = run.write_json("history.json", record)
    text = path.read_text()
    parsed = json.loads(text, parse_constant=reject_constant)
    assert parsed == {"loss": [0.5, None, None], "epochs": 3, "mean": [1.0, None], "ok": True,
                      "nested": {"1": [2, 3]}}
    assert run.read_json("history.json") == parsed


def test_read_json_errors_name_the_file(run):
    with pytest.raises(NnctlError, match="metrics.json"):
        run.read_json("metrics.json")
    run.write_text("metrics.json", '{"loss": ')
    with pytest.raises(NnctlError, match="metrics.json.*not valid JSON"):
        run.read_json("metrics.json")


def test_failed_replace_keeps_old_file_and_leaves_no_temp(run, monkeypatch):
    run.write_json("metrics.json", {"loss": 1.0})

    def crash(src, dst):
        raise OSError("disk went away")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk went away"):
        run.write_json("metrics.json", {"loss": 2.0})
    monkeypatch.undo()
    assert run.read_json("metrics.json") == {"loss": 1.0}
    assert temp_files(run.path) == []


def test_update_manifest_merges(run):
    assert run.update_manifest(status="running", seed=7) == {"status": "running", "seed": 7}
    assert run.update_manifest(status="completed", end="t1") == {"status": "completed", "seed": 7, "end": "t1"}
    assert run.manifest() == {"status": "completed", "seed": 7, "end": "t1"}


def test_write_text_creates_subfolders(run):
    path = run.write_text("checkpoints/note.txt", "héllo")
    assert path.read_text(encoding="utf-8") == "héllo"


# --- events -----------------------------------------------------------------------------------------------

def test_events_skip_torn_line_and_resume_appends_whole_lines(run):
    assert run.read_events() == []
    run.append_event({"epoch": 1, "loss": np.float32(0.25)})
    run.append_event({"epoch": 2, "loss": float("nan")})
    with open(run.path / "events.jsonl", "ab") as handle:
        handle.write(b'{"epoch": 3, "lo')  # what a process killed mid-write leaves
    assert run.read_events() == [{"epoch": 1, "loss": 0.25}, {"epoch": 2, "loss": None}]

    run.append_event({"epoch": 3, "loss": 0.125})  # a resumed run appends after the torn line
    assert run.read_events()[-1] == {"epoch": 3, "loss": 0.125}
    assert len(run.read_events()) == 3
    for line in (run.path / "events.jsonl").read_text().splitlines()[:2]:
        json.loads(line, parse_constant=reject_constant)


# --- weights ----------------------------------------------------------------------------------------------

def test_weights_round_trip(run):
    rng = np.random.default_rng(0)
    weights = {"dense/kernel": rng.normal(size=(4, 3)).astype(np.float32),
               "dense/bias": np.zeros(3, np.float32),
               "dense_1/kernel": rng.normal(size=(3, 2)).astype(np.float32).T}  # not C-contiguous
    path = run.save_weights(weights, metadata={"format": "nnctl", "epoch": "5"})
    loaded = run.load_weights()
    assert set(loaded) == set(weights)
    for name, array in weights.items():
        assert loaded[name].dtype == np.float32
        assert loaded[name].shape == array.shape
        np.testing.assert_array_equal(loaded[name], array)
    with safetensors.safe_open(path, "np") as handle:
        assert handle.metadata() == {"format": "nnctl", "epoch": "5"}
    assert temp_files(run.path) == []


def test_weights_metadata_must_be_str(run):
    with pytest.raises(ArgumentError, match="`metadata`"):
        run.save_weights({"dense/bias": np.zeros(2, np.float32)}, metadata={"epoch": 5})


@pytest.mark.parametrize("content", [b"", b"not a safetensors file at all"])
def test_corrupt_or_missing_weights_name_the_file(run, content):
    with pytest.raises(NnctlError, match="weights.safetensors.*missing"):
        run.load_weights()
    (run.path / "weights.safetensors").write_bytes(content)
    with pytest.raises(NnctlError, match="weights.safetensors"):
        run.load_weights()


def test_truncated_weights_are_reported(run):
    path = run.save_weights({"dense/kernel": np.ones((8, 8), np.float32)})
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(NnctlError, match="weights.safetensors.*not a valid safetensors"):
        run.load_weights()


# --- hashes and versions ----------------------------------------------------------------------------------

def test_sha256_helpers_match_hashlib(tmp_path):
    data = os.urandom(5000)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    assert sha256_bytes(data) == expected
    assert sha256_file(path, chunk=1024) == expected  # several chunks, last one partial


def test_environment_versions_without_importing_numba():
    versions = environment_versions()
    assert set(versions) == {"nnctl", "python", "numpy", "numba", "platform"}
    assert versions["numpy"] == np.__version__
    probe = "import sys, nnctl.runs; nnctl.runs.environment_versions(); print('numba' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout == "False\n"


# --- file-system errors: one line naming the path and the cause, never a traceback ---------------------------

def broken_runs_dirs(tmp_path):
    """Each way a runs folder can refuse a new run, with the path and the words its message must hold."""
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    os.symlink(tmp_path / "loop", tmp_path / "loop")
    (tmp_path / "runs" / "mlp" / "latest").mkdir(parents=True)
    (tmp_path / "runs" / "afile").write_text("x")
    return [(tmp_path / "dangling", "mlp", "dangling: it is a broken symbolic link"),
            (tmp_path / "loop", "mlp", "loop: Too many levels of symbolic links"),
            (tmp_path / "runs", "afile", "runs/afile: it is a file, not a folder"),
            (tmp_path / "runs", "mlp", "runs/mlp/latest is a real folder, not the link"),
            (tmp_path / "runs", "n" * 300, "File name too long")]


def test_every_broken_runs_folder_is_one_line_naming_the_path_before_anything_is_made(tmp_path):
    from nnctl.runs.rundir import RunWriteError

    for runs_dir, name, words in broken_runs_dirs(tmp_path):
        before = sorted(tmp_path.rglob("*"))
        for attempt in (RunDirectory.check_new, RunDirectory.create):
            with pytest.raises(RunWriteError) as error:
                attempt(runs_dir, name)
            message = str(error.value)
            assert words in message and "\n" not in message and len(message) < 330, message
        assert sorted(tmp_path.rglob("*")) == before  # nothing was created


def test_a_read_only_runs_folder_and_a_full_disk_are_one_line(tmp_path, monkeypatch):
    from nnctl.runs.rundir import RunWriteError

    runs = tmp_path / "runs"
    runs.mkdir()

    def read_only(path, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))

    monkeypatch.setattr(os, "mkdir", read_only)
    with pytest.raises(RunWriteError) as error:
        RunDirectory.create(runs, "mlp")
    assert str(error.value) == f"cannot create the folder {runs / 'mlp'}: Read-only file system"
    monkeypatch.undo()

    run = RunDirectory.create(runs, "mlp")
    run.write_json("history.json", {"loss": [1.0]})
    real_fdopen = os.fdopen

    class FullDisk:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: FullDisk(real_fdopen(fd, *a, **k)))
    with pytest.raises(RunWriteError) as error:
        run.write_json("history.json", {"loss": [1.0, 2.0]})
    assert str(error.value) == f"cannot write {run.path / 'history.json'}: No space left on device"
    assert isinstance(error.value, OSError) and error.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert run.read_json("history.json") == {"loss": [1.0]} and temp_files(run.path) == []


def test_events_go_out_in_one_write(run, monkeypatch):
    writes = []
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: writes.append(data) or real_write(fd, data))
    run.append_events([{"epoch": 1}, {"epoch": 2}, {"epoch": 3}])
    run.append_events([])
    assert len(writes) == 1 and [e["epoch"] for e in run.read_events()] == [1, 2, 3]


def test_events_never_follow_a_symlink_out_of_the_run(run, tmp_path):
    from nnctl.runs.rundir import RunWriteError

    outside = tmp_path / "elsewhere.jsonl"
    outside.write_text("")
    os.symlink(outside, run.path / "events.jsonl")
    with pytest.raises(RunWriteError, match="events.jsonl"):
        run.append_event({"epoch": 1})
    assert outside.read_text() == ""


def test_a_runs_folder_we_may_not_write_is_refused_before_anything_is_made(tmp_path, monkeypatch):
    from nnctl.runs.rundir import RunWriteError

    runs = tmp_path / "runs"
    runs.mkdir()
    # As root, chmod cannot make a folder unwritable: stand in for a read-only mount as an unprivileged user.
    monkeypatch.setattr(os, "access", lambda path, mode: os.path.abspath(path) != str(runs))
    with pytest.raises(RunWriteError) as error:
        RunDirectory.check_new(runs, "mlp")
    assert str(error.value) in (f"cannot create a run in {runs}: Permission denied",
                                f"cannot create a run in {runs}: Read-only file system")
    assert list(runs.iterdir()) == []


def test_stale_temp_files_of_a_killed_writer_are_removed_and_nothing_else(run):
    run.write_json("history.json", {"loss": [1.0]})
    stale = [run.path / ".history.json.4242.0badc0de.tmp", run.path / "checkpoints" / ".last.safetensors.17.deadbeef.tmp"]
    kept = [run.path / ".notes.tmp", run.path / "mine.tmp", run.path / ".x.12.nothex00.tmp"]
    (run.path / "checkpoints").mkdir()
    for path in stale + kept:
        path.write_bytes(b"half")
    assert run.remove_stale_temp_files() == 2
    assert not any(path.exists() for path in stale) and all(path.exists() for path in kept)
    assert run.read_json("history.json") == {"loss": [1.0]}
