"""The book benchmark: each book config through the real `nnctl train`, then its PyTorch eager twin, A B A B ….

    NNCTL_DATA_DIR=/path/to/datasets python bench/run.py [--rounds 5] [--configs imdb,mnist,boston,boston_kfold]
        [--load [on|both]] [--torch-threads N] [--epochs-override N | imdb=N,...] [--torch-kfold-epochs N]

Every run is a fresh subprocess; its wall time and peak RSS (os.wait4's ru_maxrss) belong to that process alone.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from engine_bench import BENCH_EXTRA_HINT, format_ms, machine_description, nnctl_source_state
from torch_book import RESULT_MARKER

REPO = Path(__file__).resolve().parent.parent
TORCH_BOOK = Path(__file__).resolve().parent / "torch_book.py"
RSS_LIMIT_MB = 500  # "whole-process peak RSS ≤ 0.5 GB", read as 10^6-byte megabytes


@dataclass(frozen=True)
class BookCase:
    key: str
    config: Path
    dataset: str  # nnctl's built-in dataset name, to check its files before anything runs
    min_ratio: float | None  # torch/nnctl steady-epoch target; None: the target is the whole command's wall
    max_wall_s: float | None = None


CASES = {c.key: c for c in [
    BookCase("imdb", REPO / "configs/imdb.yaml", "imdb", 10.0),
    BookCase("mnist", REPO / "configs/mnist.yaml", "mnist", 2.0),
    BookCase("boston", REPO / "configs/boston.yaml", "boston_housing", 25.0),
    BookCase("boston_kfold", REPO / "configs/boston_kfold.yaml", "boston_housing", None, max_wall_s=10.0),
]}


# ---- one measured child process ---------------------------------------------------------------------

@dataclass
class Finished:
    returncode: int
    launched_at: float  # Unix time just before the spawn
    wall_s: float
    peak_rss_mb: float
    stdout: str
    stderr: str

    def failure(self) -> str:
        tail = (self.stderr or self.stdout).strip().splitlines()[-6:]
        return f"exit code {self.returncode}: " + " | ".join(tail)


def run_child(command: list[str], env: dict | None = None) -> Finished:
    """Runs `command` to the end; wall time from spawn to reap, peak RSS from the kernel's rusage of the child."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        launched_at, started = time.time(), time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=err, env=env, cwd=REPO)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # Ctrl-C: leave no orphan training behind
            proc.kill()
            proc.wait()
            raise
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen must not wait again
        out.seek(0), err.seek(0)
        return Finished(proc.returncode, launched_at, wall, usage.ru_maxrss * 1024 / 1e6,
                        out.read().decode(errors="replace"), err.read().decode(errors="replace"))


def nnctl_launcher() -> list[str]:
    """The installed `nnctl` script beside this interpreter (a pyenv shim would add its own start-up)."""
    script = shutil.which("nnctl", path=os.path.dirname(sys.executable))
    return [script] if script else [sys.executable, "-m", "nnctl"]


def run_nnctl(case: BookCase, epochs: int | None, runs_dir: str, env: dict | None = None, quiet=True) -> dict:
    command = nnctl_launcher() + ["train", str(case.config), "--runs-dir", runs_dir]
    command += (["--quiet"] if quiet else []) + (["--set", f"epochs={epochs}"] if epochs else [])
    done = run_child(command, env)
    run_line = [line for line in done.stdout.splitlines() if line.startswith("run: ")]
    if done.returncode != 0 or not run_line:
        return {"error": done.failure()}
    run = Path(run_line[-1][len("run: "):])
    histories = [json.loads(p.read_text()) for p in sorted(run.glob("fold_*/history.json")) or [run / "history.json"]]
    return {"epoch_s": [h["epoch_time"] for h in histories], "final": final_figures(histories),
            "manifest": json.loads((run / "manifest.json").read_text()), "wall_s": done.wall_s,
            "launched_at": done.launched_at,
            "peak_rss_mb": done.peak_rss_mb, "stdout": done.stdout}


def run_torch(case: BookCase, epochs: int | None, threads: int | None) -> dict:
    command = [sys.executable, str(TORCH_BOOK), str(case.config)]
    command += (["--epochs", str(epochs)] if epochs else []) + (["--threads", str(threads)] if threads else [])
    done = run_child(command)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_MARKER)]
    if done.returncode != 0 or not lines:
        return {"error": done.failure()}
    return {**json.loads(lines[-1][len(RESULT_MARKER):]), "wall_s": done.wall_s, "peak_rss_mb": done.peak_rss_mb}


def final_figures(histories: list[dict]) -> dict:
    """Last epoch's figures (mean over K-fold folds), the same keys torch_book.py reports."""
    keys = [k for k in histories[0] if k not in ("epoch_time", "lr")]
    return {k: statistics.fmean(h[k][-1] for h in histories) for k in keys}


@contextmanager
def busy_core(enabled: bool):
    """Another process spinning on one of the cores for the duration (the issue's load test)."""
    if not enabled:
        yield
        return
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)  # let it reach the spin before anything is timed
        yield
    finally:
        spinner.kill()
        spinner.wait()


# ---- the table ----------------------------------------------------------------------------------------

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


def verdict(case: BookCase, ratio: float | None, nnctl_runs: list[dict]) -> str:
    good = [r for r in nnctl_runs if "error" not in r]
    if not good:
        return "—"
    if case.max_wall_s is not None:
        wall = statistics.median(r["wall_s"] for r in good)
        return f"wall < {case.max_wall_s:g} s: {'pass' if wall < case.max_wall_s else 'FAIL'}"
    parts = [f"≥ {case.min_ratio:g}×: " + ("—" if ratio is None else "pass" if ratio >= case.min_ratio else "FAIL")]
    if case.key == "imdb":
        rss = max(r["peak_rss_mb"] for r in good)
        parts.append(f"RSS ≤ {RSS_LIMIT_MB} MB: {'pass' if rss <= RSS_LIMIT_MB else 'FAIL'}")
    return "; ".join(parts)


def table(runs: dict, cases: list[BookCase], load: bool, baseline: dict | None = None) -> list[str]:
    """The plain table checks the issue's speed targets; the load table checks the IMDB slowdown against
    the plain table of the same invocation (`--load both`)."""
    header = ("| config | nnctl epoch ms median [min–max] | torch epoch ms median [min–max] | torch / nnctl "
              "| total wall s nnctl / torch | peak RSS MB nnctl / torch | target |")
    rule = "|---|---|---|---|---|---|---|"
    if load:
        header = header.replace(" target |", " nnctl epoch under load / plain |")
    lines = [header, rule]
    for case in cases:
        nn_runs, torch_runs = runs[case.key, "nnctl"], runs[case.key, "torch"]
        nn_cell, nn_median = epoch_cell(nn_runs)
        torch_cell, torch_median = epoch_cell(torch_runs)
        ratio = torch_median / nn_median if nn_median and torch_median else None
        cells = [case.key, nn_cell, torch_cell, "—" if ratio is None else f"{ratio:.1f}×",
                 f"{median_of(nn_runs, 'wall_s', '.2f')} / {median_of(torch_runs, 'wall_s', '.2f')}",
                 f"{median_of(nn_runs, 'peak_rss_mb', '.0f')} / {median_of(torch_runs, 'peak_rss_mb', '.0f')}"]
        if not load:
            cells.append(verdict(case, ratio, nn_runs))
        else:
            _, plain = epoch_cell(baseline[case.key, "nnctl"]) if baseline else (None, None)
            grown = nn_median / plain if nn_median and plain else None
            limit = " (≤ 2×: " + ("pass" if grown <= 2 else "FAIL") + ")" if case.key == "imdb" and grown else ""
            cells.append("— (needs `--load both`)" if grown is None else f"{grown:.2f}×{limit}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def details(runs: dict, cases: list[BookCase]) -> list[str]:
    lines = ["| config | side | per-round median epoch ms | first epoch ms | final loss / metric (train) "
             "| final val loss / metric | notes |", "|---|---|---|---|---|---|---|"]
    for case in cases:
        for side in ("nnctl", "torch"):
            good = [r for r in runs[case.key, side] if "error" not in r]
            if not good:
                continue
            last = good[-1]["final"]
            metric = next(k for k in last if k not in ("loss",) and not k.startswith("val_"))
            val = f"{last['val_loss']:.4f} / {last[f'val_{metric}']:.4f}" if "val_loss" in last else "—"
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
                f"| {last['loss']:.4f} / {metric} {last[metric]:.4f} | {val} | {note} |")
    return lines


def run_rounds(cases, rounds, epochs_for, torch_epochs_for, torch_threads, with_torch, load: bool) -> dict:
    runs = {(c.key, side): [] for c in cases for side in ("nnctl", "torch")}
    with busy_core(load), tempfile.TemporaryDirectory(prefix="nnctl-bench-runs-") as runs_dir:
        for index in range(rounds):
            for case in cases:  # A B, A B, …: drift in machine load hits both alike
                jobs = [("nnctl", lambda: run_nnctl(case, epochs_for(case), runs_dir))]
                if with_torch:
                    jobs.append(("torch", lambda: run_torch(case, torch_epochs_for(case), torch_threads)))
                for side, job in jobs:
                    result = job()
                    runs[case.key, side].append(result)
                    label = f"{'load ' if load else ''}round {index + 1} {case.key:12s} {side:5s}"
                    print(f"{label}: FAILED {result['error']}" if "error" in result else
                          f"{label}: steady epoch {format_ms(statistics.median(steady([result])))} ms, "
                          f"wall {result['wall_s']:.2f} s, peak RSS {result['peak_rss_mb']:.0f} MB", flush=True)
    return runs


# ---- start-up ---------------------------------------------------------------------------------------

def startup(runs_dir: str, cold_cases: list[BookCase]) -> list[str]:
    from nnctl.data.fetch import cache_dir

    lines = ["| measure | value | target |", "|---|---|---|"]
    helps = [run_child(nnctl_launcher() + ["--help"]).wall_s for _ in range(5)]
    help_s = statistics.median(helps)
    lines.append(f"| `nnctl --help` wall, median of 5 [min–max] | {help_s:.3f} s [{min(helps):.3f}–{max(helps):.3f}] "
                 f"| ≤ 0.3 s: {'pass' if help_s <= 0.3 else 'FAIL'} |")
    warm = [run_nnctl(CASES["imdb"], 1, runs_dir) for _ in range(5)]
    if all("error" not in r for r in warm):
        phases = [r["manifest"]["phases"] for r in warm]
        # The run records the Unix time its training began; this process recorded the launch.
        first = [r["manifest"]["first_step_time"] - r["launched_at"] for r in warm]
        load_s, compile_s = (statistics.median(p[k] for p in phases) for k in ("load", "compile"))
        first_s = statistics.median(first)
        lines.append(f"| warm cache: `nnctl train configs/imdb.yaml --set epochs=1`, launch → first training step, "
                     f"median of 5 [{min(first):.2f}–{max(first):.2f}] | {first_s:.2f} s "
                     f"(load data {load_s:.2f}, load kernels {compile_s:.2f}, interpreter, imports, config, model "
                     f"and run folder {first_s - load_s - compile_s:.2f}) | ≤ 1.5 s: "
                     f"{'pass' if first_s <= 1.5 else 'FAIL'} |")
    else:
        lines.append(f"| warm first step | failed: {next(r['error'] for r in warm if 'error' in r)} | |")
    for case in cold_cases:
        with tempfile.TemporaryDirectory(prefix="nnctl-cold-cache-") as cold:
            # An empty kernel cache, but the usual dataset cache (IMDB's token cache is not what we time).
            env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
            env.update(NNCTL_CACHE_DIR=cold, NNCTL_DATASETS_CACHE=str(cache_dir()))
            result = run_nnctl(case, 1, runs_dir, env, quiet=False)
        if "error" in result:
            lines.append(f"| cold cache: {case.key} compile step | failed: {result['error']} | |")
            continue
        manifest = result["manifest"]
        reported = next((line for line in result["stdout"].splitlines() if "compiling kernels" in line), None)
        seconds = manifest["compile_seconds"]
        lines.append(f"| cold cache: `nnctl train configs/{case.config.name} --set epochs=1` compile step "
                     f"({manifest['kernels_compiled']} kernels; whole command {result['wall_s']:.1f} s) "
                     f"| {seconds:.2f} s, printed: {reported!r} | ≤ 5 s and reported: "
                     f"{'pass' if seconds <= 5 and reported else 'FAIL'} |")
    return lines


# ---- driver -----------------------------------------------------------------------------------------

def parse_epochs(text: str | None, keys: list[str]) -> dict:
    if not text:
        return {}
    parts = [part.strip() for part in text.split(",") if part.strip()]
    pairs = {key: text for key in keys} if text.strip().isdigit() else dict(
        part.split("=", 1) if "=" in part else ("", part) for part in parts)
    unknown = [k for k in pairs if k not in CASES]
    if unknown or not all(v.isdigit() and int(v) > 1 for v in pairs.values()):
        raise ValueError(f"`--epochs-override` takes N or KEY=N,… with N ≥ 2 and KEY in {', '.join(CASES)}; "
                         f"got {text!r}")
    return {k: int(v) for k, v in pairs.items()}


def check_data(cases: list[BookCase]) -> str | None:
    """A message when a dataset file is not on this machine (the benchmark never downloads)."""
    from nnctl.data.builtin import cache_status
    from nnctl.data.fetch import data_dirs

    missing = sorted({name for case in cases for name, where in cache_status(case.dataset)
                      if where is None and not name.endswith(".tokens.npz")})
    if not missing:
        return None
    looked = ", ".join(str(d) for d in data_dirs())
    return (f"dataset file(s) {', '.join(missing)} not found (looked in {looked}); set NNCTL_DATA_DIR to the "
            f"folder of Keras's dataset files, e.g. NNCTL_DATA_DIR=../shared/datasets")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="A B rounds per config (default 5)")
    parser.add_argument("--configs", default=",".join(CASES), help=f"comma list of {', '.join(CASES)}")
    parser.add_argument("--load", nargs="?", const="on", default="off", choices=["off", "on", "both"],
                        help="run the table with a busy process on one core (`--load both`: plain table too)")
    parser.add_argument("--torch-threads", type=int, help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--epochs-override", help="N, or KEY=N,… (both sides; default: each config's epochs)")
    parser.add_argument("--torch-kfold-epochs", type=int, default=25,
                        help="epochs per fold of the torch K-fold twin (default 25; 0: the config's 500, "
                             "about 2.5 min a run)")
    parser.add_argument("--skip-startup", action="store_true", help="leave out the start-up measurements")
    args = parser.parse_args(argv)
    keys = [k.strip() for k in args.configs.split(",") if k.strip()]
    if not keys or any(k not in CASES for k in keys):
        parser.error(f"`--configs` takes a comma list of {', '.join(CASES)}; got {args.configs!r}")
    if args.rounds < 1:
        parser.error("`--rounds` must be ≥ 1")
    try:
        overrides = parse_epochs(args.epochs_override, keys)
    except ValueError as err:
        parser.error(str(err))
    cases = [CASES[k] for k in keys]
    missing = check_data(cases)
    if missing:
        print(f"error: {missing}", file=sys.stderr)
        return 2

    with_torch = importlib.util.find_spec("torch") is not None
    if not with_torch:
        print(f"PyTorch is not installed, so only nnctl runs. For the comparison install the extra:\n"
              f"    {BENCH_EXTRA_HINT}\n")

    def epochs_for(case):
        return overrides.get(case.key)

    def torch_epochs_for(case):
        if case.key == "boston_kfold" and args.torch_kfold_epochs and case.key not in overrides:
            return args.torch_kfold_epochs
        return overrides.get(case.key)

    print("\n".join(machine_description(with_torch)))
    source_state = nnctl_source_state()
    print(source_state)
    print(f"nnctl command: {' '.join(nnctl_launcher())}; torch threads: {args.torch_threads or 'torch default'}; "
          f"rounds {args.rounds}; load average at start {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="nnctl-bench-warm-") as warm_dir:
        for case in cases:  # fills the kernel cache and the page cache, untimed
            warm = run_nnctl(case, 2, warm_dir)
            if "error" in warm:
                print(f"error: the untimed warm-up of {case.key} failed: {warm['error']}", file=sys.stderr)
                return 1
    plans = {"off": [False], "on": [True], "both": [False, True]}[args.load]
    tables = {}
    for load in plans:
        tables[load] = run_rounds(cases, args.rounds, epochs_for, torch_epochs_for, args.torch_threads,
                                  with_torch, load)
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")
    if nnctl_source_state() != source_state:
        print(f"WARNING: nnctl's sources changed during the run (now {nnctl_source_state()}): rounds may have "
              "measured different engines; run again.")
    kfold_epochs = torch_epochs_for(CASES["boston_kfold"])
    if "boston_kfold" in keys and with_torch and kfold_epochs:
        print(f"note: the torch boston_kfold twin ran {kfold_epochs} epochs per fold (`--torch-kfold-epochs`; 0 runs "
              f"the config's own count), so its total wall is not that of the whole K-fold command")
    for load, runs in tables.items():
        title = "with a busy process on one core" if load else "plain"
        print(f"\n## Steady-state epoch time, {title} (all epochs but each fit's first, over all rounds; "
              f"validation included)\n")
        print("\n".join(table(runs, cases, load, tables.get(False))))
    print("\n## Per run: same learning on both sides, and where nnctl's time goes\n")
    print("\n".join(details(tables[plans[0]], cases)))
    if not args.skip_startup:
        print("\n## Start-up (no competing load)\n", flush=True)
        with tempfile.TemporaryDirectory(prefix="nnctl-bench-startup-") as runs_dir:
            print("\n".join(startup(runs_dir, [c for c in cases if c.min_ratio is not None])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
