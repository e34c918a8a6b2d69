"""The PyTorch twin's side of the fidelity check: a book config over seeds, best validation and test metric means.

    NNCTL_DATA_DIR=../shared/datasets python bench/torch_fidelity.py configs/imdb_embedding.yaml [--seeds 0-6]
        [--threads N] [--epochs N] [--max-rows N]

Each seed is a fresh `torch_book.py` process with `--seed`, so the config's split follows the seed as in
tests/fidelity/test_book_results.py, which holds nnctl to the same recipes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from torch_book import RESULT_MARKER

TORCH_BOOK = Path(__file__).resolve().parent / "torch_book.py"


def parse_seeds(text: str) -> list[int]:
    """`0-6` or `0,3,5`."""
    if "-" in text:
        first, last = text.split("-", 1)
        return list(range(int(first), int(last) + 1))
    return [int(part) for part in text.split(",") if part.strip()]


def run_seed(config: str, seed: int, threads: int | None, epochs: int | None, max_rows: int | None = None) -> dict:
    command = [sys.executable, str(TORCH_BOOK), config, "--seed", str(seed)]
    command += (["--threads", str(threads)] if threads else []) + (["--epochs", str(epochs)] if epochs else [])
    command += ["--max-rows", str(max_rows)] if max_rows else []
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_MARKER)]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"seed {seed} failed: {(done.stderr or done.stdout).strip().splitlines()[-3:]}")
    return json.loads(lines[-1][len(RESULT_MARKER):])


def summary(name: str, values: list[float]) -> str:
    return (f"{name}: {', '.join(f'{v:.4f}' for v in values)} → mean {statistics.fmean(values):.4f} "
            f"[{min(values):.4f}–{max(values):.4f}]")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("--seeds", default="0-6", help="a range `0-6` or a list `0,3,5` (default 0-6)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--epochs", type=int, help="override the config's epochs")
    parser.add_argument("--max-rows", type=int, help="a smoke check: the first N rows of each split only")
    args = parser.parse_args(argv)
    results = []
    for seed in parse_seeds(args.seeds):
        results.append(run_seed(args.config, seed, args.threads, args.epochs, args.max_rows))
        print(f"seed {seed}: best {results[-1]['best']}, test {results[-1]['test']}", flush=True)
    metric = results[0]["metric"]
    if results[0]["best"]:
        print(summary(f"best val_{metric}", [r["best"][f"val_{metric}"] for r in results]))
    if results[0]["test"]:
        print(summary(f"test {metric}", [r["test"][metric] for r in results]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
