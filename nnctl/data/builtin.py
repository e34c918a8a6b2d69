"""Built-in datasets with Keras's `load_data` semantics (same shuffles, offsets and splits as the book), their
word indexes, and the `synthetic` generators that need no download.

Each loader returns a `BuiltinData`; `load_builtin(name, **options)` picks one from the `DATASETS` table.
"""

from __future__ import annotations

import functools
import gzip
import inspect
import json
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnctl.data.fetch import KERAS_URL, cache_dir, find_local, locate
from nnctl.data.safe_pickle import load_npz_objects, load_sequence_npz
from nnctl.data.sequences import Sequences
from nnctl.errors import ArgumentError, NnctlError, UnknownNameError, check_float_range
from nnctl.host import check_fits


@dataclass(frozen=True)
class RemoteFile:
    """A dataset file: its path inside a data folder, where Keras publishes it, and the published hash."""

    filename: str
    sha256: str | None = None
    md5: str | None = None

    @property
    def url(self) -> str:
        return KERAS_URL + Path(self.filename).name

    def locate(self, download: bool = True) -> Path:
        return locate(self.filename, self.url, sha256=self.sha256, md5=self.md5, download=download)


IMDB = RemoteFile("imdb.npz", sha256="69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f")
IMDB_WORDS = RemoteFile("imdb_word_index.json", md5="bfafd718b763782e994055a2d397834f")
REUTERS = RemoteFile("reuters.npz", sha256="d6586e694ee56d7a4e65172e12b3e987c03096cb01eab99753921ef915959916")
REUTERS_WORDS = RemoteFile("reuters_word_index.json", md5="4d44cc38712099c9e383dc6e5f11a921")
MNIST = RemoteFile("mnist.npz", sha256="731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1")
BOSTON = RemoteFile("boston_housing.npz",
                    sha256="f553886a1f8d56431e820c5b82552d9d95cfcb96d1e678153f8839538947dff5")
# Keras's fashion_mnist.FILE_HASHES; the files sit in a `fashion-mnist` sub-folder, as in Keras's cache
FASHION = {part: RemoteFile(f"fashion-mnist/{part}-idx{dims}-ubyte.gz", sha256=digest) for part, dims, digest in (
    ("train-labels", 1, "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
    ("train-images", 3, "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
    ("t10k-labels", 1, "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
    ("t10k-images", 3, "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"))}

# keras.datasets.reuters.get_label_names(), in label order
REUTERS_TOPICS = (
    "cocoa", "grain", "veg-oil", "earn", "acq", "wheat", "copper", "housing", "money-supply", "coffee", "sugar",
    "trade", "reserves", "ship", "cotton", "carcass", "crude", "nat-gas", "cpi", "money-fx", "interest", "gnp",
    "meal-feed", "alum", "oilseed", "gold", "tin", "strategic-metal", "livestock", "retail", "ipi", "iron-steel",
    "rubber", "heat", "jobs", "lei", "bop", "zinc", "orange", "pet-chem", "dlr", "gas", "silver", "wpi", "hog",
    "lead")
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")

# Keras's text_to_word_sequence default filters: each of these characters separates words
_TEXT_FILTERS = str.maketrans({ch: " " for ch in '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'})


@dataclass
class BuiltinData:
    """Train and test splits; x is `Sequences` for word-index datasets, a NumPy array otherwise."""

    name: str
    x_train: Sequences | np.ndarray
    y_train: np.ndarray
    x_test: Sequences | np.ndarray
    y_test: np.ndarray
    task: str  # "binary", "multiclass" or "regression"
    classes: int | None
    options: dict = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)  # the local files read


@dataclass(frozen=True)
class DatasetInfo:
    """What `nnctl datasets` lists about a built-in: its files, task, class count and input kind."""

    name: str
    description: str
    files: tuple[RemoteFile, ...]
    task: str  # "binary", "multiclass" or "regression"
    classes: int | None
    input: str
    labels: tuple[str, ...] | None = None  # class names, by label
    samples: str = ""  # train / test sizes with the default options


# --- IMDB and Reuters ------------------------------------------------------------------------------------------

def _token_cache(source: RemoteFile) -> Path:
    return cache_dir() / f"{Path(source.filename).stem}.tokens.npz"


def _raw_sequences(source: RemoteFile, *pairs: tuple[str, str]) -> list[tuple[Sequences, np.ndarray]]:
    """The file's raw (un-offset) (x, y) pairs, through the pickle-free cache that serves every option set."""
    path = source.locate()
    arrays = load_sequence_npz(path, _token_cache(source))
    for x_key, y_key in pairs:
        if not isinstance(arrays.get(x_key), Sequences) or not isinstance(arrays.get(y_key), np.ndarray):
            raise NnctlError(f"{path} is not Keras's {source.filename}: it needs sequences `{x_key}` and labels "
                             f"`{y_key}` (it has: {', '.join(sorted(arrays)) or 'nothing'})")
    return [(arrays[x_key], arrays[y_key]) for x_key, y_key in pairs], path


def _shuffled(rng: np.random.RandomState, x: Sequences, y: np.ndarray):
    # Keras: indices = np.arange(n); rng.shuffle(indices) — one rng, drawn again for each split
    indices = np.arange(len(x))
    rng.shuffle(indices)
    return x.take(indices), y[indices]


def _keras_offsets(parts, *, num_words, skip_top, maxlen, start_char, oov_char, index_from):
    """Keras's steps on shuffled (x, y) parts: shift by `index_from`, prepend `start_char`, drop rows of
    `maxlen` tokens or more, then replace (or, with `oov_char=None`, drop) tokens outside [skip_top, num_words).

    As in Keras, `skip_top` compares with the shifted indexes (so it can hide `start_char`), and without
    `num_words` the limit is the largest index present, which itself becomes `oov_char`."""
    shifted = []
    for x, y in parts:
        x = Sequences(x.tokens + np.int32(index_from or 0), x.offsets)
        if start_char is not None:
            x = x.prepend(start_char)
        if maxlen:
            short = x.lengths() < maxlen
            x, y = x.take(short), y[short]
        shifted.append((x, y))
    if not num_words:
        num_words = max((int(x.tokens.max()) for x, _ in shifted if len(x.tokens)), default=0)
    out = []
    for x, y in shifted:
        keep = (x.tokens >= skip_top) & (x.tokens < num_words)
        if oov_char is None:
            x = x.keep_tokens(keep)
        else:
            x = Sequences(np.where(keep, x.tokens, np.int32(oov_char)), x.offsets)
        out.append((x, y))
    return out


def load_imdb(num_words=None, skip_top=0, maxlen=None, seed=113, start_char=1, oov_char=2,
              index_from=3) -> BuiltinData:
    """keras.datasets.imdb.load_data: 25,000 + 25,000 reviews as word indexes, labels 0/1."""
    options = dict(num_words=num_words, skip_top=skip_top, maxlen=maxlen, start_char=start_char,
                   oov_char=oov_char, index_from=index_from)
    rng = np.random.RandomState(seed)
    pairs, path = _raw_sequences(IMDB, ("x_train", "y_train"), ("x_test", "y_test"))
    parts = [_shuffled(rng, x, y) for x, y in pairs]
    (x_train, y_train), (x_test, y_test) = _keras_offsets(parts, **options)
    if maxlen and (len(x_train) == 0 or len(x_test) == 0):
        raise ArgumentError(f"`maxlen`={maxlen} keeps no review (rows of maxlen tokens or more are dropped); "
                            f"increase it.")
    return BuiltinData("imdb", x_train, y_train, x_test, y_test, "binary", 2, dict(options, seed=seed),
                       [path])


def load_reuters(num_words=None, skip_top=0, maxlen=None, test_split=0.2, seed=113, start_char=1, oov_char=2,
                 index_from=3) -> BuiltinData:
    """keras.datasets.reuters.load_data: 11,228 newswires over 46 topics, shuffled then split."""
    check_float_range("test_split", test_split, 0.0, 1.0, high_open=True)
    options = dict(num_words=num_words, skip_top=skip_top, maxlen=maxlen, start_char=start_char,
                   oov_char=oov_char, index_from=index_from)
    [(x, y)], path = _raw_sequences(REUTERS, ("x", "y"))
    [(x, y)] = _keras_offsets([_shuffled(np.random.RandomState(seed), x, y)], **options)
    split = int(len(x) * (1 - test_split))
    return BuiltinData("reuters", x[:split], y[:split], x[split:], y[split:], "multiclass", 46,
                       dict(options, test_split=test_split, seed=seed), [path])


@functools.lru_cache(maxsize=4)
def _read_word_index(path: str, mtime_ns: int) -> dict[str, int]:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


@functools.lru_cache(maxsize=4)
def _read_reverse_index(path: str, mtime_ns: int) -> dict[int, str]:
    return {rank: word for word, rank in _read_word_index(path, mtime_ns).items()}


def _word_index_path(name: str) -> str:
    files = {"imdb": IMDB_WORDS, "reuters": REUTERS_WORDS}
    if name not in files:
        raise UnknownNameError("word-index dataset", name, list(files))
    return str(files[name].locate())


def word_index(name: str) -> dict[str, int]:
    """Keras's `get_word_index()` for "imdb" or "reuters": {word: rank}, rank 1 the most frequent."""
    path = _word_index_path(name)
    return dict(_read_word_index(path, Path(path).stat().st_mtime_ns))


def decode(sequence, name: str, index_from: int = 3) -> str:
    """Word indexes back to text, as the book does: index i is word rank i - index_from, "?" when none."""
    path = _word_index_path(name)
    reverse = _read_reverse_index(path, Path(path).stat().st_mtime_ns)
    return " ".join(reverse.get(int(i) - index_from, "?") for i in sequence)


def encode_text(text: str, name: str, num_words=None, index_from=3, start_char=1, oov_char=2,
                skip_top=0) -> list[int]:
    """Text to the word indexes `load_imdb`/`load_reuters` would give it: Keras's text_to_word_sequence
    (lower-case, punctuation splits words), rank + index_from, unknown or out-of-range words as `oov_char`."""
    ranks = word_index(name)
    out = [] if start_char is None else [start_char]
    for word in text.lower().translate(_TEXT_FILTERS).split():
        index = ranks[word] + index_from if word in ranks else None
        if index is not None and skip_top <= index and (not num_words or index < num_words):
            out.append(index)
        elif oov_char is not None:
            out.append(oov_char)
    return out


def reuters_topics() -> tuple[str, ...]:
    """The 46 Reuters topic names, indexed by label."""
    return REUTERS_TOPICS


# --- images and tables ---------------------------------------------------------------------------------------

def load_mnist() -> BuiltinData:
    """keras.datasets.mnist.load_data: uint8 (60000, 28, 28) and (10000, 28, 28) digits, uint8 labels."""
    path = MNIST.locate()
    f = load_npz_objects(path)
    return BuiltinData("mnist", f["x_train"], f["y_train"], f["x_test"], f["y_test"], "multiclass", 10, {}, [path])


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """An idx file (gzip): magic 0x0000 0x08 ndim, `ndim` big-endian uint32 sizes, then uint8 data. Only as many
    bytes as the sizes declare are inflated (a gzip bomb stops there), once they are known to fit in memory."""
    try:
        with gzip.open(path, "rb") as handle:
            head = handle.read(4 + 4 * ndim)
            if len(head) < 4 + 4 * ndim or head[:3] != b"\x00\x00\x08" or head[3] != ndim:
                raise NnctlError(f"{path} is not a {ndim}-dimensional uint8 idx file")
            shape = tuple(int(d) for d in np.frombuffer(head, ">u4", count=ndim, offset=4))
            check_fits(math.prod(shape), str(path))
            data = handle.read(math.prod(shape) + 1)
    except (OSError, EOFError, zlib.error) as err:
        raise NnctlError(f"cannot read {path}: {err}") from None
    if len(data) != math.prod(shape):
        held = "more" if len(data) > math.prod(shape) else len(data)
        raise NnctlError(f"{path}: header says {shape} but holds {held} values")
    return np.frombuffer(data, np.uint8).reshape(shape).copy()


def load_fashion_mnist() -> BuiltinData:
    """keras.datasets.fashion_mnist.load_data: like MNIST, ten kinds of clothing."""
    paths = {part: remote.locate() for part, remote in FASHION.items()}
    arrays = {part: _read_idx(path, 1 if part.endswith("labels") else 3) for part, path in paths.items()}
    return BuiltinData("fashion_mnist", arrays["train-images"], arrays["train-labels"], arrays["t10k-images"],
                       arrays["t10k-labels"], "multiclass", 10, {}, list(paths.values()))


def load_boston_housing(test_split=0.2, seed=113) -> BuiltinData:
    """keras.datasets.boston_housing.load_data: 506 rows of 13 features, shuffled, first 80 % for training."""
    check_float_range("test_split", test_split, 0.0, 1.0, high_open=True)
    path = BOSTON.locate()
    arrays = load_npz_objects(path)
    x, y = arrays["x"], arrays["y"]
    indices = np.arange(len(x))
    np.random.RandomState(seed).shuffle(indices)
    x, y = x[indices], y[indices]
    split = int(len(x) * (1 - test_split))
    return BuiltinData("boston_housing", x[:split], y[:split], x[split:], y[split:], "regression", None,
                       dict(test_split=test_split, seed=seed), [path])


# --- synthetic -----------------------------------------------------------------------------------------------

_MARKERS_PER_CLASS = 5


def _synthetic_text(rng, samples, classes, width, length, noise):
    """Rows of random background words plus up to 3 of their class's marker words; `noise` relabels that
    fraction of rows at random. Indexes 0-2 stay reserved (padding, start, oov) and every row starts with 1."""
    needed = 3 + classes * _MARKERS_PER_CLASS + 2 * classes * _MARKERS_PER_CLASS
    if width < needed:
        raise ArgumentError(f"`width` must be at least {needed} for {classes} classes of synthetic text, "
                            f"got {width}.")
    words = rng.permutation(np.arange(3, width))
    markers = words[:classes * _MARKERS_PER_CLASS].reshape(classes, _MARKERS_PER_CLASS)
    background = words[classes * _MARKERS_PER_CLASS:]
    y = rng.integers(0, classes, samples)
    lengths = rng.integers(max(1, length // 2), length + length // 2 + 1, samples)
    offsets = np.concatenate(([0], np.cumsum(lengths)))
    tokens = background[rng.integers(0, len(background), offsets[-1])]
    hits = np.minimum(lengths, 3)
    hit_rows = np.repeat(np.arange(samples), hits)
    positions = offsets[hit_rows] + (rng.random(len(hit_rows)) * lengths[hit_rows]).astype(np.int64)
    tokens[positions] = markers[y[hit_rows], rng.integers(0, _MARKERS_PER_CLASS, len(hit_rows))]
    relabel = rng.random(samples) < noise
    y[relabel] = rng.integers(0, classes, int(relabel.sum()))
    return Sequences(tokens, offsets).prepend(1), y.astype(np.int64)


def load_synthetic(kind="classification", samples=1000, features=20, classes=2, width=1000, length=50,
                   noise=0.1, seed=0, test_split=0.2) -> BuiltinData:
    """Generated data, the same for the same options and `seed`:

    - "classification": `classes` Gaussian blobs in `features` dimensions (centres ~ N(0, 1), spread `noise`).
    - "regression": y = x·w + 0.3·sin(x₀) + `noise`·N(0, 1), x ~ N(0, 1).
    - "text": `Sequences` over `width` word indexes, about `length` long, whose class shows in a few marker
      words (a multi-hot MLP learns it); `noise` is the fraction of rows given a random label.
    - "tickets": the book's support tickets (data/tickets.py): named inputs title, text_body (multi-hot over
      `width` words) and tags (`features` of them), outputs priority and department (`classes` of them).
    """
    kinds = ("classification", "regression", "text", "tickets")
    if kind not in kinds:
        raise ArgumentError(f"`kind` must be one of {', '.join(kinds)}, got {kind!r}.")
    if kind != "regression" and (isinstance(classes, bool) or not isinstance(classes, int) or classes < 2):
        raise ArgumentError(f"`classes` must be an integer of at least 2, got {classes!r}.")
    check_float_range("test_split", test_split, 0.0, 1.0, high_open=True)
    check_float_range("noise", noise, 0.0, float("inf"))
    rng = np.random.default_rng(seed)
    if kind == "text":
        x, y = _synthetic_text(rng, samples, classes, width, length, noise)
    elif kind == "tickets":
        from nnctl.data.tickets import tickets
        x, y = tickets(rng, samples, width, features, classes, noise)
    elif kind == "classification":
        centres = rng.normal(size=(classes, features))
        y = rng.integers(0, classes, samples).astype(np.int64)
        x = (centres[y] + noise * rng.normal(size=(samples, features))).astype(np.float32)
    else:
        x = rng.normal(size=(samples, features))
        weights = rng.normal(size=features) / np.sqrt(features)
        y = (x @ weights + 0.3 * np.sin(x[:, 0]) + noise * rng.normal(size=samples)).astype(np.float32)
        x = x.astype(np.float32)
    split = int(samples * (1 - test_split))
    options = dict(kind=kind, samples=samples, features=features, classes=classes, width=width, length=length,
                   noise=noise, seed=seed, test_split=test_split)
    task = ("regression" if kind == "regression" else "several" if kind == "tickets" else "binary" if classes == 2
            else "multiclass")
    return BuiltinData("synthetic", x[:split], y[:split], x[split:], y[split:], task,
                       None if kind == "regression" else classes, options)


# --- the table -----------------------------------------------------------------------------------------------

DATASETS = {info.name: info for info in (
    DatasetInfo("imdb", "IMDB movie reviews, positive or negative (Keras imdb.load_data)", (IMDB, IMDB_WORDS),
                "binary", 2, "word-index sequences", ("negative", "positive"), samples="25,000 / 25,000"),
    DatasetInfo("reuters", "Reuters newswires over 46 topics (Keras reuters.load_data)", (REUTERS, REUTERS_WORDS),
                "multiclass", 46, "word-index sequences", REUTERS_TOPICS, samples="8,982 / 2,246"),
    DatasetInfo("mnist", "MNIST handwritten digits", (MNIST,), "multiclass", 10, "uint8 images (28, 28)",
                tuple(str(d) for d in range(10)), samples="60,000 / 10,000"),
    DatasetInfo("fashion_mnist", "Fashion-MNIST clothing images", tuple(FASHION.values()), "multiclass", 10,
                "uint8 images (28, 28)", FASHION_CLASSES, samples="60,000 / 10,000"),
    DatasetInfo("boston_housing", "Boston house prices in k$ (Keras boston_housing.load_data)", (BOSTON,),
                "regression", None, "float features (13,)", samples="404 / 102"),
    # task and classes of the default options; `BuiltinData.task` tells those of the options given
    DatasetInfo("synthetic", "generated blobs, regression or word-index text (no download)", (),
                "binary", 2, "float features, or word-index sequences for kind=text", samples="800 / 200"),
)}

LOADERS = {"imdb": load_imdb, "reuters": load_reuters, "mnist": load_mnist, "fashion_mnist": load_fashion_mnist,
           "boston_housing": load_boston_housing, "synthetic": load_synthetic}


def _canonical(name: str) -> str:
    key = str(name).strip().lower().replace("-", "_")
    if key not in DATASETS:
        raise UnknownNameError("dataset", name, list(DATASETS))
    return key


def load_builtin(name: str, **options) -> BuiltinData:
    """The built-in dataset `name` with its loader's options (see each `load_*`)."""
    loader = LOADERS[_canonical(name)]
    allowed = list(inspect.signature(loader).parameters)
    for option in options:
        if option not in allowed:
            raise ArgumentError(f"unknown option `{option}` for dataset '{_canonical(name)}' "
                                f"(allowed: {', '.join(allowed) or 'none'}).")
    return loader(**options)


def cache_status(name: str) -> list[tuple[str, Path | None]]:
    """Each file the dataset uses, with where it was found locally (None: it would be downloaded)."""
    info = DATASETS[_canonical(name)]
    status = [(remote.filename, find_local(remote.filename)) for remote in info.files]
    for remote in info.files:
        if remote.filename.endswith(".npz") and remote in (IMDB, REUTERS):
            cache = _token_cache(remote)
            status.append((cache.name, cache if cache.is_file() else None))
    return status
