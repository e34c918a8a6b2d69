"""User data files through `load_config` → `load_data`: .npz/.npy/.csv sources, validation splits, and transforms
fitted on the training part only (checked against NumPy)."""

import numpy as np
import pytest

from nnctl.config import load_config
from nnctl.config.yamlfile import ConfigError
from nnctl.data.files import load_data

CONFIG = """\
seed: {seed}
data:
{data}
model:
  layers: [{{type: dense, units: 1}}]
loss: mse
"""


def write_config(folder, data: str, seed: int = 7, name: str = "c.yaml"):
    """A config whose `data:` section is `data` (YAML lines, indented by two spaces)."""
    path = folder / name
    path.write_text(CONFIG.format(seed=seed, data=data), encoding="utf-8")
    return path


def load(folder, data: str, **options):
    return load_data(load_config(write_config(folder, data, **options)))


def write_ids_npz(path, rows=23, features=3, seed=0):
    """y = the row number, so every split says which rows it holds; x rows are random with unequal scales."""
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(rows, features)) * np.arange(1, features + 1) + 10).astype(np.float32)
    np.savez(path, x_train=x, y_train=np.arange(rows, dtype=np.float32))
    return x


def config_error(folder, data: str) -> str:
    with pytest.raises(ConfigError) as err:
        load(folder, data)
    return str(err.value)


# ---- .npz and .npy ---------------------------------------------------------------------------------------
def test_npz_by_path_reads_the_keras_keys_relative_to_the_config(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.normal(size=(30, 4)), "y_train": rng.integers(0, 2, 30), "x_test": rng.normal(size=(6, 4)),
              "y_test": rng.integers(0, 2, 6)}
    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "d.npz", **arrays)
    monkeypatch.chdir(tmp_path / "data")  # relative paths are read from the config's folder, not the cwd
    (tmp_path / "configs").mkdir()
    splits = load_data(load_config(write_config(tmp_path / "configs", "  path: ../data/d.npz")))
    np.testing.assert_array_equal(splits.train[0], arrays["x_train"])
    np.testing.assert_array_equal(splits.train[1], arrays["y_train"])
    np.testing.assert_array_equal(splits.test[0], arrays["x_test"])
    np.testing.assert_array_equal(splits.test[1], arrays["y_test"])
    assert splits.validation is None and splits.transforms == []
    assert [p.resolve() for p in splits.files] == [(tmp_path / "data" / "d.npz").resolve()]


def test_npz_dataset_with_custom_keys(tmp_path):
    rng = np.random.default_rng(1)
    arrays = {"feats": rng.normal(size=(12, 2)), "target": rng.normal(size=12), "feats_te": rng.normal(size=(3, 2)),
              "target_te": rng.normal(size=3), "x_train": np.zeros((1, 1)), "unused": np.arange(4)}
    np.savez(tmp_path / "custom.npz", **arrays)
    splits = load(tmp_path, "  dataset: {type: npz, path: custom.npz, x: feats, y: target, x_test: feats_te, "
                            "y_test: target_te}")
    np.testing.assert_array_equal(splits.train[0], arrays["feats"])
    np.testing.assert_array_equal(splits.train[1], arrays["target"])
    np.testing.assert_array_equal(splits.test[0], arrays["feats_te"])
    np.testing.assert_array_equal(splits.test[1], arrays["target_te"])
    # without a test array there is no test split
    np.savez(tmp_path / "no_test.npz", feats=arrays["feats"], target=arrays["target"])
    assert load(tmp_path, "  dataset: {type: npz, path: no_test.npz, x: feats, y: target}").test is None


def test_npz_without_the_named_arrays_lists_what_it_has(tmp_path):
    np.savez(tmp_path / "d.npz", a=np.zeros((3, 2)), b=np.zeros(3))
    message = config_error(tmp_path, "  dataset: {type: npz, path: d.npz, x: feats, y: b}")
    assert f"{tmp_path / 'c.yaml'}:3:" in message and "data.dataset.path" in message
    assert "d.npz has no feats array (it has: a, b)" in message


def test_npz_with_pickled_objects_is_refused(tmp_path):
    x = np.empty(2, dtype=object)
    x[0], x[1] = [1, 2], [3]
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.zeros(2))
    assert "pickled Python objects" in config_error(tmp_path, "  path: d.npz")


def test_npy_files_one_per_array(tmp_path):
    rng = np.random.default_rng(2)
    x, y, x_test, y_test = rng.normal(size=(9, 3)), rng.normal(size=9), rng.normal(size=(2, 3)), rng.normal(size=2)
    for name, array in (("x", x), ("y", y), ("xt", x_test), ("yt", y_test)):
        np.save(tmp_path / f"{name}.npy", array)
    splits = load(tmp_path, "  dataset: {type: npy, x: x.npy, y: y.npy, x_test: xt.npy, y_test: yt.npy}")
    np.testing.assert_array_equal(splits.train[0], x)
    np.testing.assert_array_equal(splits.test[1], y_test)
    np.save(tmp_path / "short.npy", y[:5])
    assert "x has 9 rows but y has 5" in config_error(tmp_path, "  dataset: {type: npy, x: x.npy, y: short.npy}")


# ---- .csv ----------------------------------------------------------------------------------------------------
TABLE = [[1.5, 2.0, 0.0, -3.0], [4.0, 5.25, 1.0, 6.0], [7.0, 8.0, 1.0, 9.5], [0.0, -1.0, 0.0, 2.0]]


def write_csv(path, rows, header=("a", "b", "label", "c"), delimiter=","):
    lines = [delimiter.join(header)] + [delimiter.join(f"{v:g}" for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_csv_target_and_default_features(tmp_path):
    write_csv(tmp_path / "t.csv", TABLE)
    splits = load(tmp_path, "  dataset: {type: csv, path: t.csv, target: label}")
    table = np.array(TABLE, np.float32)
    assert splits.train[0].dtype == np.float32 and splits.train[1].dtype == np.float32
    np.testing.assert_array_equal(splits.train[0], table[:, [0, 1, 3]])  # every other column, in file order
    np.testing.assert_array_equal(splits.train[1], table[:, 2])
    assert splits.test is None and splits.files == [tmp_path / "t.csv"]


def test_csv_with_tabs_and_a_delimiter_that_is_not_one_character(tmp_path):
    write_csv(tmp_path / "t.csv", TABLE, delimiter="\t")
    splits = load(tmp_path, '  dataset: {type: csv, path: t.csv, target: label, delimiter: "\\t"}')
    np.testing.assert_array_equal(splits.train[1], np.asarray(TABLE, np.float32)[:, 2])
    message = config_error(tmp_path, "  dataset: {type: csv, path: t.csv, target: label, delimiter: ';;'}")
    assert "c.yaml:3:63: data.dataset.delimiter: expected one character other than a newline" in message


def test_csv_features_subset_delimiter_and_test_file(tmp_path):
    write_csv(tmp_path / "t.csv", TABLE, delimiter=";")
    write_csv(tmp_path / "test.csv", TABLE[:2], delimiter=";")
    splits = load(tmp_path, "  dataset: {type: csv, path: t.csv, target: c, features: [label, a], delimiter: ';', "
                            "test_path: test.csv}")
    table = np.array(TABLE, np.float32)
    np.testing.assert_array_equal(splits.train[0], table[:, [2, 0]])  # in the order `features` names them
    np.testing.assert_array_equal(splits.train[1], table[:, 3])
    np.testing.assert_array_equal(splits.test[0], table[:2, [2, 0]])
    np.testing.assert_array_equal(splits.test[1], table[:2, 3])
    assert splits.files == [tmp_path / "t.csv", tmp_path / "test.csv"]


def test_csv_header_names_are_stripped(tmp_path):
    (tmp_path / "t.csv").write_text(" a , y\n1,2\n3,4\n", encoding="utf-8")
    splits = load(tmp_path, "  dataset: {type: csv, path: t.csv, target: y}")
    assert splits.train[0].tolist() == [[1.0], [3.0]] and splits.train[1].tolist() == [2.0, 4.0]


def test_csv_non_numeric_cell_names_file_and_line(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("a,b,y\n1,2,0\n3,4,1\n5,oops,0\n", encoding="utf-8")
    message = config_error(tmp_path, "  dataset: {type: csv, path: t.csv, target: y}")
    assert "data.dataset.path: t.csv:4: column 'b' must be a number, got 'oops'" in message
    assert message.startswith(f"{tmp_path / 'c.yaml'}:3:") and "data.dataset.path" in message


def test_csv_error_line_counts_blank_lines(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("a,b,y\n1,2,0\n\n3,4,1\n5,oops,0\n", encoding="utf-8")  # the bad row is line 5
    message = config_error(tmp_path, "  dataset: {type: csv, path: t.csv, target: y}")
    assert "t.csv:5: column 'b' must be a number" in message


def test_csv_row_with_a_missing_value(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("a,b,y\n1,2,0\n3,4\n", encoding="utf-8")
    assert "t.csv:3: expected 3 values, got 2" in config_error(tmp_path, "  dataset: {type: csv, path: t.csv, "
                                                                          "target: y}")


@pytest.mark.parametrize("spec, key, missing", [
    ("target: price", "target", "price"),
    ("target: label, features: [a, zz]", "features", "zz"),
])
def test_csv_missing_column_lists_the_columns(tmp_path, spec, key, missing):
    write_csv(tmp_path / "t.csv", TABLE)
    message = config_error(tmp_path, f"  dataset: {{type: csv, path: t.csv, {spec}}}")
    assert f"data.dataset.{key}: t.csv has no column '{missing}' (columns: a, b, label, c)" in message
    assert message.startswith(f"{tmp_path / 'c.yaml'}:3:")


def test_csv_columns_left_out_of_features_may_hold_text(tmp_path):
    (tmp_path / "t.csv").write_text("city,a,y\nBoston,1,2\nParis,3,4\n", encoding="utf-8")
    splits = load(tmp_path, "  dataset: {type: csv, path: t.csv, target: y, features: [a]}")
    assert splits.train[0].tolist() == [[1.0], [3.0]]


def test_csv_with_a_byte_order_mark(tmp_path):
    (tmp_path / "t.csv").write_bytes("y,a\n1,2\n3,4\n".encode("utf-8-sig"))
    splits = load(tmp_path, "  dataset: {type: csv, path: t.csv, target: y}")
    assert splits.train[1].tolist() == [1.0, 3.0]


# ---- validation -----------------------------------------------------------------------------------------------
def ids(part):
    return part[1].astype(int).tolist()


def test_holdout_takes_the_first_rows(tmp_path):
    x = write_ids_npz(tmp_path / "d.npz", rows=23)
    splits = load(tmp_path, "  path: d.npz\n  validation: {holdout: 5}")
    assert ids(splits.validation) == list(range(5)) and ids(splits.train) == list(range(5, 23))
    np.testing.assert_array_equal(splits.validation[0], x[:5])
    np.testing.assert_array_equal(splits.train[0], x[5:])


@pytest.mark.parametrize("seed", [0, 7, 12345])
def test_split_is_shuffled_by_the_config_seed(tmp_path, seed):
    x = write_ids_npz(tmp_path / "d.npz", rows=50)
    data = "  path: d.npz\n  validation: {split: 0.2}"
    splits = load(tmp_path, data, seed=seed)
    order = np.random.default_rng(seed).permutation(50)
    held, kept = np.sort(order[:10]), np.sort(order[10:])
    assert ids(splits.validation) == held.tolist() and ids(splits.train) == kept.tolist()
    np.testing.assert_array_equal(splits.validation[0], x[held])
    np.testing.assert_array_equal(splits.train[0], x[kept])
    assert ids(splits.validation) != list(range(10)) and ids(splits.validation) != list(range(40, 50))
    again = load(tmp_path, data, seed=seed, name="again.yaml")
    assert ids(again.validation) == ids(splits.validation)


def test_split_sizes_partition_and_other_seeds(tmp_path):
    write_ids_npz(tmp_path / "d.npz", rows=23)
    held = {}
    for seed in (1, 2):
        splits = load(tmp_path, "  path: d.npz\n  validation: {split: 0.3}", seed=seed)
        assert len(splits.validation[1]) == 7 and len(splits.train[1]) == 16  # 23 · 0.3 = 6.9
        assert not set(ids(splits.validation)) & set(ids(splits.train))
        assert sorted(ids(splits.validation) + ids(splits.train)) == list(range(23))
        held[seed] = ids(splits.validation)
    assert held[1] != held[2]


@pytest.mark.parametrize("rows, fraction", [(23, 0.3), (50, 0.2), (25000, 0.2), (7, 0.5)])
def test_an_unshuffled_split_holds_out_the_last_rows_as_keras_validation_split(tmp_path, rows, fraction):
    write_ids_npz(tmp_path / "d.npz", rows=rows)
    splits = load(tmp_path, f"  path: d.npz\n  validation: {{split: {fraction}, shuffle: false}}", seed=5)
    split_at = int(rows * (1 - fraction))  # keras: x[:split_at] trains, x[split_at:] validates
    assert ids(splits.train) == list(range(split_at)) and ids(splits.validation) == list(range(split_at, rows))


def test_shuffle_goes_only_with_split(tmp_path):
    write_ids_npz(tmp_path / "d.npz", rows=20)
    message = config_error(tmp_path, "  path: d.npz\n  validation: {holdout: 5, shuffle: false}")
    assert "`shuffle` goes with `split`" in message


@pytest.mark.parametrize("rows, folds", [(23, 4), (20, 4), (9, 3), (11, 2)])
def test_kfold_folds_are_contiguous_parts_and_partition_the_data(tmp_path, rows, folds):
    x = write_ids_npz(tmp_path / "d.npz", rows=rows)
    resolved = load_config(write_config(tmp_path, f"  path: d.npz\n  validation: {{kfold: {folds}}}"))
    size, validated = rows // folds, []
    for fold in range(folds):
        splits = load_data(resolved, fold=fold, folds=folds)
        part = list(range(fold * size, (fold + 1) * size))
        assert ids(splits.validation) == part
        assert ids(splits.train) == [i for i in range(rows) if i not in part]  # the remainder always trains
        np.testing.assert_array_equal(splits.validation[0], x[part])
        validated += part
    assert validated == list(range(folds * size))
    # without a fold (what `check` and the run's preprocessing.json see): everything trains, nothing validates
    whole = load_data(resolved)
    assert whole.validation is None and ids(whole.train) == list(range(rows))


def test_kfold_count_can_come_from_the_caller(tmp_path):
    write_ids_npz(tmp_path / "d.npz", rows=12)
    resolved = load_config(write_config(tmp_path, "  path: d.npz\n  validation: {split: 0.5}"))
    assert [ids(load_data(resolved, fold=k, folds=3).validation) for k in range(3)] == [[0, 1, 2, 3], [4, 5, 6, 7],
                                                                                       [8, 9, 10, 11]]


@pytest.mark.parametrize("choice, key", [("holdout: 23", "holdout"), ("holdout: 100", "holdout"),
                                         ("split: 0.01", "split"), ("kfold: 30", "kfold")])
def test_validation_that_leaves_a_part_empty_is_a_located_error(tmp_path, choice, key):
    write_ids_npz(tmp_path / "d.npz", rows=23)
    resolved = load_config(write_config(tmp_path, f"  path: d.npz\n  validation: {{{choice}}}"))
    with pytest.raises(ConfigError) as err:
        load_data(resolved, **({"fold": 0} if key == "kfold" else {}))
    (issue,) = err.value.issues
    assert issue.path == ("data", "validation", key) and issue.source.line == 4
    assert str(issue).startswith(f"{tmp_path / 'c.yaml'}:4:") and "of the 23 training rows" in str(issue)


def test_a_separate_validation_file(tmp_path):
    x = write_ids_npz(tmp_path / "d.npz", rows=10)
    x_val = np.full((3, 3), 5.0, np.float32)
    np.savez(tmp_path / "val.npz", x_val=x_val, y_val=np.array([100.0, 101.0, 102.0]))
    splits = load(tmp_path, "  path: d.npz\n  validation: {path: val.npz}\n  transforms: [standardize]")
    assert ids(splits.train) == list(range(10)) and ids(splits.validation) == [100, 101, 102]
    mean, std = x.astype(np.float64).mean(0), x.astype(np.float64).std(0)
    np.testing.assert_allclose(splits.validation[0], (x_val - mean) / std, rtol=1e-5)
    assert splits.files[-1] == tmp_path / "val.npz"


# ---- transforms are fitted after the split, on the training part only -------------------------------------------
def assert_standardized_with(splits, x_train_raw, x_val_raw):
    mean, std = x_train_raw.astype(np.float64).mean(axis=0), x_train_raw.astype(np.float64).std(axis=0)
    (transform,) = splits.transforms
    np.testing.assert_allclose(transform.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(transform.std, std, rtol=1e-12)
    np.testing.assert_allclose(splits.train[0], (x_train_raw - mean) / std, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(splits.validation[0], (x_val_raw - mean) / std, rtol=1e-5, atol=1e-6)


def test_standardize_is_fitted_on_the_training_rows_of_a_split(tmp_path):
    x = write_ids_npz(tmp_path / "d.npz", rows=40)
    x[:8] += 1000  # rows that, if they leaked into the statistics, would move them a lot
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.arange(40, dtype=np.float32))
    holdout = load(tmp_path, "  path: d.npz\n  validation: {holdout: 8}\n  transforms: [standardize]")
    assert_standardized_with(holdout, x[8:], x[:8])
    split = load(tmp_path, "  path: d.npz\n  validation: {split: 0.25}\n  transforms: [standardize]", seed=3)
    assert_standardized_with(split, x[ids(split.train)], x[ids(split.validation)])


def test_standardize_is_fitted_on_each_folds_training_part(tmp_path):
    x = write_ids_npz(tmp_path / "d.npz", rows=22)
    resolved = load_config(write_config(tmp_path, "  path: d.npz\n  validation: {kfold: 3}\n"
                                                  "  transforms: [standardize]"))
    means = []
    for fold in range(3):
        splits = load_data(resolved, fold=fold)
        part = list(range(fold * 7, fold * 7 + 7))
        kept = [i for i in range(22) if i not in part]
        assert ids(splits.train) == kept
        assert_standardized_with(splits, x[kept], x[part])
        means.append(splits.transforms[0].mean)
    assert means[0] != means[1] != means[2]


def test_test_split_gets_the_training_statistics(tmp_path):
    rng = np.random.default_rng(5)
    x, x_test = rng.normal(2, 3, size=(30, 2)), rng.normal(-50, 10, size=(6, 2))
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.zeros(30), x_test=x_test, y_test=np.zeros(6))
    splits = load(tmp_path, "  path: d.npz\n  validation: {holdout: 10}\n  transforms: [standardize]")
    mean, std = x[10:].mean(0), x[10:].std(0)
    np.testing.assert_allclose(splits.test[0], (x_test - mean) / std, rtol=1e-5)


def test_one_hot_classes_come_from_the_training_part(tmp_path):
    y = np.array([4, 0, 1, 2, 3, 0, 1, 2, 3, 0], np.float32)  # class 4 only in the held-out first row
    np.savez(tmp_path / "d.npz", x_train=np.zeros((10, 2)), y_train=y)
    message = config_error(tmp_path, "  path: d.npz\n  validation: {holdout: 1}\n  transforms: [one_hot]")
    assert "data.transforms: one_hot: labels must be integers in [0, 3], got values in [4.0, 4.0]" in message
    np.savez(tmp_path / "d.npz", x_train=np.zeros((10, 2)), y_train=y[::-1])  # class 4 now trains
    splits = load(tmp_path, "  path: d.npz\n  validation: {holdout: 2}\n  transforms: [one_hot]")
    assert splits.transforms[0].classes == 5
    np.testing.assert_array_equal(splits.train[1], np.eye(5, dtype=np.float32)[y[::-1][2:].astype(int)])
    np.testing.assert_array_equal(splits.validation[1], np.eye(5, dtype=np.float32)[[0, 3]])
