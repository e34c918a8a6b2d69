"""`nnctl evaluate` and `nnctl predict` on a K-fold run: each fold's figures, mean ± std; the mean outputs.

Called by `evaluate` and `predict` in nnctl/cli.py when the RUN is a K-fold run and no --weights names one fold's model.
"""

from __future__ import annotations

import click


def evaluate_folds(run, split: str, as_json: bool) -> None:
    from nnctl.cli import EXIT_FAILED, _fail
    from nnctl.cli_render import strict_json, table
    from nnctl.train.inference import NotSaved
    from nnctl.train.kfold_evaluate import evaluate_kfold, save_kfold_evaluation

    result = evaluate_kfold(run, split)
    if result["folds"] != result["folds_planned"]:
        click.secho(f"note: the run stopped early: these figures are of {result['label']} only", fg="yellow",
                    err=True)
    if as_json:
        click.echo(strict_json({key: result[key] for key in ("folds", "folds_planned", "mean", "std", "per_fold")},
                               indent=None))
    else:
        keys = list(result["mean"])
        columns = [("metric", "left"), ("mean ± std", "right")]
        columns += [(f"fold {index + 1}", "right") for index in range(result["folds"])]
        rows = [[key, _mean_std(result["mean"][key], result["std"][key])]
                + [_figure(fold[key]) for fold in result["per_fold"]] for key in keys]
        table(columns, rows, title=f"{split} split, {result['label']} (each fold's model on its own fold's data)")
    try:
        save_kfold_evaluation(result, split)
    except NotSaved as error:
        _fail([f"error: {error}"], EXIT_FAILED)


def _figure(value) -> str:
    return "nan" if value is None or value != value else f"{value:.4f}"


def _mean_std(mean, std) -> str:
    return "nan" if mean != mean else f"{mean:.4f} ± {std:.4f}"


def predict_folds(run, input_file, texts, weights=None):
    """(the first fold's LoadedRun, for describing the outputs; the mean of the finished folds' outputs), or
    with `weights` in one fold's folder, that fold's model alone (with that fold's transforms)."""
    import numpy as np

    from nnctl.train.inference import encode_texts, read_inputs
    from nnctl.train.inference_named import predict_named, read_named_inputs, several
    from nnctl.train.kfold_predict import load_folds, predict_folds as averaged

    folds, label = load_folds(run, weights)
    names = "fold_1" if len(folds) == 1 else f"fold_1 … fold_{len(folds)}"
    stopped = "" if label.endswith("fold models") else ": the run stopped early"
    if weights is None:
        click.secho(f"note: averaged the outputs of {label} ({names}){stopped}", fg="yellow", err=True)
    for loaded in folds:
        if loaded.nonfinite:
            click.secho(f"note: {loaded.weights_path}: the weights hold non-finite values (NaN or inf): the "
                        f"outputs are NaN", fg="yellow", err=True)
    if several(folds[0].model):  # several inputs or outputs: each output's mean over the folds
        if texts:
            raise click.UsageError("--text needs a model with one text input")
        inputs = read_named_inputs(input_file, folds[0].model, folds[0].run)
        per_fold = [predict_named(loaded, inputs) for loaded in folds]
        return folds[0], [np.mean(np.stack(parts), axis=0).astype(parts[0].dtype) for parts in zip(*per_fold)]
    inputs = encode_texts(folds[0], texts, input_file) if texts else read_inputs(input_file)
    return folds[0], averaged(folds, inputs, None if texts else input_file)
