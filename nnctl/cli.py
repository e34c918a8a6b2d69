"""The `nnctl` command line: a thin click layer that parses arguments, calls one library function, renders.

Importing this module must stay cheap (`nnctl --help` ≤ 0.3 s): NumPy, Numba and pydantic load inside commands.
"""

from __future__ import annotations

import json
import os
import sys

import click

from nnctl import __version__

from nnctl.cli_errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, NnctlGroup, _fail, user_errors  # noqa: F401
from nnctl.cli_render import strict_json, summary_table, table

# OpenBLAS's idle threads spin, which slows nnctl's own split kernels and everything under load
# (nnctl/engine/settings.py, threading policy). So the command line runs BLAS on one thread unless the user
# set OPENBLAS_NUM_THREADS. OpenBLAS reads it once, when NumPy loads, which is later than this.
if "numpy" not in sys.modules:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# Numba's CPU target loads without scipy.linalg, which no kernel needs (engine/settings.py, NUMBA_SCIPY).
os.environ.setdefault("NNCTL_NUMBA_SCIPY", "0")


set_option = click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
                          help="Override a config value (repeatable); the value is read as YAML, e.g. "
                               "--set epochs=5 --set optimizer.learning_rate=1e-4.")
config_file = click.argument("file", type=click.Path(dir_okay=False))


@click.group(cls=NnctlGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="nnctl")
def main():
    """Declarative deep-learning training from YAML files, on a Numba kernel engine.

    \b
    Example:
      nnctl train configs/imdb.yaml --set epochs=4
      nnctl evaluate runs/imdb/latest
    """


# The devices (nnctl.nn.cudapath.DEVICES and auto). Not imported from there: `nnctl --help` must not load
# NumPy; tests/test_cli.py keeps the two lists in step. `cuda` on a machine that cannot run it is a located
# config error saying why.
DEVICES = ["cpu", "cuda", "auto"]


@main.command()
@click.argument("file", type=click.Path(dir_okay=False), required=False)
@set_option
@click.option("--resume", "resume_run", type=click.Path(), metavar="RUN",
              help="Continue RUN from its last checkpoint, in place (raise its epochs with --set epochs=N).")
@click.option("--runs-dir", default="runs", show_default=True, type=click.Path(file_okay=False),
              help="Where run directories go: DIR/<name>/<YYYYmmdd-HHMMSS>/.")
@click.option("--device", type=click.Choice(DEVICES), help="Overrides the config's `device`.")
@click.option("--quiet", "-q", is_flag=True, help="Print only errors and the final `run:` line.")
@click.option("--verbose", "-v", is_flag=True, help="Also print where the time went (load, compile, train, "
                                                    "validate, write).")
@user_errors
def train(file, overrides, resume_run, runs_dir, device, quiet, verbose):
    """Train the model a config FILE describes, into a new run directory, or continue a run with --resume.

    \b
    Example:
      nnctl train configs/imdb.yaml --set epochs=4 --set batch_size=256
      nnctl train --resume runs/imdb/latest --set epochs=20
    Exit codes: 0 done, 1 failed during training (e.g. a NaN loss), 2 bad config, 130 interrupted (Ctrl-C).
    """
    from nnctl.config import load_config
    from nnctl.config.yamlfile import warning_line
    from nnctl.runs.rundir import RunDirectory
    from nnctl.train.progress import make_progress
    from nnctl.train.session import prepare, resume, train as train_config

    if (file is None) == (resume_run is None):
        raise click.UsageError("give a config FILE to train, or --resume RUN to continue a run (not both)")
    device_option = [(f"device={device}", f"--device {device}")] if device else []
    progress = make_progress(sys.stdout, "quiet" if quiet else "auto")
    if resume_run is not None:
        result = resume(resume_run, list(overrides) + device_option, progress)
    else:
        resolved = load_config(file, list(overrides) + device_option)
        RunDirectory.check_new(runs_dir, resolved.config.name)  # a runs folder that cannot take it: fail fast
        with progress.phase("loading data"):  # on screen while it happens
            prepared = prepare(resolved)  # every check before anything is written
        for warning in getattr(prepared.model, "config_warnings", []):
            click.secho(warning_line(warning), fg="yellow", err=True)
        validation = resolved.config.data.validation
        if validation is not None and validation.kfold is not None:
            return _run_kfold(resolved, prepared, runs_dir, None, quiet)  # exits with the run's status
        result = train_config(resolved, runs_dir, progress, prepared)
    if getattr(progress, "stream", True) is None:  # stdout's reader is gone: send the rest nowhere
        sys.stdout = open(os.devnull, "w")
    from nnctl.runs.display import display_path

    if result.status == "failed":
        click.secho(f"error: training failed: {result.error}", fg="red", err=True)
    elif result.status == "interrupted" and (result.run.path / "checkpoints" / "last.safetensors").is_file():
        click.secho(f"interrupted after {len(result.history.get('loss', []))} epoch(s); weights and history saved "
                    f"(continue with: nnctl train --resume {display_path(result.run.path)})", fg="yellow", err=True)
    elif result.status == "interrupted":
        click.secho("interrupted before the first epoch finished: nothing was trained, so no weights were saved",
                    fg="yellow", err=True)
    if verbose and not quiet:
        click.echo("time: " + " · ".join(f"{phase} {seconds:.2f} s" for phase, seconds in result.timings.items()))
    if not quiet and result.status == "completed":
        test = result.run.read_json("metrics.json").get("test")
        if test:
            click.echo("test: " + " - ".join(f"{k}: {v:.4f}" for k, v in test.items() if k != "samples"))
    click.echo(f"run: {display_path(result.run.path)}")
    sys.exit({"completed": 0, "failed": EXIT_FAILED, "interrupted": EXIT_INTERRUPTED}[result.status])


@main.command()
@config_file
@set_option
@click.option("--folds", "-k", type=click.IntRange(min=2), help="Number of folds (default: data.validation.kfold).")
@click.option("--runs-dir", default="runs", show_default=True, type=click.Path(file_okay=False))
@click.option("--quiet", "-q", is_flag=True, help="Print only errors and the final `run:` line.")
@click.option("--workers", type=click.IntRange(1, 256), help="Train the folds at once on this many local Dask "
                                                             "worker processes (needs nnctl[sweep]).")
@click.option("--cluster", metavar="ADDRESS", help="Train the folds on an existing Dask scheduler's workers.")
@user_errors
def kfold(file, overrides, folds, runs_dir, quiet, workers, cluster):
    """K-fold cross-validation: train K models and report the mean ± std of every metric per epoch.

    \b
    Example:
      nnctl kfold configs/boston_kfold.yaml --folds 4
    Writes fold_1/ … fold_K/ and kfold.json (per-epoch mean and std) into one run directory.
    """
    from nnctl.config import load_config
    from nnctl.config.yamlfile import warning_line
    from nnctl.runs.rundir import RunDirectory
    from nnctl.train.progress import make_progress
    from nnctl.train.session import prepare

    option = [(f"data.validation={{kfold: {folds}}}", f"--folds {folds}")] if folds else []
    resolved = load_config(file, list(overrides) + option)
    if resolved.config.data.validation is None or resolved.config.data.validation.kfold is None:
        # No fold count anywhere: the book's choice, K = 4 (`data.validation` becomes the folds).
        resolved = load_config(file, list(overrides) + [("data.validation={kfold: 4}", "the default --folds 4")])
    RunDirectory.check_new(runs_dir, resolved.config.name)
    with make_progress(sys.stdout, "quiet" if quiet else "auto").phase("loading data"):
        prepared = prepare(resolved)
    for warning in getattr(prepared.model, "config_warnings", []):
        click.secho(warning_line(warning), fg="yellow", err=True)
    if workers or cluster:  # the same bytes per fold as one after another (tested)
        from nnctl.sweep.cluster import dask_client

        with dask_client(workers, cluster) as client:
            return _run_kfold(resolved, prepared, runs_dir, None, quiet, client)
    _run_kfold(resolved, prepared, runs_dir, None, quiet)


def _run_kfold(resolved, prepared, runs_dir, folds, quiet, client=None):
    from nnctl.train.kfold import format_mean_std, partial_note, summary_title, train_kfold
    from nnctl.train.progress import make_progress

    live = sys.stdout.isatty() and not quiet

    def progress_for(fold, total):
        # A live bar per fold, no kept epoch lines (on_fold_end keeps one line per fold); the first fold's
        # compile line is kept, the others load the same kernels from the cache in no time.
        return make_progress(sys.stdout, "live" if live else "quiet", label=f"fold {fold + 1}/{total}",
                             keep=("phases",) if fold == 0 else ())

    def on_fold_end(fold, total, history):
        if not quiet and history.get("loss"):
            last = {k: v[-1] for k, v in history.items() if k not in ("epoch_time", "lr")}
            click.echo(f"fold {fold + 1}/{total} - {len(history['loss'])} epochs - "
                       + " - ".join(f"{k}: {v:.4f}" for k, v in last.items()))

    from nnctl.runs.display import display_path

    result = train_kfold(resolved, runs_dir, folds, progress_for, prepared, on_fold_end, client)
    if result.status == "failed":
        click.secho(f"error: training failed: {result.error}", fg="red", err=True)
    if result.status != "completed":  # a partial K-fold never passes for the K-fold figure
        click.secho(partial_note(result), fg="yellow", err=True)
    if not quiet and result.summary.get("final"):
        best = result.summary["best"]
        rows = [[key, format_mean_std(stats), (f"{best[key]['mean']:.4f} (epoch {best[key]['epoch']})"
                                               if key in best else "")]
                for key, stats in result.summary["final"].items()]
        table([("metric", "left"), ("final mean ± std", "right"), ("best mean", "right")], rows,
               title=summary_title(result.summary))
    click.echo(f"run: {display_path(result.run.path)}")
    sys.exit({"completed": 0, "failed": EXIT_FAILED, "interrupted": EXIT_INTERRUPTED}[result.status])


@main.command()
@click.argument("run", type=click.Path())
@click.option("--split", type=click.Choice(["test", "validation", "train"]), default="test", show_default=True)
@click.option("--json", "as_json", is_flag=True, help='Print {"loss": ..., "<metric>": ..., "samples": n} '
                                                      "(null where a figure is NaN).")
@click.option("--weights", type=click.Path(), help="Use another weights file of the run, e.g. "
                                                    "checkpoints/best.safetensors (from a model_checkpoint callback).")
@user_errors
def evaluate(run, split, as_json, weights):
    """Evaluate a trained RUN on one of its data splits; the result is saved in its metrics.json.

    \b
    Example:
      nnctl evaluate runs/imdb/latest --split test --json
    Exit codes: 0 done, 1 evaluated (figures printed) but metrics.json could not be written (read-only run,
    full disk, another process writing the run), 2 a missing or damaged run file (named) or a bad argument.
    """
    from nnctl.train.inference import NotSaved, evaluate_split, load_run, save_evaluation
    from nnctl.cli_kfold import evaluate_folds
    from nnctl.train.kfold_evaluate import is_kfold_run

    if weights is None and is_kfold_run(run):  # every fold's model, then mean ± std
        return evaluate_folds(run, split, as_json)
    loaded = load_run(run, weights)
    if loaded.note:  # a run that did not complete: say which epoch its weights are from
        click.secho(f"note: {loaded.note}", fg="yellow", err=True)
    results = evaluate_split(loaded, split)
    if loaded.nonfinite:
        shown = ", ".join(f"`{name}`" for name in loaded.nonfinite[:3]) + (" …" if len(loaded.nonfinite) > 3 else "")
        click.secho(f"note: {loaded.weights_path}: {shown} hold(s) non-finite values (NaN or inf)", fg="yellow",
                    err=True)
    nan_text = "nan (the weights hold non-finite values)" if loaded.nonfinite else "nan"
    if as_json:
        click.echo(strict_json(results, indent=None))
    else:
        table([("metric", "left"), ("value", "right")],
               [[key, (f"{value:.4f}" if value == value else nan_text) if isinstance(value, float) else str(value)]
                for key, value in results.items()], title=f"{split} split")
    try:
        save_evaluation(loaded, split, results)
    except NotSaved as error:
        _fail([f"error: {error}"], EXIT_FAILED)


@main.command()
@click.argument("run", type=click.Path())
@click.option("--input", "input_file", type=click.Path(dir_okay=False),
              help="Inputs: .npy, .npz (array `x`), .csv (one sample per row), or .txt (one text per line, "
                   "for models trained on imdb/reuters).")
@click.option("--text", "texts", multiple=True, help="A text to classify (repeatable), for imdb/reuters models.")
@click.option("--output", "output_file", type=click.Path(dir_okay=False),
              help="Write raw outputs to .npy, .csv or .jsonl instead of printing a table.")
@click.option("--weights", type=click.Path(), help="Use another weights file of the run, e.g. "
                                                    "checkpoints/best.safetensors (from a model_checkpoint callback).")
@user_errors
def predict(run, input_file, texts, output_file, weights):
    """Run a trained RUN's model on new inputs, or on texts for a model trained on imdb/reuters.

    \b
    Example:
      nnctl predict runs/boston/latest --input new_houses.csv --output prices.csv
      nnctl predict runs/imdb/latest --text "this film was just brilliant"
    """
    from nnctl.train.inference import (check_output_path, describe_outputs, encode_texts, load_run, predict_inputs,
                                       read_inputs, read_texts, write_outputs)
    from nnctl.cli_kfold import predict_folds
    from nnctl.train.kfold_evaluate import is_kfold_run
    from nnctl.train.kfold_predict import fold_of
    from nnctl.cli_named import predict_named as _predict_named, show_named as _show_named
    from nnctl.train.inference_named import several

    if bool(input_file) == bool(texts):
        raise click.UsageError("give either --input FILE or --text TEXT")
    if output_file:
        check_output_path(output_file)
    if input_file and input_file.lower().endswith(".txt"):
        texts = read_texts(input_file)
    if (weights is None or fold_of(weights) is not None) and is_kfold_run(run):  # the folds' mean, or one fold
        loaded, outputs = predict_folds(run, input_file, texts, weights)
    else:
        loaded = load_run(run, weights)
        if loaded.note:  # a run that did not complete: say which epoch its weights are from
            click.secho(f"note: {loaded.note}", fg="yellow", err=True)
        if loaded.nonfinite:
            click.secho(f"note: {loaded.weights_path}: the weights hold non-finite values (NaN or inf): the "
                        f"outputs are NaN", fg="yellow", err=True)
        if several(loaded.model):
            return _show_named(loaded, _predict_named(loaded, input_file, texts), output_file)
        inputs = encode_texts(loaded, texts, input_file) if texts else read_inputs(input_file)
        outputs = predict_inputs(loaded, inputs, None if texts else input_file)
    if several(loaded.model):  # a K-fold run's mean outputs
        return _show_named(loaded, outputs, output_file)
    if output_file:
        write_outputs(output_file, outputs)
        click.echo(f"wrote {len(outputs)} prediction(s) to {output_file}")
        return
    columns, rows = describe_outputs(loaded, outputs, texts)
    shown = rows[:50]
    table([(name, "left" if name in ("text", "class", "next classes") else "right") for name in columns],
           [[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row] for row in shown])
    if len(rows) > len(shown):
        click.echo(f"… {len(rows) - len(shown)} more rows: use --output FILE to save them all")


@main.command()
@config_file
@set_option
@user_errors
def summary(file, overrides):
    """Print the Keras-style layer table of a config's model: output shapes and parameter counts.

    \b
    Example:
      nnctl summary configs/imdb.yaml
    """
    from nnctl.config import load_config
    from nnctl.config.build import build_model
    from nnctl.data.files import load_data

    resolved = load_config(file, overrides)
    shape = None if resolved.config.model.input_shape else tuple(load_data(resolved).train[0].shape[1:])
    summary_table(build_model(resolved, input_shape=shape).summary(), resolved.config.name)


@main.command()
@config_file
@set_option
@user_errors
def check(file, overrides):
    """Validate a config FILE and its data without training; lists every problem found.

    \b
    Example:
      nnctl check configs/imdb.yaml --set optimizer.learning_rate=0.01
    """
    from nnctl.config.check import check_config
    from nnctl.config.yamlfile import warning_line

    prepared = check_config(file, overrides)  # every problem at once: YAML, schema, names, data, shapes
    splits, model = prepared.splits, prepared.model
    for warning in getattr(model, "config_warnings", []):
        click.secho(warning_line(warning), fg="yellow", err=True)
    parts = [f"{len(model.layers)} layers", f"{model.summary()['total_params']:,} parameters",
             f"{len(splits.train[1]):,} training rows"]
    for name in ("validation", "test"):
        if getattr(splits, name) is not None:
            parts.append(f"{len(getattr(splits, name)[1]):,} {name} rows")
    if model.device == "cuda":  # `device: cuda`, or `auto` where the GPU path runs this model
        from nnctl.nn.cudaops_host import on_the_host

        host = on_the_host(model)
        parts.append(f"{' and '.join(host)} on the CPU each step, " * bool(host) + "trains on cuda")
    click.echo(f"{file}: ok ({', '.join(parts)})")


@main.group()
def config():
    """Inspect config files.

    \b
    Example:
      nnctl config show configs/imdb.yaml --set epochs=4
    """


@config.command("show")
@config_file
@set_option
@user_errors
def config_show(file, overrides):
    """Print the resolved config: every default filled in and every --set applied.

    \b
    Example:
      nnctl config show configs/imdb.yaml --set optimizer=adam
    """
    from nnctl.config import load_config

    click.echo(load_config(file, overrides).to_yaml(), nl=False)


@main.command()
def schema():
    """Print the JSON Schema of config files (for editor autocompletion).

    \b
    Example:
      nnctl schema > nnctl.schema.json
    """
    from nnctl.config.schema import json_schema

    click.echo(json.dumps(json_schema(), indent=2))


from nnctl import cli_check_layer, cli_data, cli_export, cli_runs, cli_sweep  # noqa: E402,F401  (registers commands)

if __name__ == "__main__":
    main()
