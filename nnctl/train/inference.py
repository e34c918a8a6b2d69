"""Reusing a finished run: rebuild its model from config.yaml + weights.safetensors, evaluate, predict.

Inputs are read from `.npy`, `.npz` or `.csv`; nothing is ever unpickled.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnctl.config.build import build_model, check_data
from nnctl.config.resolve import ResolvedConfig
from nnctl.data.array_checks import check_finite, check_rows
from nnctl.data.files import load_data, read_array_file, read_text_file
from nnctl.data.transforms import apply_all, load_transforms
from nnctl.errors import NnctlError, clip
from nnctl.host import check_fits, check_regular_file
from nnctl.runs import records
from nnctl.runs.rundir import RunDirectory, RunLockedError, atomic_write_bytes
from nnctl.runs.tensorfiles import check_tensors, model_shapes, nonfinite_tensors, read_tensors


@dataclass
class LoadedRun:
    run: RunDirectory
    resolved: ResolvedConfig
    model: object
    transforms: list  # fitted on the run's training data (preprocessing.json)
    weights: str | None = None  # the weights file when not the run's final weights.safetensors
    weights_path: Path | None = None  # the file the weights were read from
    nonfinite: list = field(default_factory=list)  # the weights holding NaN or inf (a diverged run)
    note: str | None = None  # for stderr: which epoch the weights of an unfinished run come from


def load_run(path, weights=None) -> LoadedRun:
    """The run at `path` (a run folder, `latest`, or runs/<name>) with its trained weights loaded, or with
    `weights`: another weights file, e.g. one a `model_checkpoint` callback wrote (relative to the run).

    Every file is read through nnctl.runs.records: damage is a RunFileError naming the file. The data is not
    read: the model's input shape is in the manifest, so predict works without it.
    """
    run = RunDirectory.open(path)
    manifest = records.read_manifest(run.path)
    if manifest.get("kfold") and weights is None and not (run.path / "weights.safetensors").exists():
        raise NnctlError(f"{run.path} is a K-fold run of {manifest['kfold']} models: name one with --weights "
                         f"fold_1/weights.safetensors, or train the config without `kfold` for one model")
    resolved = records.load_run_config(run.path)
    shape = records.input_shape(manifest, run.path)
    if shape is None and not resolved.config.model.input_shape:
        raise records.RunFileError(run.path / "manifest.json", "`input_shape` is missing (and config.yaml gives no "
                                                               "`model.input_shape`)")
    model = build_model(resolved, input_shape=shape, callbacks=False, pretrained=False)
    source = run.path / "weights.safetensors"
    if weights is not None:
        source = Path(weights) if Path(weights).is_file() or Path(weights).is_absolute() else run.path / weights
    else:
        source = trained_weights_file(run.path, manifest)
    # A training checkpoint (checkpoints/last.safetensors) holds the weights under `weights/`.
    tensors, _metadata = read_tensors(source)
    prefix = "weights/" if any(key.startswith("weights/") for key in tensors) else ""
    try:
        check_tensors(source, tensors, model_shapes(model), model.dtype, prefix=prefix, extra_ok=bool(prefix))
    except records.RunFileError as error:
        raise records.RunFileError(source, f"{error.problem} (the model is built from config.yaml and the "
                                           f"manifest's input_shape)") from None
    weights_found = {name: tensors[prefix + name] for name in model_shapes(model)}
    model.set_weights(weights_found)
    transforms = load_transforms(records.read_preprocessing(run.path))
    note = (weights_note(run.path, manifest, source, _metadata, resolved.config.epochs)
            if weights is None else None)
    return LoadedRun(run, resolved, model, transforms, None if weights is None else str(weights), source,
                     nonfinite_tensors(weights_found), note)


def trained_weights_file(folder: Path, manifest: dict) -> Path:
    """The run's final weights, or (a run killed before writing them) its last checkpoint; an NnctlError when
    no epoch finished, so untrained weights are never evaluated."""
    final, checkpoint = folder / "weights.safetensors", folder / "checkpoints" / "last.safetensors"
    # Only a run that never ended (killed) lacks its final weights: elsewhere a missing file is damage.
    status = manifest.get("status")
    if os.path.lexists(final) or (status != "running" and manifest.get("epochs_completed") != 0):
        return final
    if status == "running" and os.path.lexists(checkpoint):
        return checkpoint
    raise NnctlError(f"{folder} has no trained weights: the run ({RunDirectory(folder).state(manifest)}) "
                     f"stopped before its first epoch finished; train it again")


def weights_note(folder: Path, manifest: dict, source: Path, metadata: dict, planned: int) -> str | None:
    """Which epoch the weights of a run that did not complete come from (None for a completed run)."""
    import json

    state = RunDirectory(folder).state(manifest)
    if state == "completed":
        return None
    epochs = metadata.get("epochs")
    if epochs is None:  # a checkpoint: its metadata `state` holds the epochs done
        try:
            epochs = json.loads(metadata.get("state", "{}")).get("epochs_done")
        except (ValueError, AttributeError):
            epochs = None
    epoch = f"epoch {str(epochs)[:20]} of {planned}" if epochs is not None else "its last saved epoch"
    where = "" if source.name == "weights.safetensors" else f" ({source.relative_to(folder)})"
    return f"the run is {state}: these weights are those of {epoch}{where}"


def evaluate_split(loaded: LoadedRun, split: str = "test") -> dict:
    """{"loss": ..., "<metric>": ..., "samples": n} on one split (NaN where the weights are not finite). Fold k's
    weights of a K-fold run are evaluated on fold k's split, transformed as that fold was trained."""
    splits = load_data(loaded.resolved, **_fold_of(loaded))
    check_data(loaded.resolved, loaded.model, splits)
    x, y = splits.split(split)
    return {**loaded.model.evaluate(x, y, batch_size=loaded.resolved.config.batch_size), "samples": int(len(y))}


def _fold_of(loaded: LoadedRun) -> dict:
    """{"fold": k - 1, "folds": K} when the weights are those of fold k (`fold_k/…`) of a K-fold run, else {}."""
    planned = records.read_manifest(loaded.run.path).get("kfold")
    try:
        first = loaded.weights_path.resolve().relative_to(loaded.run.path.resolve()).parts[0]
    except (AttributeError, ValueError, IndexError, OSError):
        return {}
    match = re.fullmatch(r"fold_(\d+)", first)
    if not planned or match is None or not 1 <= int(match.group(1)) <= int(planned):
        return {}
    return {"fold": int(match.group(1)) - 1, "folds": int(planned)}


class NotSaved(NnctlError):
    """Figures that were computed but could not be recorded in metrics.json (read-only run, full disk, locked)."""


def save_evaluation(loaded: LoadedRun, split: str, results: dict) -> Path:
    """Records `results` under `split` in the run's metrics.json, atomically and under the run's lock.
    A damaged metrics.json is left as it is (RunFileError: nnctl never overwrites what it cannot read);
    a failed write or a run another process is writing is NotSaved, naming the path and the cause."""
    path = loaded.run.path / "metrics.json"
    key = split if loaded.weights is None else f"{split} ({loaded.weights})"
    try:
        with loaded.run.lock():
            try:
                saved = records.read_metrics(loaded.run.path)
            except records.RunFileError as error:
                raise records.RunFileError(error.path, f"{error.problem}; the results were not saved over "
                                                       f"it") from None
            saved[key] = results
            loaded.run.write_json("metrics.json", saved)
    except RunLockedError as error:
        raise NotSaved(f"{path}: the results were not saved: {error}") from None
    except OSError as error:  # RunWriteError names the path and the cause; a bare OSError does not
        cause = str(error) if isinstance(error, NnctlError) else (error.strerror or str(error))
        raise NotSaved(f"{path}: the results were not saved: {cause}") from None
    return path


def evaluate_run(loaded: LoadedRun, split: str = "test") -> dict:
    """`evaluate_split`, then `save_evaluation`: the figures, also saved under `split` in metrics.json."""
    results = evaluate_split(loaded, split)
    save_evaluation(loaded, split, results)
    return results


@dataclass
class CsvInputs:
    """A CSV of inputs as read: its columns are matched to the run's (by header name) in `predict_inputs`."""

    path: Path
    text: str


def read_inputs(path) -> np.ndarray | CsvInputs:
    """Model inputs from `.npy`, `.npz` (key `x`, `x_test` or the only array) or `.csv` (a CsvInputs: numbers,
    optional header, matched to the run's columns by `predict_inputs`)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".npz", ".csv"):
        raise NnctlError(f"cannot read inputs from '{path.name}': use a .npy, .npz or .csv file")
    info = check_regular_file(path, "an input file")  # a FIFO would block, a device never end
    if suffix == ".csv":
        check_fits(4 * info.st_size, str(path))
        return CsvInputs(path, read_text_file(path))
    x = _pick_inputs(path, read_array_file(path))
    check_rows(x, "x", str(path))
    check_finite(x, "x", str(path))
    return x


def _pick_inputs(path: Path, arrays: dict) -> np.ndarray:
    for key in ("x", "x_test", "inputs"):
        if key in arrays:
            return arrays[key]
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    raise NnctlError(f"{path.name} holds several arrays ({', '.join(sorted(arrays))}): name the inputs `x`")


def _read_csv(loaded: LoadedRun, inputs: CsvInputs) -> np.ndarray:
    """The CSV's feature columns in the order the model was trained on (float64; NaN for missing cells only
    when the run imputes them). A header is matched by name to the training CSV's columns: the target and the
    training file's unused columns are dropped; without a header, columns are taken by position."""
    from nnctl.data.csv_table import numbers, split_table

    record = records.read_csv_columns(loaded.run.path)
    spec = _dataset_spec(loaded)
    delimiter = spec.delimiter if record is not None and getattr(spec, "type", None) == "csv" else ","
    known = {} if record is None else record
    table = split_table(inputs.path, inputs.text, delimiter, header=None, names=known.get("columns", ()),
                        labels=known.get("classes") or ())
    columns = list(range(len(table.names))) if record is None else _match_columns(table, record)
    table.check_widths()
    imputed = any(t.type_name == "impute" for t in loaded.transforms)
    return numbers(table, columns, allow_missing=imputed)


def _quoted(names) -> str:
    return clip(", ".join(f"'{clip(name, 40)}'" for name in names), 150)


def _match_columns(table, record: dict) -> list[int]:
    features, known, path = record["features"], record["columns"], table.path
    trained = f"(the model was trained on: {_quoted(features)})"
    if table.has_header and record["header"]:
        missing = [name for name in features if name not in table.names]
        extra = [name for name in table.names if name not in known]
        if missing or extra:
            problems = ([f"missing column(s) {_quoted(missing)}"] if missing else []) + (
                [f"unknown column(s) {_quoted(extra)}"] if extra else [])
            raise NnctlError(f"{path}: {'; '.join(problems)} {trained}")
        return [table.names.index(name) for name in features]
    if table.has_header:
        raise NnctlError(f"{path}: the first row is a header, but the model was trained on a CSV without one "
                         f"({len(features)} columns by position): remove the header row")
    width = len(table.names)
    if width == len(features):
        return list(range(width))
    if width == len(known):  # the training file's layout, target included
        return [known.index(name) for name in features]
    raise NnctlError(f"{path}: rows of {width} values without a header; the model takes {len(features)} "
                     f"(or the training file's {len(known)} columns) {trained}")


def predict_inputs(loaded: LoadedRun, x: np.ndarray | CsvInputs, source: str | None = None) -> np.ndarray:
    """The model's outputs for raw inputs `x` (a CSV's columns matched to the run's first): the run's input
    transforms (e.g. its imputation and standardization), then a flat row is reshaped to the input shape when
    the sizes agree."""
    model = loaded.model
    if isinstance(x, CsvInputs):
        x = _read_csv(loaded, x)
    try:
        x, _ = apply_all(loaded.transforms, x)
    except (ValueError, IndexError, TypeError) as error:  # e.g. standardize fitted on another number of columns
        raise NnctlError(f"{loaded.run.path / 'preprocessing.json'}: its transforms do not fit inputs of shape "
                         f"{list(getattr(x, 'shape', ()))[1:]} per sample ({str(error)[:100]})") from None
    if hasattr(x, "indptr"):  # multi-hot rows stay sparse
        return model.predict(x, batch_size=loaded.resolved.config.batch_size)
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[None, :] if x.size == int(np.prod(model.input_shape)) else x[:, None]
    if tuple(x.shape[1:]) != model.input_shape and int(np.prod(x.shape[1:])) == int(np.prod(model.input_shape)):
        x = x.reshape((len(x),) + model.input_shape)
    if tuple(x.shape[1:]) != model.input_shape:
        raise NnctlError(f"{source + ': ' if source else ''}the model takes inputs of shape "
                         f"{list(model.input_shape)} per sample, the file has "
                         f"{list(x.shape[1:])}")
    return model.predict(x, batch_size=loaded.resolved.config.batch_size)


def _dataset_spec(loaded: LoadedRun):
    return loaded.resolved.config.data.dataset


def encode_texts(loaded: LoadedRun, texts, source: str | None = None) -> object:
    """Texts → the word indexes the run's dataset uses (its word index, num_words and offsets, as in Keras)."""
    from nnctl.data.builtin import encode_text
    from nnctl.data.sequences import Sequences

    spec = _dataset_spec(loaded)
    if spec is None or spec.type not in ("imdb", "reuters"):
        raise NnctlError(f"{source + ': texts need' if source else '--text needs'} a model trained on the imdb or "
                         f"reuters dataset")
    return Sequences.from_lists([encode_text(text, spec.type, num_words=spec.num_words, index_from=spec.index_from,
                                             start_char=spec.start_char, oov_char=spec.oov_char,
                                             skip_top=spec.skip_top) for text in texts])


def _class_names(loaded: LoadedRun):
    record = records.read_csv_columns(loaded.run.path)
    if record is not None and record["classes"]:
        return record["classes"]  # a CSV's text labels, in the sorted order their ids were given
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
    label = (lambda c: f"{c} {names[c]}" if c < len(names) else str(c)) if names else (lambda c: str(c))
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


def check_output_path(path) -> Path:
    """`path` as a Path when outputs can go there (a known suffix, an existing folder, not itself a folder);
    an NnctlError naming it otherwise. Called before predicting, so a typo costs no computation."""
    path = Path(path)
    if path.suffix.lower() not in (".npy", ".npz", ".csv", ".jsonl"):
        raise NnctlError(f"cannot write outputs to '{path.name}': use a .npy, .npz, .csv or .jsonl file")
    if path.is_dir():
        raise NnctlError(f"{path}: is a folder; name a file to write the outputs to")
    if not path.parent.is_dir():
        raise NnctlError(f"{path}: cannot write: the folder {path.parent} does not exist")
    return path


def read_texts(path) -> list[str]:
    """The non-blank lines of a UTF-8 text file, one text each; an NnctlError naming the file otherwise."""
    check_fits(4 * check_regular_file(path, "a text file").st_size, str(path))
    try:
        text = read_text_file(Path(path))
    except OSError as error:
        raise NnctlError(f"{path}: cannot read the texts ({error.strerror or error})") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def write_outputs(path, outputs: np.ndarray) -> None:
    """Raw outputs by extension: `.npy` (full shape), `.csv` (one row per sample) or `.jsonl` (a list per line),
    written atomically; a path that cannot be written is an NnctlError naming it and the cause."""
    import io
    import json

    path = check_output_path(path)
    suffix = path.suffix.lower()
    flat = outputs.reshape(len(outputs), -1)
    if suffix in (".npy", ".npz"):  # a .npz holds the array as `output`
        buffer = io.BytesIO()
        np.save(buffer, outputs) if suffix == ".npy" else np.savez(buffer, output=outputs)
        data = buffer.getvalue()
    elif suffix == ".csv":
        buffer = io.StringIO()
        header = "output" if flat.shape[1] == 1 else ",".join(f"output_{j}" for j in range(flat.shape[1]))
        np.savetxt(buffer, flat, delimiter=",", header=header, comments="", fmt="%.8g")
        data = buffer.getvalue().encode()
    else:  # strict JSON: NaN outputs (non-finite weights) as null
        data = "".join(json.dumps([float(v) if np.isfinite(v) else None for v in row]) + "\n"
                       for row in flat).encode()
    try:
        atomic_write_bytes(path, data)
    except OSError as error:
        raise NnctlError(f"{path}: cannot write ({error.strerror or error})") from None
