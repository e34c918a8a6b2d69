"""`nnctl plot SWEEP`: the study's optimization history (`SWEEP/plot.png`, or `-o`) and the parameters'
importances beside it (`<stem>_importances.png`), drawn by Optuna's matplotlib visualizations."""

from __future__ import annotations

import warnings
from pathlib import Path

from nnctl.errors import NnctlError


def is_sweep(path) -> bool:
    return (Path(path) / "sweep.yaml").is_file()


def write_sweep_plot(folder, output=None) -> list[Path]:
    """Writes the figures; returns their paths."""
    from nnctl.sweep.driver import STUDY, require_extra

    require_extra()
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise NnctlError("plotting needs matplotlib: pip install 'nnctl[plot]'") from None
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna.visualization import matplotlib as views

    from nnctl.cli_sweep import recorded_storage

    folder = Path(folder).resolve()
    storage = recorded_storage(folder) or JournalStorage(JournalFileBackend(str(folder / "study.journal")))
    study = optuna.load_study(study_name=STUDY, storage=storage)
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not finished:
        raise NnctlError(f"{folder}: no trial of the sweep has completed: nothing to plot")
    path = Path(output) if output else folder / "plot.png"
    written = [path]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib views experimental
        views.plot_optimization_history(study).figure.savefig(path, dpi=100, bbox_inches="tight")
        if len(finished) > 1 and finished[0].params:
            beside = path.with_name(f"{path.stem}_importances{path.suffix}")
            views.plot_param_importances(study).figure.savefig(beside, dpi=100, bbox_inches="tight")
            written.append(beside)
    plt.close("all")
    return written
