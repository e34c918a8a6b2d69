"""The data side of the CLI on fixture files in the Keras layouts: `datasets`, `datasets show`, the smoke config,
`predict --text` on a text model, and predict reapplying a run's transforms (checked against NumPy)."""

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy

from nnctl.data.builtin import DATASETS
from nnctl.train.inference import load_run, predict_inputs
from tests.conftest import invoke, run_path

REPO = Path(__file__).resolve().parents[1]
TEXT_FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'




def table_rows(stdout: str) -> list[list[str]]:
    """The body rows of a rich table, each cell's wrapped lines joined by a space."""
    rows = []
    for line in stdout.splitlines():
        if not line.startswith("│"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("│").split("│")]
        if cells[0] or not rows:
            rows.append(cells)
        else:  # a wrapped continuation line of the previous row
            rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells)]
    return rows


def squeeze(text: str) -> str:
    """Without whitespace: rich wraps long cells (paths) at any character."""
    return re.sub(r"\s+", "", text)


# ---- nnctl datasets --------------------------------------------------------------------------------------------
@pytest.fixture
def short_data_dir(keras_data_dir, monkeypatch):
    """The fixture files as the relative NNCTL_DATA_DIR `keras-data`, so the `cached` column shows it whole."""
    monkeypatch.chdir(keras_data_dir.parent)
    monkeypatch.setenv("NNCTL_DATA_DIR", keras_data_dir.name)
    return Path(keras_data_dir.name)


def datasets_table() -> dict[str, list[str]]:
    result = invoke("datasets")
    assert result.exit_code == 0, result.output
    return {row[0]: row for row in table_rows(result.stdout)}


def test_datasets_lists_all_six_and_where_each_is_cached(short_data_dir):
    rows = datasets_table()
    assert list(rows) == ["imdb", "reuters", "mnist", "fashion_mnist", "boston_housing", "synthetic"]
    assert list(rows) == list(DATASETS)
    for name, row in rows.items():
        assert len(row) == 6 and squeeze(row[1]) == squeeze(DATASETS[name].description)
    assert rows["mnist"][5] == "keras-data" and rows["boston_housing"][5] == "keras-data"
    assert rows["fashion_mnist"][5] == "keras-data/fashion-mnist"
    assert rows["synthetic"][5] == "no files needed"
    assert rows["imdb"][3] == "binary, 2" and rows["reuters"][3] == "multiclass, 46"
    assert rows["boston_housing"][3] == "regression"


def test_datasets_says_what_is_missing(short_data_dir):
    (short_data_dir / "mnist.npz").unlink()
    (short_data_dir / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").unlink()  # one of four files gone
    rows = datasets_table()
    assert rows["mnist"][5] == "not cached (downloads on first use)"
    assert rows["fashion_mnist"][5] == "not cached (downloads on first use)"
    assert rows["boston_housing"][5] == "keras-data"


def test_datasets_finds_files_in_nnctl_cache_dir(short_data_dir, monkeypatch):
    monkeypatch.delenv("NNCTL_DATA_DIR")
    monkeypatch.delenv("NNCTL_DATASETS_CACHE")
    monkeypatch.setenv("NNCTL_CACHE_DIR", "cache-root")
    Path("cache-root", "datasets").mkdir(parents=True)
    shutil.copy(short_data_dir / "mnist.npz", Path("cache-root", "datasets"))
    rows = datasets_table()
    assert rows["mnist"][5] == "cache-root/datasets"
    assert rows["boston_housing"][5] == "not cached (downloads on first use)"


def test_datasets_marks_imdb_cached_after_a_load(short_data_dir):
    assert invoke("datasets", "show", "imdb").exit_code == 0  # builds the token cache
    assert datasets_table()["imdb"][5] == "keras-data"


def test_datasets_imdb_with_its_files_present_is_not_a_download(short_data_dir):
    rows = datasets_table()
    assert rows["imdb"][5] == "keras-data" and rows["reuters"][5] == "keras-data"


def test_datasets_shows_a_long_cache_path_whole(keras_data_dir):
    assert len(str(keras_data_dir)) > 40
    assert squeeze(datasets_table()["mnist"][5]) == squeeze(str(keras_data_dir))


# ---- nnctl datasets show ---------------------------------------------------------------------------------------
def keras_imdb_row(folder: Path, split: str, index: int):
    """Sample `index` of imdb.load_data() (seed 113, start_char 1, index_from 3), as Keras computes it."""
    with np.load(folder / "imdb.npz", allow_pickle=True) as f:  # our own fixture file
        parts = {"train": (f["x_train"], f["y_train"]), "test": (f["x_test"], f["y_test"])}
    rng = np.random.RandomState(113)
    shuffled = {}
    for name in ("train", "test"):  # one generator, drawn for train, then test
        x, y = parts[name]
        order = np.arange(len(x))
        rng.shuffle(order)
        shuffled[name] = (x[order], y[order])
    x, y = shuffled[split]
    return [1] + [w + 3 for w in x[index]], int(y[index])


def book_decode(folder: Path, ids) -> str:
    """The book's decoded_review: reverse_word_index.get(i - 3, '?')."""
    reverse = {rank: word for word, rank in json.loads((folder / "imdb_word_index.json").read_text()).items()}
    return " ".join(reverse.get(i - 3, "?") for i in ids)


@pytest.mark.parametrize("split, index", [("train", 0), ("train", 22), ("test", 5)])
def test_datasets_show_decodes_imdb_like_the_book(keras_data_dir, split, index):
    result = invoke("datasets", "show", "imdb", "--index", index, "--split", split)
    assert result.exit_code == 0, result.output
    ids, label = keras_imdb_row(keras_data_dir, split, index)
    decoded = book_decode(keras_data_dir, ids)
    assert decoded.startswith("? ") and "?" not in decoded[1:]  # the start mark; every fixture word is known
    assert result.stdout == (f"imdb {split}[{index}]: label {label} ({('negative', 'positive')[label]})\n"
                             f"{decoded}\n")


def test_book_decode_marks_the_reserved_indexes(keras_data_dir):
    assert book_decode(keras_data_dir, [0, 1, 2, 3, 4, 15]) == "? ? ? ? the story"


def test_datasets_show_image(keras_data_dir):
    result = invoke("datasets", "show", "mnist", "-i", "4")
    assert result.exit_code == 0, result.output
    with np.load(keras_data_dir / "mnist.npz") as f:
        image = f["x_train"][4]
    lines = result.stdout.splitlines()
    assert lines[:2] == ["mnist train[4]: label 4 (4)", f"shape [28, 28], values {image.min()}..{image.max()}"]
    assert len(lines) == 2 + 14 and all(len(line) == 28 for line in lines[2:])


@pytest.mark.parametrize("args, message", [
    (["imdb", "--index", "23"], "--index 23 is out of range: the train split has 23 samples"),
    (["imdb", "--index", "19", "--split", "test"], "--index 19 is out of range: the test split has 19 samples"),
    (["imdb", "--index", "-1"], "-1 is not in the range x>=0"),
    (["imdb", "--index", "two"], "'two' is not a valid integer"),
    (["imbd"], "unknown dataset 'imbd' — did you mean 'imdb'?"),
])
def test_datasets_show_bad_arguments_exit_2(keras_data_dir, args, message):
    result = invoke("datasets", "show", *args)
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert result.stdout == ""


# ---- training without files ------------------------------------------------------------------------------------
def test_the_smoke_config_trains(tmp_path):
    result = invoke("train", REPO / "configs" / "smoke.yaml", "--runs-dir", tmp_path / "runs", "--set", "epochs=2")
    assert result.exit_code == 0, result.output
    assert [line.split(" - ")[0] for line in result.stdout.splitlines() if line.startswith("Epoch ")] == [
        "Epoch 1/2", "Epoch 2/2"]
    run = run_path(result.stdout)
    history = json.loads((run / "history.json").read_text())
    assert len(history["val_accuracy"]) == 2
    assert json.loads((run / "preprocessing.json").read_text()) == {"transforms": [{"type": "multi_hot",
                                                                                    "width": 1000}]}


# ---- a text model: predict --text ------------------------------------------------------------------------------
TEXT_CONFIG = """\
name: text
seed: 3
data:
  dataset: {type: imdb, num_words: 50}
  transforms: [multi_hot]
model:
  layers:
    - {type: dense, units: 4, activation: relu}
    - {type: dense, units: 1, activation: sigmoid}
loss: binary_crossentropy
optimizer: rmsprop
metrics: [accuracy]
epochs: 1
batch_size: 8
"""
TEXTS = ["The film was GOOD, a great story!", "bad plot... bad actor; zebra", "movie"]


@pytest.fixture
def text_run(keras_data_dir, tmp_path):
    config = tmp_path / "text.yaml"
    config.write_text(TEXT_CONFIG, encoding="utf-8")
    result = invoke("train", config, "--runs-dir", tmp_path / "runs", "--quiet")
    assert result.exit_code == 0, result.output
    return run_path(result.stdout)


def book_probability(run: Path, text: str) -> float:
    """P(positive) in NumPy: the text as Keras's imdb indexes (num_words 50), multi-hot, then the 2-layer model."""
    ranks = json.loads((Path(os.environ["NNCTL_DATA_DIR"]) / "imdb_word_index.json").read_text())
    words = text.lower().translate(str.maketrans({c: " " for c in TEXT_FILTERS})).split()
    ids = [1] + [ranks[w] + 3 if w in ranks and ranks[w] + 3 < 50 else 2 for w in words]
    x = np.zeros((1, 50), np.float32)
    x[0, ids] = 1.0
    w = safetensors.numpy.load_file(str(run / "weights.safetensors"))
    hidden = np.maximum(x @ w["dense/kernel"] + w["dense/bias"], 0)
    logit = float((hidden @ w["dense_1/kernel"] + w["dense_1/bias"])[0, 0])
    return 1 / (1 + np.exp(-logit))


def assert_text_rows(run: Path, stdout: str, texts):
    rows = table_rows(stdout)
    assert len(rows) == len(texts), stdout
    for i, (text, row) in enumerate(zip(texts, rows)):
        number, shown, label, probability = row
        assert number == str(i) and squeeze(shown) == squeeze(text[:40])
        p = book_probability(run, text)
        assert label == ("1 positive" if p >= 0.5 else "0 negative")
        assert float(probability) == pytest.approx(max(p, 1 - p), abs=6e-5)


def test_predict_text_prints_one_row_per_text(text_run):
    result = invoke("predict", text_run, *[arg for text in TEXTS for arg in ("--text", text)])
    assert result.exit_code == 0, result.output
    head = next(line for line in result.stdout.splitlines() if line.startswith("┃"))
    assert [cell.strip() for cell in head.strip("┃").split("┃")] == ["#", "text", "class", "probability"]
    assert_text_rows(text_run, result.stdout, TEXTS)


def test_predict_reads_texts_one_per_line(text_run, tmp_path):
    reviews = tmp_path / "reviews.txt"
    reviews.write_text("\n".join(TEXTS[:2]) + "\n\n   \n" + TEXTS[2] + "\n", encoding="utf-8")
    result = invoke("predict", text_run, "--input", reviews)
    assert result.exit_code == 0, result.output
    assert_text_rows(text_run, result.stdout, TEXTS)
    assert table_rows(result.stdout) == table_rows(invoke("predict", text_run, "--text", TEXTS[0], "--text",
                                                          TEXTS[1], "--text", TEXTS[2]).stdout)


def test_predict_text_to_a_file(text_run, tmp_path):
    result = invoke("predict", text_run, "--text", TEXTS[0], "--text", TEXTS[1], "--output", tmp_path / "p.npy")
    assert result.exit_code == 0 and result.stdout == f"wrote 2 prediction(s) to {tmp_path / 'p.npy'}\n"
    np.testing.assert_allclose(np.load(tmp_path / "p.npy")[:, 0], [book_probability(text_run, t) for t in TEXTS[:2]],
                               rtol=1e-5)


def test_predict_text_on_a_model_without_text_exits_2(tiny_config, tmp_path):
    trained = invoke("train", tiny_config, "--runs-dir", tmp_path / "runs", "--quiet")
    assert trained.exit_code == 0, trained.output
    result = invoke("predict", run_path(trained.stdout), "--text", "a fine film")
    assert result.exit_code == 2
    assert result.stderr == "error: --text needs a model trained on the imdb or reuters dataset\n"


def test_predict_needs_exactly_one_kind_of_input(text_run, tmp_path):
    for args in ([], ["--text", "x", "--input", tmp_path / "r.txt"]):
        result = invoke("predict", text_run, *args)
        assert result.exit_code == 2 and "give either --input FILE or --text TEXT" in result.stderr


# ---- predict reapplies the run's transforms --------------------------------------------------------------------
STANDARDIZED_CONFIG = """\
name: std
seed: 5
data:
  path: d.npz
  validation: {holdout: 10}
  transforms: [standardize]
model:
  layers:
    - {type: dense, units: 6, activation: relu}
    - {type: dense, units: 1}
loss: mse
optimizer: rmsprop
epochs: 2
batch_size: 8
"""


def test_predict_standardizes_raw_inputs_with_the_training_statistics(tmp_path):
    rng = np.random.default_rng(9)
    x = (rng.normal(size=(50, 4)) * [1, 10, 100, 0.1] + [5, -3, 200, 0]).astype(np.float32)
    y = x @ np.array([1.0, 0.1, 0.01, 10.0], np.float32)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y)
    (tmp_path / "std.yaml").write_text(STANDARDIZED_CONFIG, encoding="utf-8")
    trained = invoke("train", tmp_path / "std.yaml", "--runs-dir", tmp_path / "runs", "--quiet")
    assert trained.exit_code == 0, trained.output
    run = run_path(trained.stdout)

    loaded = load_run(run)
    mean, std = x[10:].astype(np.float64).mean(axis=0), x[10:].astype(np.float64).std(axis=0)  # the training rows
    (state,) = json.loads((run / "preprocessing.json").read_text())["transforms"]
    np.testing.assert_allclose(state["mean"], mean, rtol=1e-12)
    np.testing.assert_allclose(state["std"], std, rtol=1e-12)
    standardized = ((x - mean) / std).astype(np.float32)
    expected = loaded.model.predict(standardized)
    np.testing.assert_allclose(predict_inputs(loaded, x), expected, rtol=1e-6)

    np.save(tmp_path / "raw.npy", x)
    result = invoke("predict", run, "--input", tmp_path / "raw.npy", "--output", tmp_path / "out.npy")
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, rtol=1e-6)
    assert not np.allclose(loaded.model.predict(x), expected)  # raw rows would give other outputs
