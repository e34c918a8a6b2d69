"""Built-in loaders on tiny files in the exact Keras layouts, checked against a line-by-line re-implementation of
Keras's load_data; synthetic generators; the registry; and (only with NNCTL_DATA_DIR set) the real files."""

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from nnctl.data import builtin, safe_pickle
from nnctl.data.builtin import (DATASETS, cache_status, decode, encode_text, load_boston_housing, load_builtin,
                                load_fashion_mnist, load_imdb, load_mnist, load_reuters, load_synthetic,
                                reuters_topics, word_index)
from nnctl.data.sequences import Sequences
from nnctl.errors import ArgumentError, NnctlError, UnknownNameError

REAL_DATA = os.environ.get("NNCTL_DATA_DIR")
from tests.conftest import KERAS_WORDS as WORDS, object_array, write_idx


def keras_load(path, *, split=None, num_words=None, skip_top=0, maxlen=None, test_split=0.2, seed=113,
               start_char=1, oov_char=2, index_from=3):
    """keras.datasets.imdb/reuters.load_data written out with Python lists (split=None: imdb's two files)."""
    with np.load(path, allow_pickle=True) as f:
        parts = [(f["x_train"], f["y_train"]), (f["x_test"], f["y_test"])] if split is None else [(f["x"], f["y"])]
    rng = np.random.RandomState(seed)
    shuffled = []
    for x, y in parts:
        indices = np.arange(len(x))
        rng.shuffle(indices)
        shuffled.append((x[indices], y[indices]))
    out = []
    for x, y in shuffled:
        if start_char is not None:
            x = [[start_char] + [w + index_from for w in row] for row in x]
        else:
            x = [[w + index_from for w in row] for row in x]
        if maxlen:
            kept = [i for i, row in enumerate(x) if len(row) < maxlen]
            x, y = [x[i] for i in kept], y[kept]
        out.append((x, y))
    if not num_words:
        num_words = max(max(row) for x, _ in out for row in x)
    result = []
    for x, y in out:
        if oov_char is not None:
            x = [[w if skip_top <= w < num_words else oov_char for w in row] for row in x]
        else:
            x = [[w for w in row if skip_top <= w < num_words] for row in x]
        result.append((x, y))
    if split is not None:
        (x, y), = result
        idx = int(len(x) * (1 - test_split))
        return (x[:idx], y[:idx]), (x[idx:], y[idx:])
    return result


@pytest.fixture
def data_dir(keras_data_dir):
    """The fixture files in NNCTL_DATA_DIR, an empty cache, and no network (any download attempt fails)."""
    return keras_data_dir


OPTION_SETS = [
    {},
    {"num_words": 8},
    {"num_words": 8, "skip_top": 5},
    {"skip_top": 2},
    {"maxlen": 6},
    {"maxlen": 8, "num_words": 10, "skip_top": 4},
    {"start_char": None},
    {"start_char": None, "index_from": 0},
    {"oov_char": None, "num_words": 9},
    {"oov_char": None, "skip_top": 6, "maxlen": 7},
    {"index_from": 0},
    {"index_from": 5, "start_char": 3, "oov_char": 4},
    {"seed": 7},
    {"seed": 0, "num_words": 6, "oov_char": 1},
]


# --- IMDB and Reuters -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("options", OPTION_SETS, ids=[str(o) for o in OPTION_SETS])
def test_imdb_matches_keras(data_dir, options):
    data = load_imdb(**options)
    (x_train, y_train), (x_test, y_test) = keras_load(data_dir / "imdb.npz", **options)
    assert isinstance(data.x_train, Sequences) and data.x_train.tokens.dtype == np.int32
    assert data.x_train.to_lists() == x_train and data.x_test.to_lists() == x_test
    np.testing.assert_array_equal(data.y_train, y_train)
    np.testing.assert_array_equal(data.y_test, y_test)
    assert (data.task, data.classes) == ("binary", 2)


@pytest.mark.parametrize("options", OPTION_SETS + [{"test_split": 0.5}, {"test_split": 0.1, "maxlen": 7}],
                         ids=[str(o) for o in OPTION_SETS] + ["split0.5", "split0.1+maxlen"])
def test_reuters_matches_keras(data_dir, options):
    data = load_reuters(**options)
    (x_train, y_train), (x_test, y_test) = keras_load(data_dir / "reuters.npz", split=True, **options)
    assert data.x_train.to_lists() == x_train and data.x_test.to_lists() == x_test
    np.testing.assert_array_equal(data.y_train, y_train)
    np.testing.assert_array_equal(data.y_test, y_test)


def test_seed_113_shuffle_order(data_dir):
    with np.load(data_dir / "imdb.npz", allow_pickle=True) as f:
        raw_train, raw_test, labels = f["x_train"], f["x_test"], f["y_test"]
    rng = np.random.RandomState(113)
    train_order, test_order = np.arange(len(raw_train)), np.arange(len(raw_test))
    rng.shuffle(train_order)
    rng.shuffle(test_order)  # the same generator, drawn again
    data = load_imdb(start_char=None, index_from=0, num_words=10**6)
    assert data.x_train.to_lists() == [raw_train[i] for i in train_order]
    assert data.x_test.to_lists() == [raw_test[i] for i in test_order]
    np.testing.assert_array_equal(data.y_test, labels[test_order])


def test_offsets_and_oov_spelled_out(data_dir):
    with np.load(data_dir / "imdb.npz", allow_pickle=True) as f:
        order = np.arange(len(f["x_train"]))
        np.random.RandomState(113).shuffle(order)
        first = f["x_train"][order[0]]
    data = load_imdb(num_words=9)
    assert data.x_train[0].tolist() == [1] + [w + 3 if w + 3 < 9 else 2 for w in first]


def test_imdb_maxlen_that_keeps_nothing_is_an_argument_error(data_dir):
    with pytest.raises(ArgumentError, match="`maxlen`"):
        load_imdb(maxlen=1)


def test_second_load_reads_the_pickle_free_cache(data_dir, tmp_path, monkeypatch):
    first = load_imdb()
    assert (tmp_path / "keras-cache" / "imdb.tokens.npz").is_file()

    def unpickle(path):
        raise AssertionError("unpickled again")

    monkeypatch.setattr(safe_pickle, "load_npz_sequences", unpickle)
    again = load_imdb()
    assert again.x_train.to_lists() == first.x_train.to_lists()
    np.testing.assert_array_equal(again.y_test, first.y_test)
    # one cache serves every option set
    expected = keras_load(data_dir / "imdb.npz", num_words=7, maxlen=8)
    assert load_imdb(num_words=7, maxlen=8).x_test.to_lists() == expected[1][0]
    # a touched source invalidates it
    os.utime(data_dir / "imdb.npz", ns=(0, (data_dir / "imdb.npz").stat().st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="unpickled again"):
        load_imdb()


def test_a_malicious_imdb_file_is_refused(data_dir, tmp_path):
    marker = tmp_path / "pwned"

    class RunsCommand:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    np.savez(data_dir / "imdb.npz", x_train=object_array([RunsCommand()]), y_train=np.zeros(1),
             x_test=object_array([[1]]), y_test=np.zeros(1))
    with pytest.raises(NnctlError, match="refusing to unpickle"):
        load_imdb()
    assert not marker.exists()


def test_a_file_without_the_keras_arrays_is_named(data_dir):
    np.savez(data_dir / "reuters.npz", x=np.arange(3), y=np.arange(3))
    with pytest.raises(NnctlError, match=r"reuters.npz is not Keras's reuters.npz: it needs sequences `x`"):
        load_reuters()


def test_missing_file_offline_names_file_hash_and_folders(data_dir, tmp_path):
    (data_dir / "imdb.npz").unlink()
    with pytest.raises(NnctlError) as err:
        load_imdb()
    message = str(err.value)
    assert "imdb.npz" in message and builtin.IMDB.sha256 in message and "NNCTL_DATA_DIR" in message
    assert "https://storage.googleapis.com/tensorflow/tf-keras-datasets/imdb.npz" in message
    assert str(tmp_path / "keras-cache" / "imdb.npz") in message


# --- word indexes ---------------------------------------------------------------------------------------------

def test_word_index_decode_and_encode(data_dir):
    index = word_index("imdb")
    assert index["the"] == 1 and len(index) == len(WORDS)
    assert decode([1, 4, 8, 2, 0, 3, 15, 99], "imdb") == "? the film ? ? ? story ?"
    assert decode([0, 4], "reuters", index_from=0) == "? of"
    text = "The FILM, the plot... and a zebra!"
    assert encode_text(text, "imdb") == [1, 4, 8, 4, 13, 5, 6, 2]
    assert encode_text(text, "imdb", num_words=8) == [1, 4, 2, 4, 2, 5, 6, 2]
    assert encode_text(text, "imdb", start_char=None, oov_char=None, index_from=0) == [1, 5, 1, 10, 2, 3]
    assert encode_text(text, "imdb", skip_top=5) == [1, 2, 8, 2, 13, 5, 6, 2]
    with pytest.raises(UnknownNameError):
        word_index("mnist")


def test_encode_text_agrees_with_load_semantics(data_dir):
    ids = encode_text("good bad great plot", "imdb", num_words=12)
    assert ids == [1] + [WORDS.index(w) + 1 + 3 if WORDS.index(w) + 4 < 12 else 2
                         for w in ("good", "bad", "great", "plot")]


def test_reuters_topics():
    topics = reuters_topics()
    assert len(topics) == 46 and len(set(topics)) == 46
    assert topics[:5] == ("cocoa", "grain", "veg-oil", "earn", "acq") and topics[-1] == "lead"


# --- images and tables ----------------------------------------------------------------------------------------

def test_mnist(data_dir):
    data = load_mnist()
    assert data.x_train.shape == (6, 28, 28) and data.x_train.dtype == np.uint8
    assert data.y_train.tolist() == list(range(6)) and data.x_test.shape == (3, 28, 28)


def test_fashion_mnist_idx_files(data_dir):
    data = load_fashion_mnist()
    assert data.x_train.shape == (5, 28, 28) and data.x_test.shape == (2, 28, 28)
    assert data.x_train.dtype == np.uint8 and data.y_train.tolist() == [0, 1, 2, 3, 4]
    with gzip.open(data_dir / "fashion-mnist" / "train-images-idx3-ubyte.gz") as f:
        np.testing.assert_array_equal(data.x_train.reshape(-1), np.frombuffer(f.read(), np.uint8, offset=16))


def test_a_malformed_idx_file_is_refused(data_dir):
    write_idx(data_dir / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz", np.zeros((2, 2), np.uint8))
    with pytest.raises(NnctlError, match="1-dimensional uint8 idx"):
        load_fashion_mnist()


@pytest.mark.parametrize("test_split, seed", [(0.2, 113), (0.5, 3)])
def test_boston_housing_split(data_dir, test_split, seed):
    data = load_boston_housing(test_split=test_split, seed=seed)
    order = np.arange(11)
    np.random.RandomState(seed).shuffle(order)
    cut = int(11 * (1 - test_split))
    np.testing.assert_array_equal(data.y_train, order[:cut].astype(float))
    np.testing.assert_array_equal(data.y_test, order[cut:].astype(float))
    assert data.x_train.shape == (cut, 13) and data.task == "regression"


# --- synthetic ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["classification", "regression", "text"])
def test_synthetic_is_deterministic_by_seed(kind):
    def arrays(data):
        xs = [d.tokens if isinstance(d, Sequences) else d for d in (data.x_train, data.x_test)]
        return xs + [data.y_train, data.y_test]

    first, again, other = (load_synthetic(kind, samples=200, seed=s) for s in (1, 1, 2))
    for a, b in zip(arrays(first), arrays(again)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(arrays(first)[0], arrays(other)[0])


def test_synthetic_shapes_and_types():
    blobs = load_synthetic("classification", samples=100, features=7, classes=3, test_split=0.3)
    assert blobs.x_train.shape == (70, 7) and blobs.x_test.shape == (30, 7) and blobs.x_train.dtype == np.float32
    assert set(blobs.y_train.tolist()) <= {0, 1, 2} and (blobs.task, blobs.classes) == ("multiclass", 3)
    reg = load_synthetic("regression", samples=50, features=4)
    assert reg.x_train.shape == (40, 4) and reg.y_train.shape == (40,) and reg.y_train.dtype == np.float32
    assert (reg.task, reg.classes) == ("regression", None)
    text = load_synthetic("text", samples=60, width=200, length=10)
    assert isinstance(text.x_train, Sequences) and len(text.x_train) == 48 and len(text.x_test) == 12
    assert text.x_train.tokens.max() < 200 and np.all(text.x_train.tokens[text.x_train.offsets[:-1]] == 1)
    assert 5 <= text.x_train.lengths().mean() <= 17 and text.task == "binary"


def test_synthetic_blobs_and_text_are_learnable():
    blobs = load_synthetic("classification", classes=4)
    centres = np.stack([blobs.x_train[blobs.y_train == k].mean(0) for k in range(4)])
    nearest = np.argmin(((blobs.x_test[:, None, :] - centres) ** 2).sum(-1), axis=1)
    assert (nearest == blobs.y_test).mean() > 0.9
    text = load_synthetic("text", noise=0.0)
    x_train, x_test = text.x_train.multi_hot(1000).to_dense(), text.x_test.multi_hot(1000).to_dense()
    weights = np.linalg.solve(x_train.T @ x_train + 10 * np.eye(1000), x_train.T @ (2.0 * text.y_train - 1))
    assert ((x_test @ weights > 0) == text.y_test).mean() > 0.9


def test_synthetic_arguments_are_checked():
    with pytest.raises(ArgumentError, match="`kind`"):
        load_synthetic("images")
    with pytest.raises(ArgumentError, match="`width`"):
        load_synthetic("text", width=10)
    with pytest.raises(ArgumentError, match="`classes`"):
        load_synthetic("classification", classes=1)


# --- the table ------------------------------------------------------------------------------------------------

def test_load_builtin_dispatches_and_checks_options(data_dir):
    assert load_builtin("fashion-mnist").name == "fashion_mnist"
    assert load_builtin("imdb", num_words=9).options["num_words"] == 9
    with pytest.raises(ArgumentError, match=r"unknown option `numwords` for dataset 'imdb' \(allowed: num_words"):
        load_builtin("imdb", numwords=9)
    with pytest.raises(UnknownNameError, match="did you mean 'imdb'"):
        load_builtin("imbd")


def test_every_dataset_is_described_and_loadable(data_dir):
    for name, info in DATASETS.items():
        assert info.task in ("binary", "multiclass", "regression")
        data = load_builtin(name)
        assert data.task == info.task and data.classes == info.classes
        if info.labels is not None:
            assert len(info.labels) == info.classes


def test_loaded_data_names_the_files_it_read(data_dir):
    assert load_imdb().files == [data_dir / "imdb.npz"]
    assert load_reuters().files == [data_dir / "reuters.npz"]
    assert load_mnist().files == [data_dir / "mnist.npz"]
    assert load_boston_housing().files == [data_dir / "boston_housing.npz"]
    assert [p.name for p in load_fashion_mnist().files] == [Path(f.filename).name for f in builtin.FASHION.values()]
    assert load_synthetic().files == []


def test_cache_status(data_dir, tmp_path):
    assert cache_status("imdb") == [("imdb.npz", data_dir / "imdb.npz"),
                                    ("imdb_word_index.json", data_dir / "imdb_word_index.json"),
                                    ("imdb.tokens.npz", None)]
    load_imdb()
    assert cache_status("imdb")[-1] == ("imdb.tokens.npz", tmp_path / "keras-cache" / "imdb.tokens.npz")
    (data_dir / "mnist.npz").unlink()
    assert cache_status("mnist") == [("mnist.npz", None)]
    assert cache_status("synthetic") == []


# --- the real files (only when NNCTL_DATA_DIR points at them) -------------------------------------------------

real = pytest.mark.skipif(not REAL_DATA or not (Path(REAL_DATA or ".") / "imdb.npz").is_file(),
                          reason="set NNCTL_DATA_DIR to a folder with the Keras dataset files")


@pytest.fixture
def real_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NNCTL_DATASETS_CACHE", str(tmp_path / "keras-cache"))


@real
@pytest.mark.slow
def test_real_imdb_acceptance(real_cache):
    data = load_imdb(num_words=10000)
    assert (len(data.x_train), len(data.x_test)) == (25000, 25000)
    assert data.x_train[0][:8].tolist() == [1, 14, 22, 16, 43, 530, 973, 1622] and data.y_train[0] == 1
    assert data.x_train.tokens.max() == 9999
    assert decode(data.x_train[0], "imdb").startswith("? this film was just brilliant casting location scenery")
    assert len(word_index("imdb")) == 88584
    cached = load_imdb(num_words=10000)
    np.testing.assert_array_equal(cached.x_train.tokens, data.x_train.tokens)


@real
@pytest.mark.slow
def test_real_reuters_acceptance(real_cache):
    data = load_reuters(num_words=10000)
    assert (len(data.x_train), len(data.x_test)) == (8982, 2246)
    assert data.y_train[10] == 3 and data.y_train.max() == 45
    assert decode(data.x_train[0], "reuters").startswith("? ? ? said as a result of its december acquisition")
    assert len(word_index("reuters")) == 30979


@real
@pytest.mark.slow
def test_real_images_and_boston(real_cache):
    mnist = load_mnist()
    assert mnist.x_train.shape == (60000, 28, 28) and mnist.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    fashion = load_fashion_mnist()
    assert fashion.x_train.shape == (60000, 28, 28) and fashion.x_test.shape == (10000, 28, 28)
    assert set(fashion.y_test.tolist()) == set(range(10))
    boston = load_boston_housing()
    assert (len(boston.x_train), len(boston.x_test)) == (404, 102)
    np.testing.assert_allclose(boston.y_train[:3], [15.2, 42.3, 50.0])
