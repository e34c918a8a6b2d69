"""`nnctl sweep FILE`, `nnctl sweep --resume SWEEP` and `nnctl sweep show SWEEP` (registered on `main`): search a
config's hyperparameters with Optuna, trials on Dask (nnctl/sweep/)."""

from __future__ import annotations

from pathlib import Path

import click
import yaml

from nnctl.cli import EXIT_INTERRUPTED, _fail, main, user_errors


@main.command()
@click.argument("file", required=False, type=click.Path())
@click.argument("shown", required=False, type=click.Path(), metavar="")
@click.option("--resume", "resume_folder", type=click.Path(), metavar="SWEEP",
              help="Continue a stopped sweep's study in its folder, up to its `trials`.")
@click.option("--workers", type=click.IntRange(1, 256), help="Local Dask worker processes (default: the cores).")
@click.option("--cluster", metavar="ADDRESS", help="An existing Dask scheduler, e.g. tcp://host:8786 (each worker "
                                                   "needs nnctl and the data at the same paths).")
@click.option("--storage", metavar="URL", help="The study's storage (an RDB URL Optuna takes, e.g. "
                                               "postgresql://…); default: a journal file in the sweep folder.")
@click.option("--runs-dir", default="sweeps", show_default=True, type=click.Path(),
              help="Where the sweep folder is made (<runs-dir>/<name>/<stamp>/trial_NNN/).")
@user_errors
def sweep(file, shown, resume_folder, workers, cluster, storage, runs_dir):
    """Search FILE's space (a sweep file: base config, metric, trials, sampler, pruner, space).

    \b
    Example:
      nnctl sweep configs/sweeps/boston_sweep.yaml --workers 2
      nnctl sweep --resume sweeps/boston_sweep/latest
      nnctl sweep show sweeps/boston_sweep/latest
    """
    from nnctl.sweep.driver import require_extra, run_sweep, write_summary

    if file == "show":
        return _show(shown)
    if shown is not None or bool(file) == bool(resume_folder):
        raise click.UsageError("give a sweep FILE, --resume SWEEP, or `show SWEEP`")
    require_extra()
    if resume_folder:
        folder = Path(resume_folder).resolve()
        found = _checked(folder / "sweep.yaml")
        storage = storage or recorded_storage(folder)
    else:
        found = _checked(file)
        folder = _new_folder(found, runs_dir, storage)
    click.echo(f"sweep {found.name}: {found.spec.trials} trials of {found.base_path.name}, {found.spec.sampler} "
               f"sampler, {found.spec.pruner} pruner, {'continued in' if resume_folder else 'into'} {folder}")
    result = run_sweep(found, folder, workers, cluster, storage, report=click.echo, resume=bool(resume_folder))
    write_summary(found, result)
    best = result.best
    if result.interrupted:
        _fail([f"interrupted: the finished trials are kept; continue with: nnctl sweep --resume {folder}"],
              EXIT_INTERRUPTED)
    click.echo(f"done in {result.seconds:.1f} s: " + (f"best {found.spec.metric} {best['value']:.4g} (trial "
                                                       f"{best['number']}); {folder / 'best.yaml'}" if best
                                                       else "no trial completed"))


def _checked(path):
    """The sweep file at `path`, its metric checked against what the base config's runs log."""
    from nnctl.config.build import monitored_names
    from nnctl.config.yamlfile import ConfigError, ConfigIssue
    from nnctl.errors import did_you_mean
    from nnctl.sweep.spec import load_sweep
    from nnctl.train.session import prepare

    found = load_sweep(path)
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
    return found


def _new_folder(found, runs_dir, storage) -> Path:
    """`<runs-dir>/<name>/<stamp>/` with a copy of the sweep file whose `base` is absolute and `study.json`
    naming the study's storage (for --resume and plot; a URL's password is not written)."""
    import json
    from urllib.parse import urlsplit

    from nnctl.runs.rundir import RunDirectory, atomic_write_bytes

    folder = RunDirectory.create(Path(runs_dir), found.name).path.resolve()
    data = dict(found.doc.data)
    data["base"] = str(found.base_path)
    atomic_write_bytes(folder / "sweep.yaml", yaml.safe_dump(data, sort_keys=False, allow_unicode=True).encode())
    parts = urlsplit(storage) if storage else None
    secret = bool(parts and parts.password)
    shown = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl() if secret else storage
    atomic_write_bytes(folder / "study.json", json.dumps({"storage": shown or "journal", "masked": secret}).encode())
    return folder


def recorded_storage(folder: Path) -> str | None:
    """The storage URL a sweep folder's study.json names (None: the journal file); a masked one must be given."""
    import json

    from nnctl.errors import NnctlError

    try:
        record = json.loads((folder / "study.json").read_text())
    except (OSError, ValueError):
        return None
    if record.get("masked"):
        raise NnctlError(f"{folder}: the study is in {record['storage']}: give --storage with its password")
    return None if record.get("storage") in (None, "journal") else record["storage"]


def _show(folder):
    """The trials table of a sweep folder's sweep.json."""
    import json

    from nnctl.cli_render import table
    from nnctl.errors import NnctlError

    if folder is None:
        raise click.UsageError("give the sweep folder: nnctl sweep show SWEEP")
    path = Path(folder) / "sweep.json"
    try:
        summary = json.loads(path.read_text())
        trials, metric = summary["trials"], summary["metric"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise NnctlError(f"{path}: not a finished sweep's summary ({type(err).__name__})") from None
    keys = list(dict.fromkeys(key for trial in trials for key in trial.get("params", {})))
    best = (summary.get("best") or {}).get("number")
    rows = [[str(t["number"]) + (" *" if t["number"] == best else ""), t["state"],
             "—" if t.get("value") is None else f"{t['value']:.4g}"]
            + [_cell(t.get("params", {}).get(key)) for key in keys] for t in trials]
    table([("trial", "right"), ("state", "left"), (metric, "right")] + [(key, "right") for key in keys], rows,
          title=f"{summary.get('name')}: {len(trials)} trials, best marked *")


def _cell(value) -> str:
    return "—" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)
