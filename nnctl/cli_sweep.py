"""`nnctl sweep FILE` (registered on `main`): search a config's hyperparameters with Optuna, trials on Dask."""

from __future__ import annotations

from pathlib import Path

import click

from nnctl.cli import main, user_errors


@main.command()
@click.argument("file", type=click.Path())
@click.option("--workers", type=click.IntRange(1, 256), help="Local Dask worker processes (default: the cores).")
@click.option("--cluster", metavar="ADDRESS", help="An existing Dask scheduler, e.g. tcp://host:8786 (each worker "
                                                   "needs nnctl and the data at the same paths).")
@click.option("--storage", metavar="URL", help="The study's storage (an RDB URL Optuna takes, e.g. "
                                               "postgresql://…); default: a journal file in the sweep folder.")
@click.option("--runs-dir", default="sweeps", show_default=True, type=click.Path(),
              help="Where the sweep folder is made (<runs-dir>/<name>/<stamp>/trial_NNN/).")
@user_errors
def sweep(file, workers, cluster, storage, runs_dir):
    """Search FILE's space (a sweep file: base config, metric, trials, sampler, pruner, space).

    \b
    Example:
      nnctl sweep configs/boston_sweep.yaml --workers 2
    """
    from nnctl.config.build import monitored_names
    from nnctl.config.yamlfile import ConfigError, ConfigIssue
    from nnctl.errors import did_you_mean
    from nnctl.runs.rundir import RunDirectory
    from nnctl.sweep.driver import require_extra, run_sweep, write_summary
    from nnctl.sweep.spec import load_sweep
    from nnctl.train.session import prepare

    require_extra()
    found = load_sweep(file)
    prepared = prepare(found.base)  # the data is here, and the metric is one the runs log
    choice = found.base.config.data.validation
    names = monitored_names(prepared.model, prepared.splits.validation is not None or (
        choice is not None and choice.kfold is not None))
    if found.spec.metric not in names:
        close = did_you_mean(found.spec.metric, names)
        raise ConfigError([ConfigIssue(found.doc.source(("sweep", "metric")), ("sweep", "metric"),
                                       f"'{found.spec.metric}' is not logged by the base config's runs"
                                       + (f" — did you mean '{close}'?" if close else "")
                                       + f" (allowed: {', '.join(names)})")])
    if choice is not None and choice.kfold is not None:
        raise ConfigError([ConfigIssue(found.doc.source(("base",)), ("base",), "K-fold trials are not supported yet: "
                                       "give the trials a `data.validation: {split: …}` in the space")])
    folder = RunDirectory.create(Path(runs_dir), found.name).path
    (folder / "sweep.yaml").write_text(Path(file).read_text())
    click.echo(f"sweep {found.name}: {found.spec.trials} trials of {found.base_path.name}, {found.spec.sampler} "
               f"sampler, {found.spec.pruner} pruner, into {folder}")
    result = run_sweep(found, folder, workers, cluster, storage, report=click.echo)
    write_summary(found, result)
    best = result.best
    click.echo(f"done in {result.seconds:.1f} s: " + (f"best {found.spec.metric} {best['value']:.4g} (trial "
                                                       f"{best['number']}); {folder / 'best.yaml'}" if best
                                                       else "no trial completed"))
