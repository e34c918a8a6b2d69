"""The book benchmark: each book config through the real `nnctl train`, then its PyTorch eager twin, A B A B ….

    NNCTL_DATA_DIR=/path/to/datasets python bench/run.py [--rounds 5]
        [--configs imdb,mnist,...,imdb_conv1d,imdb_simple_rnn,imdb_lstm,imdb_bidirectional_lstm]
        [--load [on|both]] [--torch-threads N] [--torch-flush-denormal] [--epochs-override N | imdb=N,...] [--torch-kfold-epochs N]
        [--no-torch] [--no-one-thread] [--skip-startup]

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

from book_table import SIDES, BookCase, details, steady, table
from engine_bench import BENCH_EXTRA_HINT, format_ms, machine_description, nnctl_source_state
from torch_book import RESULT_MARKER

REPO = Path(__file__).resolve().parent.parent
TORCH_BOOK = Path(__file__).resolve().parent / "torch_book.py"
RSS_LIMIT_MB = 500  # "whole-process peak RSS ≤ 0.5 GB", read as 10^6-byte megabytes
RECURRENT_RSS_LIMIT_MB = 600  # issue #17's "≤ 0.6 GB" for the recurrent configs


CASES = {c.key: c for c in [
    BookCase("imdb", REPO / "configs/imdb.yaml", "imdb", 10.0, rss_limit_mb=RSS_LIMIT_MB, max_load_growth=2.0),
    BookCase("mnist", REPO / "configs/mnist.yaml", "mnist", 2.0),
    BookCase("boston", REPO / "configs/boston.yaml", "boston_housing", 25.0),
    BookCase("boston_kfold", REPO / "configs/boston_kfold.yaml", "boston_housing", None, max_wall_s=10.0),
    # Issue #16's convnets and embeddings: 3 epochs (2 steady) unless --epochs-override; torch's 1-thread run
    # is a third side of each round.
    BookCase("mnist_convnet", REPO / "configs/mnist_convnet.yaml", "mnist", 1.5, min_ratio_one_thread=2.5,
             rss_limit_mb=RSS_LIMIT_MB, max_load_growth=2.2, epochs=3, max_compile_s=10.0),
    BookCase("imdb_embedding", REPO / "configs/imdb_embedding.yaml", "imdb", 10.0, max_load_growth=2.2,
             max_compile_s=10.0),
    BookCase("imdb_conv1d", REPO / "configs/imdb_conv1d.yaml", "imdb", 1.3, min_ratio_one_thread=2.5,
             max_load_growth=2.2, epochs=3, max_compile_s=10.0),
    # Issue #17's recurrent layers: targets against torch on its default threads only, 3 epochs (2 steady).
    BookCase("imdb_simple_rnn", REPO / "configs/imdb_simple_rnn.yaml", "imdb", 4.0,
             rss_limit_mb=RECURRENT_RSS_LIMIT_MB, max_load_growth=2.2, epochs=3, max_compile_s=10.0),
    BookCase("imdb_lstm", REPO / "configs/imdb_lstm.yaml", "imdb", 2.5, rss_limit_mb=RECURRENT_RSS_LIMIT_MB,
             max_load_growth=2.2, epochs=3, max_compile_s=10.0),
    BookCase("imdb_bidirectional_lstm", REPO / "configs/imdb_bidirectional_lstm.yaml", "imdb", 2.5,
             rss_limit_mb=RECURRENT_RSS_LIMIT_MB, max_load_growth=2.2, epochs=3, max_compile_s=10.0),
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
    metrics = run / "metrics.json"
    test = json.loads(metrics.read_text()).get("test") if metrics.exists() else None
    return {"epoch_s": [h["epoch_time"] for h in histories], "final": final_figures(histories),
            "best": best_figures(histories), "test": test,
            "manifest": json.loads((run / "manifest.json").read_text()), "wall_s": done.wall_s,
            "launched_at": done.launched_at,
            "peak_rss_mb": done.peak_rss_mb, "stdout": done.stdout}


TORCH_OPTIONS: list[str] = []  # --torch-flush-denormal adds torch_book.py's --flush-denormal


def run_torch(case: BookCase, epochs: int | None, threads: int | None) -> dict:
    command = [sys.executable, str(TORCH_BOOK), str(case.config)]
    command += (["--epochs", str(epochs)] if epochs else []) + (["--threads", str(threads)] if threads else [])
    command += TORCH_OPTIONS
    done = run_child(command)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_MARKER)]
    if done.returncode != 0 or not lines:
        return {"error": done.failure()}
    return {**json.loads(lines[-1][len(RESULT_MARKER):]), "wall_s": done.wall_s, "peak_rss_mb": done.peak_rss_mb}


def final_figures(histories: list[dict]) -> dict:
    """Last epoch's figures (mean over K-fold folds), the same keys torch_book.py reports."""
    keys = [k for k in histories[0] if k not in ("epoch_time", "lr")]
    return {k: statistics.fmean(h[k][-1] for h in histories) for k in keys}


def best_figures(histories: list[dict]) -> dict:
    """The best epoch's validation metric (mean over K-fold folds), as torch_book.py's `best`."""
    keys = [k for k in histories[0] if k.startswith("val_") and k != "val_loss"]
    return {k: statistics.fmean((min if k == "val_mae" else max)(h[k]) for h in histories) for k in keys}


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


# ---- the rounds ------------------------------------------------------------------------------------

def run_rounds(cases, rounds, epochs_for, torch_epochs_for, torch_threads, with_torch, load: bool,
               one_thread: bool = True) -> dict:
    runs = {(c.key, side): [] for c in cases for side in SIDES}
    with busy_core(load), tempfile.TemporaryDirectory(prefix="nnctl-bench-runs-") as runs_dir:
        for index in range(rounds):
            for case in cases:  # A B, A B, …: drift in machine load hits both alike
                jobs = [("nnctl", lambda: run_nnctl(case, epochs_for(case), runs_dir))]
                if with_torch:
                    jobs.append(("torch", lambda: run_torch(case, torch_epochs_for(case), torch_threads)))
                    if one_thread and case.min_ratio_one_thread is not None and torch_threads is None:
                        jobs.append(("torch1", lambda: run_torch(case, torch_epochs_for(case), 1)))
                for side, job in jobs:
                    result = job()
                    runs[case.key, side].append(result)
                    label = f"{'load ' if load else ''}round {index + 1} {case.key:14s} {side:6s}"
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
                     f"| {seconds:.2f} s, printed: {reported!r} | ≤ {case.max_compile_s:g} s and reported: "
                     f"{'pass' if seconds <= case.max_compile_s and reported else 'FAIL'} |")
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
    parser.add_argument("--torch-flush-denormal", action="store_true",
                        help="the twins run with torch.set_flush_denormal(True), as nnctl flushes denormals "
                             "(default: torch's own IEEE denormals)")
    parser.add_argument("--epochs-override", help="N, or KEY=N,… (both sides; default: each config's epochs, 3 for "
                             "mnist_convnet, imdb_conv1d and the three recurrent configs)")
    parser.add_argument("--torch-kfold-epochs", type=int, default=25,
                        help="epochs per fold of the torch K-fold twin (default 25; 0: the config's 500, "
                             "about 2.5 min a run)")
    parser.add_argument("--skip-startup", action="store_true", help="leave out the start-up measurements")
    parser.add_argument("--no-torch", action="store_true", help="time nnctl's side only")
    parser.add_argument("--no-one-thread", action="store_true",
                        help="skip torch's 1-thread side of the configs with a 1-thread target")
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

    installed = importlib.util.find_spec("torch") is not None
    with_torch = installed and not args.no_torch
    if not installed:
        print(f"PyTorch is not installed, so only nnctl runs. For the comparison install the extra:\n"
              f"    {BENCH_EXTRA_HINT}\n")

    def epochs_for(case):
        return overrides.get(case.key, case.epochs)

    def torch_epochs_for(case):
        if case.key == "boston_kfold" and args.torch_kfold_epochs and case.key not in overrides:
            return args.torch_kfold_epochs
        return overrides.get(case.key, case.epochs)

    print("\n".join(machine_description(installed)) + ("\ntorch not run (--no-torch)" if args.no_torch else ""))
    source_state = nnctl_source_state()
    print(source_state)
    TORCH_OPTIONS[:] = ["--flush-denormal"] if args.torch_flush_denormal else []
    print(f"torch denormals: {'flushed (set_flush_denormal)' if args.torch_flush_denormal else 'torch default (kept)'}")
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
                                  with_torch, load, one_thread=not args.no_one_thread)
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")
    shortened = [f"{c.key} {epochs_for(c)}" for c in cases if c.epochs and c.key not in overrides]
    if shortened:
        print(f"note: shortened schedules (epochs per run, both sides): {', '.join(shortened)}; "
              f"`--epochs-override` changes them")
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
