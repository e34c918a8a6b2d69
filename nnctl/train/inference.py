"""Reusing a finished run: rebuild its model from config.yaml + weights.safetensors, evaluate, predict.

Inputs are read from `.npy`, `.npz` or `.csv`; nothing is ever unpickled.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnctl.config.build import build_model, check_data
from nnctl.config.resolve import ResolvedConfig, load_config
from nnctl.data.files import load_data, read_array_file
from nnctl.data.transforms import apply_all, load_transforms
from nnctl.errors import NnctlError, ShapeError
from nnctl.runs.rundir import RunDirectory


@dataclass
class LoadedRun:
    run: RunDirectory
    resolved: ResolvedConfig
    model: object
    transforms: list  # fitted on the run's training data (preprocessing.json)
    weights: str | None = None  # the weights file when not the run's final weights.safetensors


def load_run(path, weights=None) -> LoadedRun:
    """The run at `path` (a run folder, `latest`, or runs/<name>) with its trained weights loaded, or with
    `weights`: another weights file, e.g. one a `model_checkpoint` callback wrote (relative to the run).

    The data is not read: the model's input shape is in the manifest, so predict works without it.
    """
    run = RunDirectory.open(path)
    resolved = load_config(run.path / "config.yaml")
    model = build_model(resolved, input_shape=tuple(run.manifest().get("input_shape") or ()) or None,
                        callbacks=False)
    source = run.path / "weights.safetensors"
    if weights is not None:
        source = Path(weights) if Path(weights).is_file() or Path(weights).is_absolute() else run.path / weights
    tensors = RunDirectory(source.parent).load_weights(source.name)
    if any(key.startswith("weights/") for key in tensors):  # a training checkpoint (checkpoints/last.safetensors)
        tensors = {key[len("weights/"):]: value for key, value in tensors.items() if key.startswith("weights/")}
    try:
        model.set_weights(tensors)
    except ShapeError as err:
        raise NnctlError(f"{source} does not fit the run's model: {err}") from None
    transforms = load_transforms(run.read_json("preprocessing.json").get("transforms", []))
    return LoadedRun(run, resolved, model, transforms, None if weights is None else str(weights))


def evaluate_run(loaded: LoadedRun, split: str = "test") -> dict:
    """{"loss": ..., "<metric>": ..., "samples": n} on one split; also saved under `split` in metrics.json."""
    splits = load_data(loaded.resolved)
    check_data(loaded.resolved, loaded.model, splits)
    x, y = splits.split(split)
    results = {**loaded.model.evaluate(x, y, batch_size=loaded.resolved.config.batch_size), "samples": int(len(y))}
    try:
        saved = loaded.run.read_json("metrics.json")
    except NnctlError:
        saved = {}
    saved[split if loaded.weights is None else f"{split} ({loaded.weights})"] = results
    loaded.run.write_json("metrics.json", saved)
    return results


def read_inputs(path) -> np.ndarray:
    """Model inputs from `.npy`, `.npz` (key `x`, `x_test` or the only array) or `.csv` (numbers, optional header)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise NnctlError(f"no such input file: {path}")
    if suffix == ".csv":
        return _read_csv(path)
    if suffix not in (".npy", ".npz"):
        raise NnctlError(f"cannot read inputs from '{path.name}': use a .npy, .npz or .csv file")
    arrays = read_array_file(path)
    for key in ("x", "x_test", "inputs"):
        if key in arrays:
            return arrays[key]
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    raise NnctlError(f"{path.name} holds several arrays ({', '.join(sorted(arrays))}): name the inputs `x`")


def _read_csv(path: Path) -> np.ndarray:
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = []
    for number, line in enumerate(lines, start=1):
        cells = [cell.strip() for cell in line.split(",")]
        try:
            rows.append([float(cell) for cell in cells])
        except ValueError:
            if number == 1 and not rows:
                continue  # a header
            raise NnctlError(f"{path}:{number}: expected numbers separated by commas, got {line[:60]!r}") from None
    widths = {len(row) for row in rows}
    if len(widths) > 1:
        raise NnctlError(f"{path}: rows have different numbers of values ({', '.join(map(str, sorted(widths)))})")
    if not rows:
        raise NnctlError(f"{path}: no rows of numbers")
    return np.asarray(rows, dtype=np.float32)


def predict_inputs(loaded: LoadedRun, x: np.ndarray) -> np.ndarray:
    """The model's outputs for raw inputs `x`: the run's input transforms first (e.g. its standardization),
    then a flat CSV row is reshaped to the input shape when the sizes agree."""
    model = loaded.model
    x, _ = apply_all(loaded.transforms, x)
    if hasattr(x, "indptr"):  # multi-hot rows stay sparse
        return model.predict(x, batch_size=loaded.resolved.config.batch_size)
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[None, :] if x.size == int(np.prod(model.input_shape)) else x[:, None]
    if tuple(x.shape[1:]) != model.input_shape and int(np.prod(x.shape[1:])) == int(np.prod(model.input_shape)):
        x = x.reshape((len(x),) + model.input_shape)
    if tuple(x.shape[1:]) != model.input_shape:
        raise NnctlError(f"the model takes inputs of shape {list(model.input_shape)} per sample, the file has "
                         f"{list(x.shape[1:])}")
    return model.predict(x, batch_size=loaded.resolved.config.batch_size)


def _dataset_spec(loaded: LoadedRun):
    return loaded.resolved.config.data.dataset


def encode_texts(loaded: LoadedRun, texts) -> object:
    """Texts → the word indexes the run's dataset uses (its word index, num_words and offsets, as in Keras)."""
    from nnctl.data.builtin import encode_text
    from nnctl.data.sequences import Sequences

    spec = _dataset_spec(loaded)
    if spec is None or spec.type not in ("imdb", "reuters"):
        raise NnctlError("--text needs a model trained on the imdb or reuters dataset")
    return Sequences.from_lists([encode_text(text, spec.type, num_words=spec.num_words, index_from=spec.index_from,
                                             start_char=spec.start_char, oov_char=spec.oov_char,
                                             skip_top=spec.skip_top) for text in texts])


def _class_names(loaded: LoadedRun):
    spec = _dataset_spec(loaded)
    if spec is None or spec.type not in ("imdb", "reuters", "mnist", "fashion_mnist"):
        return None
    from nnctl.data.builtin import DATASETS
    return DATASETS[spec.type].labels


def describe_outputs(loaded: LoadedRun, outputs: np.ndarray, texts=()) -> tuple[list[str], list[list]]:
    """(column names, rows) for the table: class and probability for classifiers (the top 3 classes with
    their names when the dataset has them), raw values otherwise; texts are shown beside their rows."""
    loss = loaded.model.loss.name
    flat = outputs.reshape(len(outputs), -1)
    lead = (lambda i: [i, texts[i][:40]]) if texts else (lambda i: [i])
    head = ["#", "text"] if texts else ["#"]
    names = _class_names(loaded)
    label = (lambda c: f"{c} {names[c]}") if names else (lambda c: str(c))
    if loss == "binary_crossentropy" and flat.shape[1] == 1:
        return head + ["class", "probability"], [lead(i) + [label(int(p >= 0.5)), float(max(p, 1 - p))]
                                                 for i, p in enumerate(flat[:, 0])]
    if loss in ("categorical_crossentropy", "sparse_categorical_crossentropy"):
        top = np.argsort(-flat, axis=1)[:, :3]
        columns = head + ["class", "probability"] + (["next classes"] if flat.shape[1] > 2 else [])
        return columns, [lead(i) + [label(int(row[0])), float(flat[i, row[0]])]
                         + ([", ".join(f"{label(int(c))} {flat[i, c]:.2f}" for c in row[1:])]
                            if flat.shape[1] > 2 else []) for i, row in enumerate(top)]
    names = ["output"] if flat.shape[1] == 1 else [f"output_{j}" for j in range(flat.shape[1])]
    return head + names, [lead(i) + list(map(float, row)) for i, row in enumerate(flat)]


def write_outputs(path, outputs: np.ndarray) -> None:
    """Raw outputs by extension: `.npy` (full shape), `.csv` (one row per sample) or `.jsonl` (a list per line)."""
    import json

    path = Path(path)
    suffix = path.suffix.lower()
    flat = outputs.reshape(len(outputs), -1)
    if suffix == ".npy":
        np.save(path, outputs)
    elif suffix == ".csv":
        header = "output" if flat.shape[1] == 1 else ",".join(f"output_{j}" for j in range(flat.shape[1]))
        np.savetxt(path, flat, delimiter=",", header=header, comments="", fmt="%.8g")
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps([float(v) for v in row]) + "\n" for row in flat), encoding="utf-8")
    else:
        raise NnctlError(f"cannot write outputs to '{path.name}': use a .npy, .csv or .jsonl file")
