"""Small look-alikes of scikit-learn's CSV files (their real headers, a few generated rows), without scikit-learn.

Each writer returns the path; rows are learnable (the label follows the first feature) and seeded.
"""

from __future__ import annotations

import numpy as np

IRIS = ["sepal_length", "sepal_width", "petal_length", "petal_width", "species"]
WINE = ["alcohol", "malic_acid", "ash", "alcalinity_of_ash", "magnesium", "total_phenols", "flavanoids",
        "nonflavanoid_phenols", "proanthocyanins", "color_intensity", "hue", "od280/od315_of_diluted_wines",
        "proline", "target"]
_CANCER_MEASURES = ("radius", "texture", "perimeter", "area", "smoothness", "compactness", "concavity",
                    "concave points", "symmetry", "fractal dimension")
BREAST_CANCER = ([f"mean {m}" for m in _CANCER_MEASURES] + [f"{m} error" for m in _CANCER_MEASURES]
                 + [f"worst {m}" for m in _CANCER_MEASURES] + ["target"])
DIABETES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6", "target"]


def _rows(rows: int, features: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, features)).round(3)


def _write(path, header, x, labels, delimiter=","):
    lines = [] if header is None else [delimiter.join(header)]
    lines += [delimiter.join([*(f"{v:g}" for v in row), str(label)]) for row, label in zip(x, labels)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def iris(path, rows=30, seed=0):
    """seaborn's iris.csv: four measurements and the species by name (setosa, versicolor, virginica)."""
    x = _rows(rows, 4, seed)
    names = np.array(["setosa", "versicolor", "virginica"])
    return _write(path, IRIS, x, names[np.digitize(x[:, 0], [-0.4, 0.4])])


def sklearn_iris(path, rows=30, seed=0):
    """scikit-learn's own iris.csv: a first row "150,4,setosa,versicolor,virginica", then numbers, label last."""
    x = _rows(rows, 4, seed)
    return _write(path, [str(rows), "4", "setosa", "versicolor", "virginica"], x, np.digitize(x[:, 0], [-0.4, 0.4]))


def wine(path, rows=30, seed=1):
    """The wine frame as CSV: 13 named measurements and `target` as class_0, class_1, class_2."""
    x = _rows(rows, 13, seed)
    return _write(path, WINE, x, [f"class_{c}" for c in np.digitize(x[:, 0], [-0.4, 0.4])])


def breast_cancer(path, rows=30, seed=2):
    """The breast cancer frame as CSV: feature names with spaces ("mean radius"), `target` 0/1."""
    x = _rows(rows, len(BREAST_CANCER) - 1, seed)
    return _write(path, BREAST_CANCER, x, (x[:, 0] > 0).astype(int))


def diabetes(path, rows=30, seed=3, header=True):
    """The diabetes frame: ten named features and a numeric `target` (regression); without a header when asked,
    as scikit-learn's own diabetes_data_raw file."""
    x = _rows(rows, 10, seed)
    return _write(path, DIABETES if header else None, x, [f"{v:g}" for v in (150 + 50 * x[:, 2]).round(1)])
