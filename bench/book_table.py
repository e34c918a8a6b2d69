"""The book benchmark's cases and its tables: steady epoch medians, the torch/nnctl ratios and the issues' targets.

Pure functions of the runs `run.py` collected (dicts per side), so the tables are tested on made-up runs.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

from engine_bench import format_ms

SIDES = ("nnctl", "torch", "torch1")  # torch1: torch on one thread, for the cases with a 1-thread target


@dataclass(frozen=True)
class BookCase:
    key: str
    config: Path
    dataset: str  # nnctl's built-in dataset name, to check its files before anything runs
    min_ratio: float | None  # torch/nnctl steady-epoch target; None: the target is the whole command's wall
    max_wall_s: float | None = None
    min_ratio_one_thread: float | None = None  # torch on 1 thread / nnctl; torch then also runs on 1 thread
    rss_limit_mb: float | None = None  # nnctl's whole-process peak RSS
    max_load_growth: float | None = None  # nnctl's epoch under --load / plain, same invocation
    epochs: int | None = None  # a shortened schedule for the slow configs (None: the config's own)
    max_compile_s: float = 5.0  # cold-cache compile step



def steady(results: list[dict]) -> list[float]:
    """Every epoch but the first of each fit, over all rounds (the first may still be warming caches)."""
    return [t for r in results for fit in r["epoch_s"] for t in fit[1:]]


def epoch_cell(results: list[dict]) -> tuple[str, float | None]:
    good = [r for r in results if "error" not in r]
    if not results:
        return "—", None
    if not good:
        return "failed", None
    times = steady(good)
    median = statistics.median(times)
    return f"{format_ms(median)} [{format_ms(min(times))}–{format_ms(max(times))}]", median


def median_of(results: list[dict], key: str, fmt: str) -> str:
    values = [r[key] for r in results if "error" not in r]
    return format(statistics.median(values), fmt) if values else "—"


def ratio_to(runs: dict, case: BookCase, side: str) -> float | None:
    """The `side` epoch median over nnctl's, of the same invocation."""
    _, nn_median = epoch_cell(runs[case.key, "nnctl"])
    _, other = epoch_cell(runs[case.key, side])
    return other / nn_median if nn_median and other else None


def verdict(case: BookCase, runs: dict) -> str:
    good = [r for r in runs[case.key, "nnctl"] if "error" not in r]
    if not good:
        return "—"
    if case.max_wall_s is not None:
        wall = statistics.median(r["wall_s"] for r in good)
        return f"wall < {case.max_wall_s:g} s: {'pass' if wall < case.max_wall_s else 'FAIL'}"
    parts = []
    for side, bar in (("torch", case.min_ratio), ("torch1", case.min_ratio_one_thread)):
        if bar is not None:
            ratio = ratio_to(runs, case, side)
            label = f"≥ {bar:g}×" + (" 1-thread" if side == "torch1" else "")
            parts.append(f"{label}: " + ("—" if ratio is None else "pass" if ratio >= bar else "FAIL"))
    if case.rss_limit_mb is not None:
        rss = max(r["peak_rss_mb"] for r in good)
        parts.append(f"RSS ≤ {case.rss_limit_mb:g} MB: {'pass' if rss <= case.rss_limit_mb else 'FAIL'}")
    return "; ".join(parts)


def load_growth(case: BookCase, runs: dict, baseline: dict | None) -> str:
    _, loaded = epoch_cell(runs[case.key, "nnctl"])
    _, plain = epoch_cell(baseline[case.key, "nnctl"]) if baseline else (None, None)
    if not loaded or not plain:
        return "— (needs `--load both`)"
    grown = loaded / plain
    limit = case.max_load_growth
    return f"{grown:.2f}×" + ("" if limit is None else f" (≤ {limit:g}×: {'pass' if grown <= limit else 'FAIL'})")


def table(runs: dict, cases: list[BookCase], load: bool, baseline: dict | None = None) -> list[str]:
    """The plain table checks the issue's speed targets; the load table checks nnctl's slowdown against
    the plain table of the same invocation (`--load both`)."""
    header = ("| config | nnctl epoch ms median [min–max] | torch epoch ms median [min–max] | torch / nnctl "
              "| torch 1-thread epoch ms | torch 1-thread / nnctl | total wall s nnctl / torch "
              "| peak RSS MB nnctl / torch | target |")
    rule = "|---|---|---|---|---|---|---|---|---|"
    if load:
        header = header.replace(" target |", " nnctl epoch under load / plain |")
    lines = [header, rule]
    for case in cases:
        nn_runs, torch_runs = runs[case.key, "nnctl"], runs[case.key, "torch"]
        ratios = [ratio_to(runs, case, side) for side in ("torch", "torch1")]
        cells = [case.key, epoch_cell(nn_runs)[0], epoch_cell(torch_runs)[0],
                 "—" if ratios[0] is None else f"{ratios[0]:.1f}×", epoch_cell(runs[case.key, "torch1"])[0],
                 "—" if ratios[1] is None else f"{ratios[1]:.1f}×",
                 f"{median_of(nn_runs, 'wall_s', '.2f')} / {median_of(torch_runs, 'wall_s', '.2f')}",
                 f"{median_of(nn_runs, 'peak_rss_mb', '.0f')} / {median_of(torch_runs, 'peak_rss_mb', '.0f')}",
                 load_growth(case, runs, baseline) if load else verdict(case, runs)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def details(runs: dict, cases: list[BookCase]) -> list[str]:
    lines = ["| config | side | per-round median epoch ms | first epoch ms | final loss / metric (train) "
             "| final val loss / metric | best val metric | test loss / metric | notes |",
             "|---|---|---|---|---|---|---|---|---|"]
    for case in cases:
        for side in SIDES:
            good = [r for r in runs[case.key, side] if "error" not in r]
            if not good:
                continue
            last = good[-1]["final"]
            metric = next(k for k in last if k not in ("loss",) and not k.startswith("val_"))
            val = f"{last['val_loss']:.4f} / {last[f'val_{metric}']:.4f}" if "val_loss" in last else "—"
            best = good[-1].get("best", {}).get(f"val_{metric}")
            test = good[-1].get("test") or {}
            test_cell = f"{test['loss']:.4f} / {test[metric]:.4f}" if test else "—"
            if side == "nnctl":
                phases = [r["manifest"].get("phases") for r in good if r["manifest"].get("phases")]
                note = ("phases s (median): " + ", ".join(
                    f"{k} {statistics.median(p[k] for p in phases):.2f}" for k in phases[0])) if phases else \
                    "K-fold: the manifest records no phases"
            else:
                note = (f"{good[-1]['threads']} threads, {good[-1]['sparse_input']} batches" if case.key == "imdb"
                        else f"{good[-1]['threads']} threads") + \
                       f"; {good[-1]['epochs']} epochs/fit; RSS after data {good[-1]['rss_after_data_mb']:.0f} MB"
            lines.append(
                f"| {case.key} | {side} | {', '.join(format_ms(statistics.median(steady([r]))) for r in good)} "
                f"| {', '.join(format_ms(r['epoch_s'][0][0]) for r in good)} "
                f"| {last['loss']:.4f} / {metric} {last[metric]:.4f} | {val} "
                f"| {'—' if best is None else f'{best:.4f}'} "
                f"| {test_cell} | {note} |")
    return lines
