"""Epoch-time benchmark: nnctl's engine against PyTorch CPU eager on the book's three ch. 3 MLPs.

Synthetic data of the real shapes; every (workload, framework, round) trains in a fresh subprocess.

    python bench/engine_bench.py [--rounds 3] [--epochs N] [--workloads w1,w2,w3] [--torch-threads N]

Workloads: w1 IMDB (sparse multi-hot), w2 MNIST, w3 Boston at batch 16 and 1 (w3b16 / w3b1 pick one).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np

RESULT_MARKER = "NNCTL_BENCH_RESULT "
BENCH_EXTRA_HINT = "pip install -e .[bench]   (the `bench` extra pins torch==2.13.0 CPU)"


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    dataset: str  # key of DATASETS
    layers: tuple  # (units, activation) per Dense layer; the last activation is folded into the torch loss
    loss: str  # nnctl loss name
    metric: str  # nnctl metric name
    batch_size: int
    epochs: int  # default epoch count of a run (the first `--warmup` epochs are not timed)


WORKLOADS = {w.key: w for w in [
    Workload("w1", "W1 IMDB 10k multi-hot", "imdb", ((16, "relu"), (16, "relu"), (1, "sigmoid")),
             "binary_crossentropy", "accuracy", 512, 10),
    Workload("w2", "W2 MNIST 784", "mnist", ((512, "relu"), (10, "softmax")),
             "sparse_categorical_crossentropy", "accuracy", 128, 5),
    Workload("w3b16", "W3 Boston bs16", "boston", ((64, "relu"), (64, "relu"), (1, None)),
             "mse", "mae", 16, 60),
    Workload("w3b1", "W3 Boston bs1", "boston", ((64, "relu"), (64, "relu"), (1, None)),
             "mse", "mae", 1, 12),
]}
SELECTION_ALIASES = {"w3": ["w3b16", "w3b1"]}


# ---- synthetic data (NumPy only, seeded, so both frameworks see identical bytes) ------------------

@dataclass
class CSRArrays:
    """Multi-hot rows as CSR arrays (the layout of nnctl's CSRMatrix, without importing nnctl)."""

    indptr: np.ndarray
    indices: np.ndarray
    shape: tuple

    def rows(self, lo: int, hi: int) -> "CSRArrays":
        indptr = self.indptr[lo:hi + 1]
        return CSRArrays(indptr - indptr[0], self.indices[indptr[0]:indptr[-1]], (hi - lo, self.shape[1]))


@dataclass
class SyntheticData:
    x: np.ndarray | CSRArrays
    y: np.ndarray
    x_val: np.ndarray | CSRArrays | None = None
    y_val: np.ndarray | None = None
    sequences: list | None = None  # IMDB: the word-index lists nnctl builds its CSRMatrix from
    sequences_val: list | None = None
    summary: str = ""


def imdb_like(seed: int = 0) -> SyntheticData:
    """25,000 reviews of Zipf-distributed word indices (Keras layout: 1 = start, words from 3), 15k/10k split.

    The label is learnable: each word carries a random ±1 vote and a review is positive when its distinct
    words' votes sum above the median.
    """
    rng = np.random.default_rng(seed)
    width, n_train, n_val = 10_000, 15_000, 10_000
    n = n_train + n_val
    ranks = np.arange(1, width - 2)
    zipf = 1.0 / ranks
    # Lognormal lengths (median 185 tokens) give ~140 distinct indices per row, as the real IMDB has.
    lengths = np.clip(rng.lognormal(np.log(185), 0.6, n).astype(np.int64), 20, 2000)
    tokens = rng.choice(len(ranks), size=int(lengths.sum()), p=zipf / zipf.sum()) + 3
    sequences = [np.concatenate(([1], s)) for s in np.split(tokens, np.cumsum(lengths)[:-1])]
    distinct = [np.unique(s) for s in sequences]
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum([len(r) for r in distinct], out=indptr[1:])
    csr = CSRArrays(indptr, np.concatenate(distinct).astype(np.int32), (n, width))
    votes = rng.choice(np.array([-1.0, 1.0]), size=width)
    score = np.add.reduceat(votes[csr.indices], indptr[:-1]) + rng.uniform(-0.49, 0.49, n)  # jitter breaks ties
    y = (score > np.median(score)).astype(np.float32).reshape(-1, 1)
    nnz_per_row = np.diff(indptr)
    summary = (f"{nnz_per_row.mean():.0f} distinct indices per row (min {nnz_per_row.min()}, "
               f"max {nnz_per_row.max()}), {100 * nnz_per_row.mean() / width:.2f} % non-zero, "
               f"{100 * y.mean():.1f} % positive")
    return SyntheticData(csr.rows(0, n_train), y[:n_train], csr.rows(n_train, n), y[n_train:],
                         sequences[:n_train], sequences[n_train:], summary)


def mnist_like(seed: int = 0) -> SyntheticData:
    """60,000 × 784 float32 in [0, 1], ~19 % non-zero like MNIST; labels from a random linear teacher."""
    rng = np.random.default_rng(seed)
    n, width, chunk = 60_000, 784, 10_000
    x = np.empty((n, width), np.float32)
    for lo in range(0, n, chunk):  # in chunks, so temporaries do not inflate the peak RSS we measure
        block = rng.random((chunk, width), dtype=np.float32)
        block *= rng.random((chunk, width), dtype=np.float32) < 0.19
        x[lo:lo + chunk] = block
    teacher = rng.standard_normal((width, 10)).astype(np.float32)
    y = np.argmax(x @ teacher - x.mean(axis=0) @ teacher, axis=1).astype(np.int64)
    counts = np.bincount(y, minlength=10)
    return SyntheticData(x, y, summary=f"{100 * np.count_nonzero(x) / x.size:.1f} % non-zero pixels, "
                                       f"class sizes {counts.min()}–{counts.max()}")


def boston_like(seed: int = 0) -> SyntheticData:
    """404 × 13 standardized features; a smooth non-linear price target with Boston's mean and spread."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((404, 13)).astype(np.float32)
    a, b = rng.standard_normal(13), rng.standard_normal(13) / np.sqrt(13)
    signal = x @ a + 2.0 * np.tanh(x @ b) * (x[:, 0] > 0) + 0.3 * rng.standard_normal(404)
    y = (22.5 + 9.2 * (signal - signal.mean()) / signal.std()).astype(np.float32).reshape(-1, 1)
    return SyntheticData(x, y, summary=f"target mean {y.mean():.1f}, std {y.std():.1f}")


DATASETS = {"imdb": imdb_like, "mnist": mnist_like, "boston": boston_like}


# ---- workers: one framework, one workload, one process ---------------------------------------------

def current_rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def process_cpu_s() -> float:
    return time.process_time()  # all threads, ns resolution (os.times ticks at 10 ms: too coarse for W3)


def openblas_info() -> str:
    """NumPy's OpenBLAS core and thread count, read through ctypes (threadpoolctl may be absent)."""
    import ctypes

    with open("/proc/self/maps") as maps:
        paths = sorted({line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line})
    for path in paths:
        lib = ctypes.CDLL(path)
        for prefix, suffix in (("scipy_openblas_", "64_"), ("openblas_", "64_"), ("openblas_", "")):
            threads = getattr(lib, f"{prefix}get_num_threads{suffix}", None)
            corename = getattr(lib, f"{prefix}get_corename{suffix}", None)
            if threads is not None and corename is not None:
                corename.restype = ctypes.c_char_p
                return f"OpenBLAS core {corename().decode()}, {threads()} threads"
    return "OpenBLAS not found in this process"


def train_nnctl(work: Workload, data: SyntheticData, epochs: int) -> dict:
    from nnctl.engine import settings
    from nnctl.engine.csr import CSRMatrix
    from nnctl.nn import fastpath
    from nnctl.nn.callbacks import Callback
    from nnctl.nn.layers import Dense
    from nnctl.nn.model import Sequential

    class EpochCPUTime(Callback):
        """Process CPU seconds per epoch: above 1 per wall second means more than one busy thread."""

        def __init__(self):
            self.cpu_s = []

        def on_epoch_begin(self, epoch, logs=None):
            self.started = process_cpu_s()

        def on_epoch_end(self, epoch, logs=None):
            self.cpu_s.append(process_cpu_s() - self.started)

    x, x_val = data.x, data.x_val
    if data.sequences is not None:
        x = CSRMatrix.from_sequences(data.sequences, data.x.shape[1])
        x_val = CSRMatrix.from_sequences(data.sequences_val, data.x.shape[1])
        # Guards the claim that both frameworks train on the same bytes.
        assert np.array_equal(x.indptr, data.x.indptr) and np.array_equal(x.indices, data.x.indices)
    model = Sequential([Dense(units, activation=act) for units, act in work.layers],
                       input_shape=(x.shape[1],), seed=0)
    model.compile(optimizer={"type": "rmsprop", "learning_rate": 1e-3}, loss=work.loss, metrics=[work.metric])
    validation = (x_val, data.y_val) if x_val is not None else None
    cpu_time = EpochCPUTime()
    history = model.fit(x, data.y, epochs=epochs, batch_size=work.batch_size, validation_data=validation,
                        callbacks=[cpu_time])
    return {
        "epoch_s": history["epoch_time"], "loss": history["loss"], "metric": history[work.metric],
        "val_loss": history.get("val_loss"), "val_metric": history.get(f"val_{work.metric}"),
        "epoch_cpu_s": cpu_time.cpu_s,
        "engine_path": "fused epoch loop" if fastpath.eligible(model, work.batch_size, not isinstance(x, np.ndarray)) else "layer by layer",
        "threads": f"{openblas_info()}; Numba kernels 1 thread, big sparse products split over up to {settings.thread_count()}",
    }


def train_torch(work: Workload, data: SyntheticData, epochs: int, threads: int | None) -> dict:
    """The book's model as a PyTorch user writes it: nn.Sequential, logits + fused loss, index batching."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    modules, width = [], data.x.shape[1]
    for units, act in work.layers:
        linear = torch.nn.Linear(width, units)
        torch.nn.init.xavier_uniform_(linear.weight)  # Keras's glorot_uniform / zeros, so losses are comparable
        torch.nn.init.zeros_(linear.bias)
        modules += [linear, torch.nn.ReLU()] if act == "relu" else [linear]
        width = units
    model = torch.nn.Sequential(*modules)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)  # Keras rho / epsilon
    loss_fn = {"binary_crossentropy": torch.nn.BCEWithLogitsLoss(),
               "sparse_categorical_crossentropy": torch.nn.CrossEntropyLoss(),
               "mse": torch.nn.MSELoss()}[work.loss]

    def metric_sum(out, target):
        if work.loss == "binary_crossentropy":
            return ((out > 0).float() == target).sum().item()
        if work.loss == "sparse_categorical_crossentropy":
            return (out.argmax(dim=1) == target).sum().item()
        return (out - target).abs().sum().item()

    def batch_inputs(x, rows):
        """Dense float32 rows; CSR rows are densified here, inside the timed epoch."""
        if not isinstance(x, CSRArrays):
            return x[rows]
        starts, stops = x.indptr[rows], x.indptr[rows + 1]
        lengths = stops - starts
        # Positions of each row's non-zeros in x.indices, concatenated: start + 0..length-1 per row.
        offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
        dense = torch.zeros(len(rows), x.shape[1])
        dense[torch.from_numpy(np.repeat(np.arange(len(rows)), lengths)),
              torch.from_numpy(x.indices[offsets].astype(np.int64))] = 1.0
        return dense

    x = data.x if isinstance(data.x, CSRArrays) else torch.from_numpy(data.x)
    y = torch.from_numpy(data.y)
    n, bs = len(data.y), work.batch_size
    shuffle_rng = np.random.default_rng(0)
    history = {"epoch_s": [], "epoch_cpu_s": [], "loss": [], "metric": [], "val_loss": [], "val_metric": []}
    for _ in range(epochs):
        start, cpu_start = time.perf_counter(), process_cpu_s()
        model.train()
        order = shuffle_rng.permutation(n)
        loss_sum = metric_total = 0.0
        for lo in range(0, n, bs):
            rows = order[lo:lo + bs]
            index = torch.from_numpy(rows)
            xb, yb = batch_inputs(x, rows if isinstance(x, CSRArrays) else index), y[index]
            optimizer.zero_grad(set_to_none=True)
            out = model(xb)
            loss = loss_fn(out, yb)
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(rows)
            metric_total += metric_sum(out.detach(), yb)
        history["loss"].append(loss_sum / n)
        history["metric"].append(metric_total / n)
        if data.x_val is not None:
            model.eval()
            val_loss = val_metric = 0.0
            y_val, n_val = torch.from_numpy(data.y_val), len(data.y_val)
            with torch.no_grad():
                for lo in range(0, n_val, bs):
                    rows = np.arange(lo, min(n_val, lo + bs))
                    out = model(batch_inputs(data.x_val, rows))
                    val_loss += loss_fn(out, y_val[lo:lo + bs]).item() * len(rows)
                    val_metric += metric_sum(out, y_val[lo:lo + bs])
            history["val_loss"].append(val_loss / n_val)
            history["val_metric"].append(val_metric / n_val)
        history["epoch_s"].append(time.perf_counter() - start)
        history["epoch_cpu_s"].append(process_cpu_s() - cpu_start)
    history.update(
        val_loss=history["val_loss"] or None, val_metric=history["val_metric"] or None,
        engine_path="eager", threads=f"torch intra-op {torch.get_num_threads()} threads")
    return history


def run_worker(framework: str, key: str, epochs: int, torch_threads: int | None) -> None:
    """Generates the data before importing the framework, so RSS 'after data' is the same for both."""
    work = WORKLOADS[key]
    data = DATASETS[work.dataset]()
    rss_data = current_rss_mb()
    if framework == "nnctl":
        result = train_nnctl(work, data, epochs)
    else:
        result = train_torch(work, data, epochs, torch_threads)
    result.update(framework=framework, workload=key, rss_after_data_mb=rss_data, peak_rss_mb=peak_rss_mb(),
                  data_summary=data.summary)
    print(RESULT_MARKER + json.dumps(result), flush=True)


# ---- driver: rounds of fresh subprocesses, then the tables ---------------------------------------

def machine_description(torch_available: bool) -> list[str]:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas_text = f"{blas['name']} {blas['version']}"
    except Exception:  # show_config's dict layout is not a stable API; the version line is optional
        blas_text = "unknown"
    versions = [f"python {platform.python_version()}", f"numpy {np.__version__}",
                f"numba {importlib.metadata.version('numba')}"]
    versions.append(f"torch {importlib.metadata.version('torch')}" if torch_available else "torch not installed")
    usable = len(os.sched_getaffinity(0))
    return [f"CPU: {cpu}, {os.cpu_count()} logical cores ({usable} usable by this process)",
            f"numpy BLAS: {blas_text}; {openblas_info()}",
            "versions: " + ", ".join(versions)]


def nnctl_source_state() -> str:
    """The commit and a digest of nnctl's sources: others edit nnctl while benchmarks run, and a change
    mid-run (new kernels, a recompile) would silently mix two engines in one table."""
    package_dir = importlib.util.find_spec("nnctl").submodule_search_locations[0]
    digest = hashlib.sha256()
    for folder, _, files in sorted(os.walk(package_dir)):
        for name in sorted(f for f in files if f.endswith(".py")):
            with open(os.path.join(folder, name), "rb") as source:
                digest.update(name.encode() + source.read())
    try:
        commit = subprocess.run(["git", "-C", package_dir, "describe", "--always", "--dirty"], capture_output=True,
                                text=True, timeout=10).stdout.strip() or "no git"
    except (OSError, subprocess.SubprocessError):
        commit = "no git"
    return f"nnctl {commit}, sources sha256 {digest.hexdigest()[:12]}"


def worker_env(framework: str) -> dict:
    """nnctl workers run with the defaults the `nnctl` command gives itself (nnctl/cli.py): BLAS on one thread
    and Numba without scipy.linalg, unless the caller set them. Torch workers get the environment as it is."""
    env = dict(os.environ)
    if framework == "nnctl":
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
        env.setdefault("NNCTL_NUMBA_SCIPY", "0")
    return env


def launch(framework: str, key: str, epochs: int, torch_threads: int | None) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--worker", framework, "--workloads", key,
               "--epochs", str(epochs)]
    if torch_threads:
        command += ["--torch-threads", str(torch_threads)]
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=worker_env(framework))
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_MARKER):
            result = json.loads(line[len(RESULT_MARKER):])
            result["process_s"] = time.perf_counter() - started
            return result
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-8:]
    return {"framework": framework, "workload": key, "error": f"exit code {proc.returncode}: " + " | ".join(tail)}


def format_ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.1f}" if ms >= 1 else f"{ms:.3f}"


def steady(results: list[dict], warmup: int) -> list[float]:
    return [t for r in results for t in r["epoch_s"][warmup:]]


def cpu_per_wall(results: list[dict], warmup: int) -> float:
    cpu = sum(c for r in results for c in r["epoch_cpu_s"][warmup:])
    return cpu / max(sum(steady(results, warmup)), 1e-12)


def summarize(cases: list[str], frameworks: list[str], runs: dict, warmup: int) -> list[str]:
    lines = ["| workload | nnctl median [min–max] ms | torch median [min–max] ms | torch / nnctl "
             "| nnctl peak RSS MB | torch peak RSS MB |", "|---|---|---|---|---|---|"]
    for key in cases:
        cells, medians, rss = [], {}, {}
        for framework in ("nnctl", "torch"):
            good = [r for r in runs.get((key, framework), []) if "error" not in r]
            if framework not in frameworks or not good:
                cells.append("—" if framework not in frameworks else "failed")
                rss[framework] = "—"
                continue
            times = steady(good, warmup)
            medians[framework] = statistics.median(times)
            cells.append(f"{format_ms(medians[framework])} [{format_ms(min(times))}–{format_ms(max(times))}]")
            rss[framework] = f"{max(r['peak_rss_mb'] for r in good):.0f}"
        ratio = f"{medians['torch'] / medians['nnctl']:.2f}×" if len(medians) == 2 else "—"
        lines.append(f"| {WORKLOADS[key].title} | {cells[0]} | {cells[1]} | {ratio} | {rss['nnctl']} | {rss['torch']} |")
    return lines


def details(cases: list[str], frameworks: list[str], runs: dict, warmup: int) -> list[str]:
    lines = ["| workload | framework | engine path | per-round medians ms | first epoch ms | final loss "
             "| final metric | final val loss / metric | CPU s per wall s (timed epochs) | RSS after data MB | process s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for key in cases:
        work = WORKLOADS[key]
        for framework in frameworks:
            good = [r for r in runs[key, framework] if "error" not in r]
            if not good:
                continue
            last = good[-1]
            per_round = ", ".join(format_ms(statistics.median(r["epoch_s"][warmup:])) for r in good)
            first = ", ".join(format_ms(r["epoch_s"][0]) for r in good)
            val = (f"{last['val_loss'][-1]:.4f} / {last['val_metric'][-1]:.4f}" if last.get("val_loss") else "—")
            lines.append(
                f"| {work.title} | {framework} | {last['engine_path']} | {per_round} | {first} "
                f"| {last['loss'][-1]:.4f} | {work.metric} {last['metric'][-1]:.4f} | {val} "
                f"| {cpu_per_wall(good, warmup):.2f} "
                f"| {last['rss_after_data_mb']:.0f} | {statistics.median(r['process_s'] for r in good):.1f} |")
    return lines


def selected_cases(text: str) -> list[str]:
    cases = []
    for name in (part.strip().lower() for part in text.split(",") if part.strip()):
        expanded = SELECTION_ALIASES.get(name, [name])
        unknown = [k for k in expanded if k not in WORKLOADS]
        if unknown:
            allowed = ", ".join([*WORKLOADS, *SELECTION_ALIASES])
            raise ValueError(f"unknown workload `{name}` (allowed: {allowed})")
        cases += [k for k in expanded if k not in cases]
    return cases


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="A B rounds per workload (default 3)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs per run for every workload (default: per workload, "
                             + ", ".join(f"{w.key} {w.epochs}" for w in WORKLOADS.values()) + ")")
    parser.add_argument("--warmup", type=int, default=1, help="leading epochs left out of the timings (default 1)")
    parser.add_argument("--workloads", default="w1,w2,w3", help="comma list of w1, w2, w3 (= w3b16,w3b1), w3b16, w3b1")
    parser.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--worker", choices=["nnctl", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        cases = selected_cases(args.workloads)
    except ValueError as err:
        parser.error(str(err))
    if args.worker:
        run_worker(args.worker, cases[0], args.epochs or WORKLOADS[cases[0]].epochs, args.torch_threads)
        return
    if args.rounds < 1 or args.warmup < 0 or (args.epochs is not None and args.epochs <= args.warmup):
        parser.error("`--rounds` must be ≥ 1 and `--epochs` greater than `--warmup`")

    torch_available = importlib.util.find_spec("torch") is not None
    frameworks = ["nnctl", "torch"] if torch_available else ["nnctl"]
    if not torch_available:
        print(f"PyTorch is not installed, so only nnctl runs. For the comparison install the extra:\n"
              f"    {BENCH_EXTRA_HINT}\n")
    print("\n".join(machine_description(torch_available)))
    source_state = nnctl_source_state()
    print(source_state)
    print(f"torch threads: {args.torch_threads or 'torch default'}; rounds {args.rounds}; "
          f"first {args.warmup} epoch(s) of each run not timed; load average at start "
          f"{os.getloadavg()[0]:.2f}\n", flush=True)

    runs = {(key, framework): [] for key in cases for framework in frameworks}
    data_summaries = {}
    for round_index in range(args.rounds):
        for key in cases:
            epochs = args.epochs or WORKLOADS[key].epochs
            for framework in frameworks:  # A B, A B, ...: drift in machine load hits both alike
                result = launch(framework, key, epochs, args.torch_threads)
                runs[key, framework].append(result)
                if "error" in result:
                    print(f"round {round_index + 1} {key} {framework}: FAILED {result['error']}", flush=True)
                    continue
                data_summaries[WORKLOADS[key].dataset] = result["data_summary"]
                print(f"round {round_index + 1} {key:5s} {framework:5s}: median epoch "
                      f"{format_ms(statistics.median(result['epoch_s'][args.warmup:]))} ms, "
                      f"final loss {result['loss'][-1]:.4f}, peak RSS {result['peak_rss_mb']:.0f} MB", flush=True)

    print(f"\nload average at end {os.getloadavg()[0]:.2f}")
    if nnctl_source_state() != source_state:
        print(f"WARNING: nnctl's sources changed during the run (now {nnctl_source_state()}): "
              "rounds may have measured different engines; run again.")
    for name, summary in data_summaries.items():
        print(f"data {name}: {summary}")
    for framework in frameworks:
        threads = next((r["threads"] for results in runs.values() for r in results
                        if r.get("framework") == framework and "threads" in r), "no successful run")
        print(f"threads {framework}: {threads}")
    print("\n## Steady-state epoch time (median of all timed epochs over all rounds)\n")
    print("\n".join(summarize(cases, frameworks, runs, args.warmup)))
    print("\n## Per run: learning check and where the time goes\n")
    print("\n".join(details(cases, frameworks, runs, args.warmup)))
    print("\nfinal loss / metric: last epoch of the last round (training set); epoch times include the training "
          "metric, and validation where the workload has it (W1). nnctl 'first epoch' includes JIT compilation "
          "or loading cached kernels.")


if __name__ == "__main__":
    main()
