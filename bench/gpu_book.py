"""The book's configs on `device: cuda` (issue #20), through `nnctl train` as a user runs it:

1. agreement: a config trained on the CPU and on the GPU with the same seed, epoch by epoch (the largest
   difference in each history figure and in the test figures);
2. fidelity: tests/fidelity/test_book_results.py's recipes, seeds and bars on the GPU — each seed's figure as
   it comes, then the means with ranges.

Jobs run as subprocesses, WORKERS at a time, until --deadline seconds have passed (a job still running then is
stopped and reported as such), so a lease that ends early still leaves every finished figure in the log.

    NNCTL_DATA_DIR=… python bench/gpu_book.py [--workers 4] [--deadline 600] [--only agree|fidelity] [--log F]
        [--configs imdb_lstm.yaml,…] [--seeds N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEVEN, THREE = tuple(range(7)), tuple(range(3))
# (config, overrides) trained on both devices with the config's own seed.
AGREE = [("imdb.yaml", ["epochs=3"]), ("boston.yaml", []), ("mnist_convnet.yaml", ["epochs=1"]),
         ("imdb_lstm.yaml", ["epochs=1"])]
# (config, figure, bar, seeds): "test:M" is the test metric M, "best_val" the best validation accuracy; the
# bars and seeds are tests/fidelity/test_book_results.py's (fixed beforehand, the CPU's own).
FIDELITY = [("imdb_final.yaml", "test:accuracy", 0.880, SEVEN), ("reuters.yaml", "test:accuracy", 0.780, SEVEN),
            ("mnist.yaml", "test:accuracy", 0.975, SEVEN), ("boston.yaml", "test:mae", 2.70, SEVEN),
            ("imdb_embedding.yaml", "best_val", 0.750, SEVEN), ("imdb_lstm.yaml", "best_val", 0.875, THREE),
            ("mnist_convnet.yaml", "test:accuracy", 0.988, SEVEN),
            ("imdb_simple_rnn.yaml", "best_val", 0.84, THREE), ("imdb_conv1d.yaml", "best_val", 0.83, THREE)]

_LOCK = threading.Lock()


def say(line: str, log) -> None:
    with _LOCK:
        print(line, flush=True)
        if log:
            log.write(line + "\n")
            log.flush()


def train(config: str, overrides: list[str], device: str, runs: Path, seconds_left: float) -> dict:
    """One `nnctl train`; its history, test figures and wall time, or why it gave none."""
    command = [sys.executable, "-m", "nnctl", "train", str(ROOT / "configs" / config), "--device", device, "-q",
               "--runs-dir", str(runs)] + [part for o in overrides for part in ("--set", o)]
    began = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=max(seconds_left, 1))
    except subprocess.TimeoutExpired:
        return {"error": "stopped at the deadline"}
    wall = time.perf_counter() - began
    lines = [line for line in done.stdout.splitlines() if line.startswith("run: ")]
    if done.returncode or not lines:
        return {"error": f"exit {done.returncode}: {(done.stderr or done.stdout).strip()[-600:]}"}
    folder = Path(lines[-1][5:])
    folder = folder if folder.is_absolute() else Path.cwd() / folder
    metrics = json.loads((folder / "metrics.json").read_text())
    return {"history": json.loads((folder / "history.json").read_text()), "test": metrics.get("test") or {},
            "wall_s": wall}


def figure_of(result: dict, figure: str) -> float:
    return result["test"][figure[5:]] if figure.startswith("test:") else max(result["history"]["val_accuracy"])


def agree(config, overrides, runs, deadline, log) -> None:
    sides = {device: train(config, overrides, device, runs, deadline - time.monotonic()) for device in ("cpu", "cuda")}
    if any("error" in side for side in sides.values()):
        say(f"agree {config} {overrides}: " + "; ".join(f"{d}: {s['error']}" for d, s in sides.items() if "error" in s),
            log)
        return
    cpu, gpu = sides["cpu"], sides["cuda"]
    worst = {key: max(abs(a - b) for a, b in zip(cpu["history"][key], gpu["history"][key]))
             for key in cpu["history"] if isinstance(cpu["history"][key], list) and key in gpu["history"]}
    worst.update({f"test_{key}": abs(cpu["test"][key] - gpu["test"][key]) for key in cpu["test"]
                  if key != "samples" and key in gpu["test"]})
    epochs = len(cpu["history"].get("loss", []))
    say(f"agree {config} {' '.join(overrides)} ({epochs} epochs, cpu {cpu['wall_s']:.1f} s, "
        f"cuda {gpu['wall_s']:.1f} s): largest |cpu - cuda| "
        + ", ".join(f"{k} {v:.2e}" for k, v in worst.items()), log)


def fidelity(config, figure, seed, runs, deadline, log, results) -> None:
    result = train(config, [f"seed={seed}"], "cuda", runs, deadline - time.monotonic())
    if "error" in result:
        say(f"fidelity {config} seed {seed}: {result['error']}", log)
        return
    value = figure_of(result, figure)
    with _LOCK:
        results.setdefault(config, {})[seed] = value
    say(f"fidelity {config} seed {seed}: {figure} {value:.4f} ({result['wall_s']:.1f} s)", log)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--deadline", type=float, default=600.0, help="seconds from start (default 600)")
    parser.add_argument("--only", choices=("agree", "fidelity"))
    parser.add_argument("--log", help="append each line to this file too")
    parser.add_argument("--configs", help="fidelity for these configs only (comma-separated file names)")
    parser.add_argument("--seeds", type=int, help="fidelity over the first SEEDS of each config's seeds only")
    args = parser.parse_args()
    deadline = time.monotonic() + args.deadline
    log = open(args.log, "a", encoding="utf-8") if args.log else None
    results: dict = {}
    with tempfile.TemporaryDirectory() as scratch, ThreadPoolExecutor(args.workers) as pool:
        runs = Path(scratch)
        jobs = [] if args.only == "fidelity" else [(agree, (c, o, runs, deadline, log)) for c, o in AGREE]
        if args.only != "agree":
            chosen = [(c, f, seeds[:args.seeds]) for c, f, _, seeds in FIDELITY
                      if not args.configs or c in args.configs.split(",")]
            jobs += [(fidelity, (c, f, s, runs, deadline, log, results)) for c, f, seeds in chosen for s in seeds]
        for future in [pool.submit(lambda job=job: time.monotonic() < deadline and job[0](*job[1])) for job in jobs]:
            future.result()
    for config, figure, bar, seeds in FIDELITY:
        values = [results.get(config, {})[s] for s in seeds if s in results.get(config, {})]
        if not values:
            continue
        mean = statistics.fmean(values)
        met = mean <= bar if figure == "test:mae" else mean >= bar
        say(f"{config}: {figure} mean {mean:.4f} [{min(values):.4f}–{max(values):.4f}] over seeds "
            f"{sorted(s for s in seeds if s in results[config])} of {list(seeds)}; bar "
            f"{'≤' if figure == 'test:mae' else '≥'} {bar}: {'met' if met else 'NOT met'}", log)


if __name__ == "__main__":
    main()
