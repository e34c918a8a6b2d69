"""CSV datasets as people have them, through `load_config` → `load_data`: scikit-learn look-alikes, a target by
name or index, no header, text class labels, missing cells, and errors that name file, line, column and value."""

import re

import numpy as np
import pytest

from nnctl.config import load_config
from nnctl.config.yamlfile import ConfigError
from nnctl.data.csv_table import split_table
from nnctl.data.files import load_data
from nnctl.errors import NnctlError
from tests.data import sklearn_like

CONFIG = ("data:\n  dataset: {{type: csv, path: t.csv, {options}}}\n{more}"
          "model:\n  layers: [{{type: dense, units: 1}}]\nloss: mse\n")


def load(folder, options: str, more: str = ""):
    (folder / "c.yaml").write_text(CONFIG.format(options=options, more=more), encoding="utf-8")
    return load_data(load_config(folder / "c.yaml"))


def config_error(folder, options: str, more: str = "") -> str:
    with pytest.raises(ConfigError) as err:
        load(folder, options, more)
    assert len(str(err.value).splitlines()) == 1
    return str(err.value)


def test_iris_species_by_name_become_sorted_class_ids(tmp_path):
    sklearn_like.iris(tmp_path / "t.csv")
    splits = load(tmp_path, "target: species")
    text = (tmp_path / "t.csv").read_text().splitlines()[1:]
    species = [line.split(",")[-1] for line in text]
    classes = ["setosa", "versicolor", "virginica"]
    np.testing.assert_array_equal(splits.train[1], [classes.index(s) for s in species])
    np.testing.assert_allclose(splits.train[0], [[float(v) for v in line.split(",")[:4]] for line in text], rtol=1e-6)
    assert splits.csv == {"header": True, "columns": sklearn_like.IRIS, "features": sklearn_like.IRIS[:4],
                          "target": "species", "classes": classes}


def test_wine_class_names_and_a_test_file_share_the_training_ids(tmp_path):
    sklearn_like.wine(tmp_path / "t.csv")
    lines = (tmp_path / "t.csv").read_text().splitlines()
    # the test file holds only class_2 rows, in another column order: ids still come from the training file
    (tmp_path / "test.csv").write_text("\n".join([lines[0]] + [l for l in lines[1:] if l.endswith("class_2")]))
    splits = load(tmp_path, "target: target, test_path: test.csv")
    assert splits.csv["classes"] == ["class_0", "class_1", "class_2"]
    assert set(splits.test[1]) == {2.0} and splits.train[0].shape == (30, 13)
    (tmp_path / "test.csv").write_text(lines[0] + "\n" + lines[1].rsplit(",", 1)[0] + ",class_9\n")
    message = config_error(tmp_path, "target: target, test_path: test.csv")
    assert "test.csv:2: column 'target' holds a class the training file does not have, got 'class_9' (classes: " \
           "class_0, class_1, class_2)" in message


def test_scikit_learns_own_iris_file_by_target_index(tmp_path):
    sklearn_like.sklearn_iris(tmp_path / "t.csv")  # header "30,4,setosa,versicolor,virginica"
    splits = load(tmp_path, "target: 4")
    assert splits.train[0].shape == (30, 4) and set(splits.train[1]) <= {0.0, 1.0, 2.0}
    assert splits.csv["target"] == "virginica" and splits.csv["classes"] is None
    assert "data.dataset.target: t.csv: target 5 is out of range: the file has 5 columns (0 to 4)" in \
        config_error(tmp_path, "target: 5")
    splits = load(tmp_path, "target: 4, features: [3, 0]")
    assert splits.csv["features"] == ["versicolor", "30"]
    assert "data.dataset.features: t.csv: column 'virginica' is the target; it cannot also be a feature" in \
        config_error(tmp_path, "target: 4, features: [0, virginica]")


def test_breast_cancer_names_with_spaces(tmp_path):
    sklearn_like.breast_cancer(tmp_path / "t.csv")
    splits = load(tmp_path, "target: target, features: [mean radius, worst concave points]")
    assert splits.train[0].shape == (30, 2) and splits.csv["features"] == ["mean radius", "worst concave points"]
    assert set(splits.train[1]) == {0.0, 1.0} and splits.csv["classes"] is None


def test_diabetes_without_a_header(tmp_path):
    sklearn_like.diabetes(tmp_path / "t.csv", header=False)
    splits = load(tmp_path, "target: 10, header: false")
    assert splits.train[0].shape == (30, 10) and len(splits.train[1]) == 30
    assert splits.csv["columns"] == [f"column{i}" for i in range(11)] and splits.csv["target"] == "column10"
    assert load(tmp_path, "target: column10, header: false").csv == splits.csv
    message = config_error(tmp_path, "target: target, header: false")
    assert "data.dataset.target: t.csv has no column 'target' (columns: column0, column1" in message
    # with its header, the first row is not data
    sklearn_like.diabetes(tmp_path / "t.csv", header=True)
    assert load(tmp_path, "target: target").train[0].shape == (30, 10)


@pytest.mark.parametrize("cell", ["", "NA", "nan", "NaN", "N/A", "null", "?"])
def test_a_missing_value_names_file_line_column_and_value(tmp_path, cell):
    (tmp_path / "t.csv").write_text(f"a,b,y\n1,2,0\n\n3,{cell},1\n", encoding="utf-8")
    message = config_error(tmp_path, "target: y")
    assert f"t.csv:4: column 'b' is missing a value, got {cell!r}; fill it in or add an `impute` transform" in message


def test_a_missing_target_is_an_error_even_when_imputing(tmp_path):
    (tmp_path / "t.csv").write_text("a,y\n1,0\n2,NA\n", encoding="utf-8")
    message = config_error(tmp_path, "target: y", "  transforms: [impute]\n")
    assert "t.csv:3: column 'y' (the target) is missing a value, got 'NA'" in message


def test_errors_keep_line_column_and_value_whatever_the_path_length(tmp_path):
    folder = tmp_path / ("deep" * 40)
    folder.mkdir()
    (folder / "t.csv").write_text(f"a,{'b' * 300},y\n1,2,0\n3,{'x' * 500},1\n", encoding="utf-8")
    message = config_error(folder, "target: y")
    assert re.search(r"data.dataset.path: t.csv:3: column 'b+…b+' must be a number, got 'x+…' \(500 characters\)$",
                     message), message
    assert len(message) < 300 + len(str(folder))


def test_split_table_guesses_a_header_only_from_text(tmp_path):
    assert split_table(tmp_path / "x.csv", "1,2\n3,4\n", header=None).has_header is False
    assert split_table(tmp_path / "x.csv", "NA,2\n3,4\n", header=None).has_header is False
    table = split_table(tmp_path / "x.csv", "a,b\n3,4\n", header=None)
    assert table.has_header and table.names == ["a", "b"] and table.lines == [2]
    with pytest.raises(NnctlError, match=r"x.csv:1: the header names column 'a' twice"):
        split_table(tmp_path / "x.csv", "a,a\n3,4\n")


def test_impute_mean_median_constant_fitted_on_the_training_rows_only(tmp_path):
    # rows 1-4 train, rows 5-6 validation (holdout is the first N rows: 2 here, so rows 1-2 validate)
    (tmp_path / "t.csv").write_text("a,b,y\n100,NA,0\n,1,1\n1,2,0\nnan,4,1\n3,,0\n", encoding="utf-8")
    for strategy, a_fill, b_fill in (("mean", 2.0, 3.0), ("median", 2.0, 3.0), ("constant", -1.0, -1.0)):
        extra = ", fill_value: -1" if strategy == "constant" else ""
        splits = load(tmp_path, "target: y", f"  transforms: [{{type: impute, strategy: {strategy}{extra}}}]\n"
                                             f"  validation: {{holdout: 2}}\n")
        # training rows 3-5: a = 1, nan, 3 and b = 2, 4, nan; the validation rows' 100 is not in the mean
        np.testing.assert_allclose(splits.train[0], [[1, 2], [a_fill, 4], [3, b_fill]])
        np.testing.assert_allclose(splits.validation[0], [[100, b_fill], [a_fill, 1]])
        assert splits.transforms[0].state()["values"] == [a_fill, b_fill]
    (tmp_path / "t.csv").write_text("a,b,y\n1,1,0\n2,8,1\n3,NA,0\n", encoding="utf-8")
    splits = load(tmp_path, "target: y", "  transforms: [{type: impute, strategy: median}]\n")
    np.testing.assert_allclose(splits.train[0][:, 1], [1, 8, 4.5])


def test_impute_must_come_before_what_computes_with_the_values(tmp_path):
    (tmp_path / "t.csv").write_text("a,y\n1,0\nNA,1\n", encoding="utf-8")
    message = config_error(tmp_path, "target: y", "  transforms: [standardize, impute]\n")
    assert "data.transforms: transforms[0] (standardize) would see missing values: put `impute` first" in message
    (tmp_path / "t.csv").write_text("a,y\n1,0\nNA,1\n3,0\n", encoding="utf-8")
    splits = load(tmp_path, "target: y", "  transforms: [impute, standardize]\n")
    np.testing.assert_allclose(splits.train[0][:, 0], [-1.5 ** 0.5, 0, 1.5 ** 0.5], rtol=1e-6)


@pytest.mark.parametrize("spec, message", [
    ("{type: impute, strategy: constant}", "give `fill_value` with `strategy: constant`, and only then"),
    ("{type: impute, fill_value: 0}", "give `fill_value` with `strategy: constant`, and only then"),
    ("{type: impute, strategy: mode}", "strategy"),
])
def test_impute_options_are_checked(tmp_path, spec, message):
    (tmp_path / "t.csv").write_text("a,y\n1,0\n2,1\n", encoding="utf-8")
    assert message in config_error(tmp_path, "target: y", f"  transforms: [{spec}]\n")


def test_impute_of_a_column_with_no_training_value(tmp_path):
    (tmp_path / "t.csv").write_text("a,b,y\n1,NA,0\n2,,1\n", encoding="utf-8")
    message = config_error(tmp_path, "target: y", "  transforms: [impute]\n")
    assert "impute: column 1 has no values in the training split to take the mean of; use `strategy: constant`" \
        in message


def test_a_validation_csv_uses_the_training_class_ids(tmp_path):
    sklearn_like.iris(tmp_path / "t.csv")
    lines = (tmp_path / "t.csv").read_text().splitlines()
    (tmp_path / "val.csv").write_text("\n".join([lines[0]] + [l for l in lines if l.endswith("virginica")]))
    splits = load(tmp_path, "target: species", "  validation: {path: val.csv}\n")
    assert set(splits.validation[1]) == {2.0}
    (tmp_path / "val.csv").write_text(lines[0] + "\n" + lines[1].rsplit(",", 1)[0] + ",Setosa\n")
    message = config_error(tmp_path, "target: species", "  validation: {path: val.csv}\n")
    assert "data.validation.path: val.csv:2: column 'species' holds a class the training file does not have, got " \
           "'Setosa'" in message


def test_quoted_cells_as_pandas_and_spreadsheets_write_them(tmp_path):
    (tmp_path / "t.csv").write_text('"sepal length (cm)","width, in cm",species\n"5.1",3.5,"Iris setosa"\n'
                                    '4.9,"3.0","Iris virginica"\n', encoding="utf-8")
    splits = load(tmp_path, "target: species")
    assert splits.csv["features"] == ["sepal length (cm)", "width, in cm"]
    assert splits.csv["classes"] == ["Iris setosa", "Iris virginica"]
    np.testing.assert_allclose(splits.train[0], [[5.1, 3.5], [4.9, 3.0]], rtol=1e-6)


def test_rows_the_csv_reader_refuses_are_located(tmp_path):
    (tmp_path / "t.csv").write_text(f"a,b,y\n1,2,0\n1,{'x' * 200_000},0\n", encoding="utf-8")
    assert "t.csv:3: not a CSV row (field larger than field limit" in config_error(tmp_path, "target: y")
    (tmp_path / "t.csv").write_text("a,b,y\n1,2,0\n1,\0,0\n", encoding="utf-8")  # csv refuses NUL before 3.11
    assert "t.csv:3: " in config_error(tmp_path, "target: y")
