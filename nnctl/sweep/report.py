"""The sweep's printed lines: one per finished trial, and the closing summary."""

from __future__ import annotations


def _value(value) -> str:
    return "—" if value is None else f"{value:.4g}"


def _params(params: dict) -> str:
    return ", ".join(f"{key}={_value(v) if isinstance(v, float) else v}" for key, v in params.items())


def trial_line(outcome: dict, study, metric: str) -> str:
    """`trial 3 [lr=0.001, units=64]: val_mae 2.53 — best 2.41 (trial 1)`, or pruned / failed and why."""
    head = f"trial {outcome['number']} [{_params(outcome.get('params', {}))}]"
    if outcome["state"] == "failed":
        return f"{head}: failed: {(outcome.get('error') or 'no figure').splitlines()[0][:200]}"
    state = f"pruned after {outcome.get('epochs', '?')} epoch(s), " if outcome["state"] == "pruned" else ""
    try:
        best = study.best_trial
        tail = f" — best {_value(best.value)} (trial {best.number})"
    except ValueError:
        tail = ""
    return f"{head}: {state}{metric} {_value(outcome['value'])}{tail}"
