"""nnctl.datasets (Keras's load_data signatures, on the tiny Keras-format fixtures) and nnctl.load_run (a run
trained by the command line, ready to predict raw inputs as `nnctl predict` does)."""

import numpy as np

import nnctl
from nnctl.data import builtin
from tests.conftest import TINY_CONFIG, invoke, write_npz


def test_keras_dataset_modules_return_keras_pairs(keras_data_dir):
    (x_train, y_train), (x_test, y_test) = nnctl.datasets.imdb.load_data(num_words=20)
    ours = builtin.load_imdb(num_words=20)
    assert x_train.dtype == object and isinstance(x_train[0], list) and len(x_train) == len(y_train) == 23
    assert x_train.tolist() == ours.x_train.to_lists() and max(max(row) for row in x_train) < 20
    assert len(x_test) == len(y_test) == 19
    (x, y), (xt, yt) = nnctl.datasets.mnist.load_data()
    assert x.shape == (6, 28, 28) and x.dtype == np.uint8 and xt.shape == (3, 28, 28)
    (hx, hy), _ = nnctl.datasets.boston_housing.load_data(test_split=0.2, seed=113)
    assert hx.shape[1] == 13 and len(hx) == len(hy)
    assert nnctl.datasets.imdb.get_word_index() == builtin.word_index("imdb")


def test_load_run_predicts_raw_inputs_as_the_command_line(tmp_path):
    write_npz(tmp_path / "tiny.npz")
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_CONFIG.replace("  validation: {split: 0.2}\n",
                                          "  validation: {split: 0.2}\n  transforms: [standardize]\n"))
    assert invoke("train", config, "--runs-dir", tmp_path / "runs").exit_code == 0
    run = next((tmp_path / "runs").glob("tiny*"))
    x = np.random.default_rng(1).normal(3.0, 2.0, (7, 10)).astype(np.float32)  # raw: not standardized
    np.save(tmp_path / "x.npy", x)
    assert invoke("predict", run, "--input", tmp_path / "x.npy", "--output", tmp_path / "cli.npy").exit_code == 0
    trained = nnctl.load_run(run)
    np.testing.assert_array_equal(trained.predict(x), np.load(tmp_path / "cli.npy"))
    assert not np.array_equal(trained.predict(x), trained.model.predict(x))  # the run's standardization applied
    assert set(trained.evaluate("test")) >= {"loss", "accuracy", "samples"}
    assert trained.config.name == "tiny" and str(run) in repr(trained)
