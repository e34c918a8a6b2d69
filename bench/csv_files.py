"""Before/after counts for issue 15's CSV part: reordered and renamed predict columns, located CSV errors, and
CSV files as people have them.  PYTHONPATH=<checkout> python bench/csv_files.py
"""
import itertools
import sys
import tempfile
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from nnctl.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.data.sklearn_like
from tests.data import sklearn_like  # noqa: E402

tmp = Path(tempfile.mkdtemp())
run_cli = lambda *a: CliRunner().invoke(main, [str(v) for v in a])

# A. predict with the feature columns in every order (header kept), and with the target column left in
rng = np.random.default_rng(0)
x = rng.normal(size=(40, 4)).round(3)
names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
y = np.digitize(x[:, 0], [-0.4, 0.4])
(tmp / "iris.csv").write_text("\n".join([",".join(names + ["species"])]
                                       + [",".join([*map(str, r), str(label)]) for r, label in zip(x, y)]))
(tmp / "c.yaml").write_text("name: iris\nseed: 1\ndata:\n  dataset: {type: csv, path: iris.csv, target: species}\n"
                            "model:\n  input_shape: [4]\n  layers: [{type: dense, units: 3, activation: softmax}]\n"
                            "loss: sparse_categorical_crossentropy\nepochs: 2\nbatch_size: 8\n")
out = run_cli("train", tmp / "c.yaml", "--runs-dir", tmp / "runs")
assert out.exit_code == 0, out.output
run = sorted((tmp / "runs" / "iris").glob("2*"))[-1]
def predict(order, with_target=False):
    cols = list(order) + (["species"] if with_target else [])
    data = np.column_stack([x[:, names.index(c)] if c in names else y for c in cols])
    path = tmp / "in.csv"
    path.write_text("\n".join([",".join(cols)] + [",".join(map(str, r)) for r in data]))
    r = run_cli("predict", run, "--input", path, "--output", tmp / "o.npy")
    return (np.load(tmp / "o.npy") if r.exit_code == 0 else None), r
ref, _ = predict(names)
counts = {"same": 0, "silently different": 0, "refused": 0, "traceback": 0}
for order in itertools.permutations(names):
    for with_target in (False, True):
        got, r = predict(order, with_target)
        if r.exception is not None and not isinstance(r.exception, SystemExit):
            counts["traceback"] += 1
        elif got is None:
            counts["refused"] += 1
        elif np.allclose(got, ref):
            counts["same"] += 1
        else:
            counts["silently different"] += 1
print("A. 24 column orders x (target column absent|present) = 48 predicts:", counts)

# B. bad training CSVs: does the one-line message name the line, the column and show the value?
deep = tmp / ("d" * 60) / ("e" * 60)
deep.mkdir(parents=True)
cases = [("a,b,y\n1,2,0\n3,{v},1\n", v, "b", 3) for v in ["", "NA", "nan", "oops", "inf", "1e999", "x" * 300]]
cases += [("a," + "b" * 120 + ",y\n1,2,0\n3,{v},1\n", v, "b" * 20, 3) for v in ["NA", "oops"]]
cases += [("a,b,y\n1,2,0\n3,4,{v}\n", v, "y", 3) for v in ["", "NA", "-inf"]]
complete = 0
for text, value, column, line in cases:
    for folder in (tmp, deep):
        (folder / "t.csv").write_text(text.format(v=value))
        (folder / "b.yaml").write_text("data:\n  dataset: {type: csv, path: t.csv, target: y}\nmodel:\n  layers: "
                                       "[{type: dense, units: 1}]\nloss: mse\n")
        r = run_cli("check", folder / "b.yaml")
        msg = r.output
        ok = f"t.csv:{line}" in msg and column[:20] in msg and repr(value[:5])[:-1] in msg and r.exit_code == 2
        complete += ok
print(f"B. {2 * len(cases)} bad CSV cells (short and long paths): message names line + column + value in "
      f"{complete}")

# C. CSV files as people have them: accepted by `nnctl check`?
files = {"iris (text species)": (sklearn_like.iris, "target: species"),
         "sklearn iris.csv (target by index)": (sklearn_like.sklearn_iris, "target: 4"),
         "wine (class_0..2)": (sklearn_like.wine, "target: target"),
         "breast cancer (names with spaces)": (sklearn_like.breast_cancer, "target: target"),
         "diabetes without header": (lambda p: sklearn_like.diabetes(p, header=False), "target: 10, header: false"),
         "diabetes with header": (sklearn_like.diabetes, "target: target")}
accepted = []
for label, (write, options) in files.items():
    write(tmp / "t.csv")
    (tmp / "b.yaml").write_text(f"data:\n  dataset: {{type: csv, path: t.csv, {options}}}\nmodel:\n  layers: "
                                "[{type: dense, units: 1}]\nloss: mse\n")
    r = run_cli("check", tmp / "b.yaml")
    accepted.append(label) if r.exit_code == 0 else None
print(f"C. {len(accepted)} of {len(files)} look-alike CSVs accepted: {accepted}")

# D. a header with one column renamed (same width): accepted silently, or refused naming it?
named = 0
for i, name in enumerate(names):
    cols = names[:i] + ["colour"] + names[i + 1:]
    (tmp / "in.csv").write_text("\n".join([",".join(cols)] + [",".join(map(str, r)) for r in x]))
    r = run_cli("predict", run, "--input", tmp / "in.csv")
    named += r.exit_code == 2 and "'colour'" in r.output and name in r.output
print(f"D. 4 headers with a renamed column: refused naming both columns in {named} (accepted silently in "
      f"{4 - named})")
