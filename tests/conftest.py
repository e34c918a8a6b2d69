"""Shared fixtures: tiny generated `.npz` data sets and the config that trains on them, in a temp folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

# 240 rows of 10 features, a 10-8-1 binary classifier: trains in well under a second.
TINY_CONFIG = """\
name: tiny
seed: 1
data:
  path: tiny.npz
  validation: {split: 0.2}
model:
  layers:
    - {type: dense, units: 8, activation: relu}
    - {type: dense, units: 1, activation: sigmoid}
loss: binary_crossentropy
optimizer: {type: rmsprop, learning_rate: 0.01}
metrics: [accuracy]
epochs: 3
batch_size: 16
"""


def write_npz(path, rows: int = 240, features: int = 10, test_rows: int = 60, labels: str = "binary",
              classes: int = 2, seed: int = 0):
    """A learnable data set: `labels` is "binary" (0/1 floats), "sparse" (ids 0..classes-1) or "onehot"."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows + test_rows, features)).astype(np.float32)
    if labels == "binary":
        y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.float32)
    else:
        ids = np.argmax(x[:, :classes], axis=1) if features >= classes else rng.integers(0, classes, len(x))
        y = np.eye(classes, dtype=np.float32)[ids] if labels == "onehot" else ids.astype(np.int64)
    arrays = {"x_train": x[:rows], "y_train": y[:rows]}
    if test_rows:
        arrays.update(x_test=x[rows:], y_test=y[rows:])
    np.savez(path, **arrays)
    return path


@pytest.fixture(scope="session")
def make_npz():
    """`make_npz(path, **options)` writes a tiny data set (see `write_npz`) and returns its path."""
    return write_npz


@pytest.fixture(scope="session")
def tiny_config_text():
    """TINY_CONFIG: trains on a `tiny.npz` beside the config file."""
    return TINY_CONFIG


@pytest.fixture
def tiny_config(tmp_path):
    """`tmp_path/tiny.yaml` (TINY_CONFIG) beside `tmp_path/tiny.npz`."""
    write_npz(tmp_path / "tiny.npz")
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_CONFIG, encoding="utf-8")
    return path


# ---- built-in dataset files in the Keras layouts (shared by the loader, CLI and predict tests) -----------------
KERAS_WORDS = ["the", "and", "a", "of", "film", "movie", "good", "bad", "great", "plot", "actor", "story"]


def object_array(rows):
    """A 1-D object array of lists, as Keras stores ragged reviews in imdb.npz / reuters.npz."""
    array = np.empty(len(rows), dtype=object)
    for i, row in enumerate(rows):
        array[i] = row
    return array


def raw_rows(rng, n, vocab=12, longest=9):
    """Rows of raw word ranks 1..vocab (Keras's files hold ranks without any offset)."""
    return [rng.integers(1, vocab + 1, rng.integers(1, longest + 1)).tolist() for _ in range(n)]


def write_idx(path, array):
    """`array` as a gzipped idx file (Fashion-MNIST's format): magic, dimensions, raw uint8 bytes."""
    import gzip

    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as out:
        out.write(header + array.tobytes())


def write_keras_fixtures(folder):
    """Tiny copies of every built-in dataset's files in `folder`, laid out as Keras's cache holds them:
    imdb (23 / 19 reviews), reuters (31 wires), mnist (6 / 3), boston_housing (11), fashion-mnist (5 / 2)."""
    import json
    from pathlib import Path

    folder = Path(folder)
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "imdb.npz", x_train=object_array(raw_rows(rng, 23)), y_train=rng.integers(0, 2, 23),
             x_test=object_array(raw_rows(rng, 19)), y_test=rng.integers(0, 2, 19))
    np.savez(folder / "reuters.npz", x=object_array(raw_rows(rng, 31)), y=rng.integers(0, 46, 31))
    for name in ("imdb", "reuters"):
        (folder / f"{name}_word_index.json").write_text(json.dumps({w: i + 1 for i, w in enumerate(KERAS_WORDS)}))
    np.savez(folder / "mnist.npz", x_train=rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
             y_train=np.arange(6, dtype=np.uint8), x_test=rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
             y_test=np.arange(3, dtype=np.uint8))
    np.savez(folder / "boston_housing.npz", x=rng.normal(size=(11, 13)), y=np.arange(11, dtype=np.float64))
    (folder / "fashion-mnist").mkdir(exist_ok=True)
    for part, count in (("train", 5), ("t10k", 2)):
        write_idx(folder / "fashion-mnist" / f"{part}-labels-idx1-ubyte.gz", np.arange(count, dtype=np.uint8))
        write_idx(folder / "fashion-mnist" / f"{part}-images-idx3-ubyte.gz",
                  rng.integers(0, 256, (count, 28, 28), dtype=np.uint8))
    return folder


@pytest.fixture
def keras_data_dir(tmp_path, monkeypatch):
    """`write_keras_fixtures` in NNCTL_DATA_DIR, an empty dataset cache, and no network (downloads fail)."""
    import urllib.error
    import urllib.request

    folder = write_keras_fixtures(tmp_path / "keras-data")
    monkeypatch.setenv("NNCTL_DATA_DIR", str(folder))
    monkeypatch.setenv("NNCTL_DATASETS_CACHE", str(tmp_path / "keras-cache"))

    def no_network(url, timeout=None):
        raise urllib.error.URLError("tests are offline")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    return folder


def invoke(*args):
    """`nnctl ARGS...` through click's CliRunner (stdout and stderr kept apart)."""
    from click.testing import CliRunner

    from nnctl.cli import main
    return CliRunner().invoke(main, [str(arg) for arg in args])


def run_path(stdout: str):
    """The run directory named by the `run: <path>` line that ends `nnctl train`'s output."""
    from pathlib import Path

    last = stdout.splitlines()[-1]
    assert last.startswith("run: "), stdout
    return Path(last[len("run: "):])


def pytest_addoption(parser):
    parser.addoption("--run-long", action="store_true", help="also run tests marked `long` (many minutes each)")


def _xdist_worker(config) -> bool:
    return hasattr(config, "workerinput")


def _xdist_controller(config) -> bool:
    return not _xdist_worker(config) and bool(getattr(config.option, "numprocesses", None))


def _selects_cuda_sim(config) -> bool:
    """Whether the command line's paths hold tests/engine/test_cuda_sim.py (no -k: it could deselect it)."""
    if config.option.keyword:
        return False
    target = (Path(config.rootpath) / CUDA_SIM_TESTS).resolve()
    for arg in config.args or config.getini("testpaths"):
        path = (Path(config.invocation_params.dir) / arg.split("::")[0]).resolve()
        if path == target or path in target.parents:
            return True
    return False


@pytest.hookimpl(tryfirst=True)  # before xdist starts its workers: they inherit where the run will be
def pytest_sessionstart(session):
    if _xdist_controller(session.config) and _selects_cuda_sim(session.config):
        from tests.engine import cuda_background

        cuda_background.reserve()


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids):
    """xdist's controller: start the simulator run once half the tests have started (at once for a short
    selection), as `pytest_collection_finish` does in one process."""
    from tests.engine import cuda_background

    reserved = cuda_background.SHARED in os.environ  # by pytest_sessionstart (no -k deselecting it)
    if reserved and _PROGRESS["start_at"] is None and not _PROGRESS["started"] and any(
            i.startswith(CUDA_SIM_TESTS) for i in ids):
        _PROGRESS["start_at"] = len(ids) // 2 if len(ids) > 200 else 0


def pytest_collection_modifyitems(config, items):
    # The CUDA simulator run's checks go last: its process (tests/engine/cuda_background.py) starts in the
    # background once most of the suite has run, so it loads the CPU kernels the suite compiled instead of
    # compiling them again beside it, and overlaps the last tests on the other core. Under pytest-xdist (the
    # README's command) the controller starts it with the session instead (pytest_sessionstart).
    cuda = [item for item in items if item.nodeid.startswith(CUDA_SIM_TESTS)]
    items[:] = [item for item in items if not item.nodeid.startswith(CUDA_SIM_TESTS)] + cuda
    if config.getoption("--run-long"):
        return
    skip = pytest.mark.skip(reason="a many-minute run: pass --run-long")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip)


CUDA_SIM_TESTS = "tests/engine/test_cuda_sim.py"
_PROGRESS = {"started": 0, "start_at": None}


def pytest_collection_finish(session):
    """When the CUDA simulator checks will run: start their process at 60 % of the tests (or at once for a short
    selection), so it overlaps the rest."""
    if not _xdist_worker(session.config) and any(item.nodeid.startswith(CUDA_SIM_TESTS) for item in session.items):
        _PROGRESS["start_at"] = int(0.6 * len(session.items)) if len(session.items) > 200 else 0


def pytest_runtest_logstart(nodeid, location):
    at = _PROGRESS["start_at"]
    if at is not None:
        _PROGRESS["started"] += 1
        if _PROGRESS["started"] > at:
            from tests.engine import cuda_background

            cuda_background.start()
            _PROGRESS["start_at"] = None


def pytest_sessionfinish(session, exitstatus):
    from tests.engine import cuda_background

    cuda_background.stop()
