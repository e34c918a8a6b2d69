"""`nnctl predict` for a model with several inputs or outputs: inputs from a `.npz` holding one array per input
name, outputs to a `.npz` holding one array per output name, or to one `.npy`/`.csv`/`.jsonl` file per output
(`preds.csv` → `preds_priority.csv`, `preds_department.csv`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nnctl.data.array_checks import check_finite, check_rows
from nnctl.data.npy_reader import read_array_file
from nnctl.errors import NnctlError
from nnctl.host import check_regular_file
from nnctl.named import NamedArrays


def several(model) -> bool:
    """Whether `model` takes several named inputs or gives several outputs."""
    return hasattr(model, "heads")


def read_named_inputs(path, model, run=None) -> NamedArrays:
    """The `.npz` at `path` as the model's named inputs: an array per input name (other arrays are refused, so
    a misspelt name is not silently skipped); or, for a `run` trained on a CSV, a `.csv` with its columns."""
    path = Path(path)
    if path.suffix.lower() == ".csv" and run is not None:
        return _read_groups(path, model, run)
    if path.suffix.lower() != ".npz":
        raise NnctlError(f"cannot read inputs from '{path.name}': this model takes several inputs "
                         f"({', '.join(model.input_names)}): give a .npz with one array per input name, or a "
                         f".csv with the training CSV's columns")
    check_regular_file(path, "an input file")
    arrays = read_array_file(path)
    missing = [name for name in model.input_names if name not in arrays]
    extra = [name for name in arrays if name not in model.input_names]
    if missing or extra:
        problems = ([f"no array named {', '.join(map(repr, missing))}"] if missing else []) + (
            [f"unknown array(s) {', '.join(map(repr, sorted(extra)))}"] if extra else [])
        raise NnctlError(f"{path}: {'; '.join(problems)} (the model's inputs: {', '.join(model.input_names)})")
    for name in model.input_names:
        check_rows(arrays[name], name, str(path))
        check_finite(arrays[name], name, str(path))
    try:
        return NamedArrays({name: arrays[name] for name in model.input_names}, f"the arrays of {path.name}")
    except NnctlError as err:
        raise NnctlError(f"{path}: {err}") from None


def _read_groups(path: Path, model, run) -> NamedArrays:
    """A CSV of inputs for a run trained on CSV column groups: each input's columns, by header name (or, without
    a header, at the training file's positions)."""
    from nnctl.data.csv_table import numbers, split_table
    from nnctl.data.files import read_text_file
    from nnctl.host import check_fits
    from nnctl.runs import records

    record = records.read_csv_columns(run.path)
    if record is None:
        raise NnctlError(f"{path}: this run was not trained on a CSV: give a .npz with one array per input name")
    check_fits(4 * check_regular_file(path, "an input file").st_size, str(path))
    classes = record["classes"]
    known = [c for group in (classes.values() if isinstance(classes, dict) else [classes]) for c in group or []]
    table = split_table(Path(path.name), read_text_file(path), ",", header=None, names=record["columns"],
                        labels=known)
    features = record["features"] if isinstance(record["features"], dict) else {model.input_names[0]:
                                                                                 record["features"]}
    names = table.names if table.has_header else record["columns"]
    if not table.has_header and len(table.names) != len(record["columns"]):
        raise NnctlError(f"{path}: rows of {len(table.names)} values without a header; the training file had "
                         f"{len(record['columns'])} columns: give a header or the same layout")
    missing = [column for group in features.values() for column in group if column not in names]
    if missing:
        raise NnctlError(f"{path}: missing column(s) {', '.join(map(repr, missing))} (the model's inputs read "
                         f"{'; '.join(f'{k}: {len(v)} columns' for k, v in features.items())})")
    table.check_widths()
    return NamedArrays({name: numbers(table, [names.index(c) for c in group]) for name, group in features.items()})


def predict_named(loaded, inputs: NamedArrays) -> list[np.ndarray]:
    """The model's outputs (a list, in `model.outputs` order) for the named inputs, each checked against its
    input's shape first (a flat row of the right size is reshaped)."""
    model = loaded.model
    arrays = {}
    for name, shape in zip(model.input_names, model.input_shapes):
        x = np.asarray(inputs[name])
        if tuple(x.shape[1:]) != shape and int(np.prod(x.shape[1:])) == int(np.prod(shape)):
            x = x.reshape((len(x),) + shape)
        if tuple(x.shape[1:]) != shape:
            raise NnctlError(f"input '{name}' takes shape {list(shape)} per sample, the file's array has "
                             f"{list(x.shape[1:])}")
        arrays[name] = x
    return model.predict(arrays, batch_size=loaded.resolved.config.batch_size)


def output_paths(path, names: list[str]) -> list[Path]:
    """Where each output goes: the `.npz` itself (all of them), or `<stem>_<output><suffix>` per output."""
    path = Path(path)
    if path.suffix.lower() == ".npz":
        return [path]
    return [path.with_name(f"{path.stem}_{name}{path.suffix}") for name in names]


def write_named_outputs(path, outputs: list[np.ndarray], names: list[str]) -> list[Path]:
    """Writes each output (atomically); returns the files written."""
    import io

    from nnctl.runs.rundir import atomic_write_bytes
    from nnctl.train.inference import check_output_path, write_outputs

    path = Path(path)
    if path.suffix.lower() != ".npz":
        written = output_paths(path, names)
        for target, values in zip(written, outputs):
            write_outputs(check_output_path(target), values)
        return written
    buffer = io.BytesIO()
    np.savez(buffer, **dict(zip(names, outputs)))
    try:
        atomic_write_bytes(path, buffer.getvalue())
    except OSError as error:
        raise NnctlError(f"{path}: cannot write ({error.strerror or error})") from None
    return [path]


def class_names(run) -> dict:
    """Each output's class names, for a run trained on a CSV with text labels ({} otherwise)."""
    from nnctl.runs import records

    record = records.read_csv_columns(run.path) or {}
    return {k: v for k, v in record.get("classes").items() if v} if isinstance(record.get("classes"), dict) else {}


def describe_named(model, outputs: list[np.ndarray], names: dict | None = None) -> tuple[list[str], list[list]]:
    """(column names, rows) for the table: per output, its class (named, when `names` has the output's class
    names) and probability (a classifier), or its values."""
    columns, parts = ["#"], []
    for head, values in zip(model.heads, outputs):
        known = (names or {}).get(head.name)

        def label(c, known=known):
            return f"{c} {known[c]}" if known and c < len(known) else c
        flat = values.reshape(len(values), -1)
        loss = head.loss.name
        if loss == "binary_crossentropy" and flat.shape[1] == 1:
            columns += [f"{head.name} class", f"{head.name} probability"]
            parts.append([[label(int(p >= 0.5)), float(max(p, 1 - p))] for p in flat[:, 0]])
        elif loss in ("categorical_crossentropy", "sparse_categorical_crossentropy"):
            best = flat.argmax(axis=1)
            columns += [f"{head.name} class", f"{head.name} probability"]
            parts.append([[label(int(c)), float(flat[i, c])] for i, c in enumerate(best)])
        else:
            columns += [head.name] if flat.shape[1] == 1 else [f"{head.name}_{j}" for j in range(flat.shape[1])]
            parts.append([list(map(float, row)) for row in flat])
    rows = [[i] + [value for part in parts for value in part[i]] for i in range(len(outputs[0]))]
    return columns, rows
