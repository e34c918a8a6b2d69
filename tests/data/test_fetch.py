"""Dataset file lookup: NNCTL_DATA_DIR, then the cache, then a hash-verified download; the offline message."""

import hashlib
import urllib.error
import urllib.request

import pytest

from nnctl.data import fetch
from nnctl.data.fetch import cache_dir, data_dirs, locate
from nnctl.errors import NnctlError

PAYLOAD = b"pretend this is imdb.npz\n" * 1000
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
MD5 = hashlib.md5(PAYLOAD).hexdigest()
URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/imdb.npz"


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    """An empty data folder and cache folder, set through the environment."""
    for name in ("NNCTL_DATA_DIR", "NNCTL_DATASETS_CACHE", "NNCTL_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    data, cache = tmp_path / "data", tmp_path / "cache"
    data.mkdir()
    monkeypatch.setenv("NNCTL_DATA_DIR", str(data))
    monkeypatch.setenv("NNCTL_DATASETS_CACHE", str(cache))
    return data, cache


@pytest.fixture
def served(tmp_path):
    """A file:// URL serving PAYLOAD (urllib opens it like an https download)."""
    path = tmp_path / "server" / "imdb.npz"
    path.parent.mkdir()
    path.write_bytes(PAYLOAD)
    return path.as_uri()


def offline(monkeypatch, error=None):
    calls = []

    def urlopen(url, timeout=None):
        calls.append((url, timeout))
        raise error or urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return calls


# --- where files are looked for -------------------------------------------------------------------------------

def test_cache_dir_precedence(tmp_path, monkeypatch):
    for name in ("NNCTL_DATASETS_CACHE", "NNCTL_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "nnctl" / "datasets"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "nnctl" / "datasets"
    monkeypatch.setenv("NNCTL_CACHE_DIR", str(tmp_path / "nnctl"))
    assert cache_dir() == tmp_path / "nnctl" / "datasets"
    monkeypatch.setenv("NNCTL_DATASETS_CACHE", str(tmp_path / "exact"))
    assert cache_dir() == tmp_path / "exact"


def test_data_dirs_put_nnctl_data_dir_first(dirs, monkeypatch):
    data, cache = dirs
    assert data_dirs() == [data, cache]
    monkeypatch.delenv("NNCTL_DATA_DIR")
    assert data_dirs() == [cache]


def test_lookup_order_data_dir_then_cache(dirs, monkeypatch):
    data, cache = dirs
    calls = offline(monkeypatch)
    cache.mkdir()
    (cache / "imdb.npz").write_bytes(b"cached")
    assert locate("imdb.npz", URL, sha256=SHA256) == cache / "imdb.npz"
    (data / "imdb.npz").write_bytes(b"local")
    assert locate("imdb.npz", URL, sha256=SHA256) == data / "imdb.npz"
    assert calls == []  # local files are used as they are: no download, no hash check


def test_files_in_sub_folders_are_found(dirs, monkeypatch):
    data, _ = dirs
    offline(monkeypatch)
    (data / "fashion-mnist").mkdir()
    (data / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"x")
    found = locate("fashion-mnist/t10k-labels-idx1-ubyte.gz", URL)
    assert found == data / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz"


# --- downloads ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("hashes", [{"sha256": SHA256}, {"md5": MD5}, {"sha256": SHA256.upper()}])
def test_verified_download_lands_in_the_cache(dirs, served, monkeypatch, capsys, hashes):
    _, cache = dirs
    path = locate("imdb.npz", served, **hashes)
    assert path == cache / "imdb.npz" and path.read_bytes() == PAYLOAD
    assert sorted(p.name for p in cache.iterdir()) == ["imdb.npz"]  # no partial files left
    assert "downloading imdb.npz" in capsys.readouterr().err
    calls = offline(monkeypatch)
    assert locate("imdb.npz", served, **hashes) == path and calls == []


def test_sub_folder_download(dirs, served):
    _, cache = dirs
    path = locate("fashion-mnist/imdb.npz", served, sha256=SHA256)
    assert path == cache / "fashion-mnist" / "imdb.npz" and path.read_bytes() == PAYLOAD


@pytest.mark.parametrize("hashes, kind", [({"sha256": "0" * 64}, "sha256"), ({"md5": "f" * 32}, "md5")])
def test_hash_mismatch_deletes_the_download_and_says_so(dirs, served, hashes, kind):
    _, cache = dirs
    with pytest.raises(NnctlError) as err:
        locate("imdb.npz", served, **hashes)
    message = str(err.value)
    want = next(iter(hashes.values()))
    got = SHA256 if kind == "sha256" else MD5
    assert f"has {kind} {got}" in message and f"expected {want}" in message and "deleted" in message
    assert list(cache.iterdir()) == []


def test_offline_and_missing_gives_one_clear_message(dirs, monkeypatch):
    data, cache = dirs
    calls = offline(monkeypatch)
    with pytest.raises(NnctlError) as err:
        locate("imdb.npz", URL, sha256=SHA256)
    message = str(err.value)
    for part in ("imdb.npz", f"sha256 {SHA256}", URL, str(data / "imdb.npz"), str(cache / "imdb.npz"),
                 "NNCTL_DATA_DIR", "Temporary failure in name resolution"):
        assert part in message, part
    assert calls == [(URL, fetch.TIMEOUT_S)]
    assert not any(cache.rglob("*")) if cache.exists() else True


@pytest.mark.parametrize("error", [TimeoutError("timed out"), ConnectionResetError("reset"),
                                   urllib.error.HTTPError(URL, 404, "Not Found", {}, None)])
def test_any_network_failure_gives_the_same_message(dirs, monkeypatch, error):
    offline(monkeypatch, error)
    with pytest.raises(NnctlError, match="could not be downloaded from .*put a copy"):
        locate("imdb.npz", URL, sha256=SHA256)


def test_download_off_fails_without_a_network_call(dirs, monkeypatch):
    calls = offline(monkeypatch)
    with pytest.raises(NnctlError, match="downloads are off"):
        locate("imdb.npz", URL, md5=MD5, download=False)
    assert calls == []
