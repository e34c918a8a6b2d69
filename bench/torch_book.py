"""The PyTorch 2.13 CPU eager twin of a book config, trained on the very arrays nnctl's own loaders produce.

    python bench/torch_book.py configs/imdb.yaml [--epochs N] [--threads N] [--flush-denormal] [--seed N] [--sparse-input csr|dense]
        [--max-rows N]

Prints one line `NNCTL_BENCH_RESULT {json}`: seconds per epoch of each fit, total wall, final, best validation
and test metrics. The model comes from the config's layers (bench/torch_layers.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

RESULT_MARKER = "NNCTL_BENCH_RESULT "

def current_rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


class DenseRows:
    """A float32 array of samples (channels first, as torch's layers take them) or int64 token ids; a batch is
    an index into it."""

    def __init__(self, x: np.ndarray):
        import torch

        from torch_layers import channels_first
        dtype = np.int64 if np.issubdtype(x.dtype, np.integer) else np.float32
        self.x = torch.from_numpy(np.ascontiguousarray(channels_first(x), dtype=dtype))

    def __len__(self):
        return self.x.shape[0]

    def batch(self, rows):
        return self.x[rows]


class CSRRows:
    """nnctl's CSRMatrix as torch tensors; a batch is a `torch.sparse_csr_tensor` (or its dense form)
    built inside the timed loop, since shuffled batches cannot be prepared ahead."""

    def __init__(self, csr, form: str):
        import torch
        self.indptr = torch.from_numpy(csr.indptr.astype(np.int64))
        self.indices = torch.from_numpy(csr.indices.astype(np.int64))
        self.values = torch.from_numpy(csr.values.astype(np.float32))
        self.width, self.form = csr.shape[1], form

    def __len__(self):
        return self.indptr.shape[0] - 1

    def batch(self, rows):
        import torch
        starts = self.indptr[rows]
        lengths = self.indptr[rows + 1] - starts
        crow = torch.zeros(len(rows) + 1, dtype=torch.int64)
        torch.cumsum(lengths, 0, out=crow[1:])
        # Positions of each row's non-zeros in `indices`: start + 0 .. length-1 per row, concatenated.
        positions = torch.repeat_interleave(starts - crow[:-1], lengths) + torch.arange(int(crow[-1]))
        columns, values = self.indices[positions], self.values[positions]
        if self.form == "csr":
            return torch.sparse_csr_tensor(crow, columns, values, (len(rows), self.width))
        dense = torch.zeros(len(rows), self.width)
        dense[torch.repeat_interleave(torch.arange(len(rows)), lengths), columns] = values
        return dense


def as_rows(x, form: str):
    return CSRRows(x, form) if hasattr(x, "indptr") else DenseRows(x)


def target_tensor(y: np.ndarray, loss_name: str):
    import torch
    if loss_name == "sparse_categorical_crossentropy":
        return torch.from_numpy(y.astype(np.int64))
    if loss_name == "categorical_crossentropy":  # one-hot rows: CrossEntropyLoss reads them as probabilities
        return torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))
    return torch.from_numpy(y.astype(np.float32).reshape(-1, 1))


def metric_sum(name: str, out, target):
    """The batch's sum of the config's metric (accuracy or mae), as a tensor: no sync per step."""
    if name == "mae":
        return (out - target).abs().sum()
    if out.shape[1] == 1:  # sigmoid output: probability > 0.5 is logit > 0
        return ((out > 0).float() == target).sum()
    if target.ndim == 2:  # one-hot rows
        target = target.argmax(dim=1)
    return (out.argmax(dim=1) == target).sum()


def evaluate(model, loss_fn, metric: str, rows, target, bs: int, max_rows: int | None = None) -> tuple[float, float]:
    """Mean loss and metric over `rows` (the first `max_rows` of them) in order, batch by batch, in no_grad
    (validation and test)."""
    import torch

    model.eval()
    m = min(len(rows), max_rows or len(rows))
    loss_total, metric_total = torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.float64)
    with torch.no_grad():
        for lo in range(0, m, bs):
            index = torch.arange(lo, min(m, lo + bs))
            out, yb = model(rows.batch(index)), target[lo:lo + bs]
            loss_total += loss_fn(out, yb) * len(index)
            metric_total += metric_sum(metric, out, yb)
    return loss_total.item() / m, metric_total.item() / m


def fit(resolved, splits, epochs: int, form: str, seed: int, max_rows: int | None = None) -> dict:
    """One model trained as the config says; returns its per-epoch history (times in seconds) and, when the
    data has a test split, `test` figures after the last epoch (outside the epoch times, as `nnctl train`).
    `max_rows`: a quick check on the first rows of each split only."""
    import torch

    from torch_layers import KerasRMSprop, build_model

    cfg = resolved.config
    torch.manual_seed(seed)
    (x, y), validation = splits.train, splits.validation
    train_rows, target = as_rows(x, form), target_tensor(y, cfg.loss)
    specs = [spec.model_dump() for spec in cfg.model.layers]
    model, loss_fn = build_model(specs, x.shape[1:], cfg.loss if isinstance(cfg.loss, str) else "")
    opt = cfg.optimizer
    if opt.type != "rmsprop" or opt.momentum or opt.centered:
        raise SystemExit(f"torch_book.py knows only plain RMSprop, not {opt}")
    optimizer = KerasRMSprop(model.parameters(), lr=opt.learning_rate, rho=opt.rho, epsilon=opt.epsilon)
    if validation is not None:
        val_rows, val_target = as_rows(validation[0], form), target_tensor(validation[1], cfg.loss)
    metric, n, bs = cfg.metrics[0], min(len(train_rows), max_rows or len(train_rows)), cfg.batch_size
    history = {"loss": [], metric: [], "epoch_time": []}
    for _ in range(epochs):
        began = time.perf_counter()
        model.train()
        order = torch.randperm(n)
        loss_total, metric_total = torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.float64)
        for lo in range(0, n, bs):
            rows = order[lo:lo + bs]
            yb = target[rows]
            out = model(train_rows.batch(rows))
            loss = loss_fn(out, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                loss_total += loss * len(rows)
                metric_total += metric_sum(metric, out, yb)
        history["loss"].append(loss_total.item() / n)
        history[metric].append(metric_total.item() / n)
        if validation is not None:
            val_loss, val_metric = evaluate(model, loss_fn, metric, val_rows, val_target, bs, max_rows)
            history.setdefault("val_loss", []).append(val_loss)
            history.setdefault(f"val_{metric}", []).append(val_metric)
        history["epoch_time"].append(time.perf_counter() - began)
    if splits.test is not None:
        test_rows, test_target = as_rows(splits.test[0], form), target_tensor(splits.test[1], cfg.loss)
        history["test"] = dict(zip(("loss", metric),
                                   evaluate(model, loss_fn, metric, test_rows, test_target, bs, max_rows)))
    return history


def main(argv=None) -> None:
    started = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", help="a book config: configs/imdb.yaml, mnist.yaml, boston.yaml, boston_kfold.yaml, "
                                       "mnist_convnet.yaml, imdb_embedding.yaml, imdb_conv1d.yaml, "
                                       "imdb_simple_rnn.yaml, imdb_lstm.yaml, imdb_bidirectional_lstm.yaml")
    parser.add_argument("--epochs", type=int, help="override the config's epochs")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--flush-denormal", action="store_true",
                        help="torch.set_flush_denormal(True) (default: torch's own, IEEE denormals)")
    parser.add_argument("--sparse-input", choices=["csr", "dense"], default="csr",
                        help="how a sparse (IMDB) batch reaches the first Linear: a torch.sparse_csr_tensor "
                             "(default, the faster) or a densified batch")
    parser.add_argument("--seed", type=int, help="override the config's seed (its validation split follows it)")
    parser.add_argument("--max-rows", type=int, help="a quick check: train, validate and test on the first N rows of "
                                                     "each split only (the figures are then not the config's)")
    args = parser.parse_args(argv)

    from nnctl.config import load_config
    from nnctl.data.files import load_data

    resolved = load_config(args.config, [f"seed={args.seed}"] if args.seed is not None else [])
    cfg = resolved.config
    epochs = args.epochs or cfg.epochs
    folds = cfg.data.validation.kfold if cfg.data.validation is not None else None
    # K-fold: each fold's split and transforms, loaded inside the loop as `nnctl train` does.
    fold_splits = (lambda: [load_data(resolved)]) if not folds else (
        lambda: (load_data(resolved, fold=k, folds=folds) for k in range(folds)))
    import torch
    warnings.filterwarnings("ignore", message=".*[Ss]parse CSR tensor support is in beta.*")
    torch.sparse.check_sparse_tensor_invariants.disable()  # the default, said out loud (silences a warning)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.flush_denormal:
        torch.set_flush_denormal(True)
    rss_after_data, histories = None, []
    for k, splits in enumerate(fold_splits()):
        rss_after_data = rss_after_data or current_rss_mb()
        histories.append(fit(resolved, splits, epochs, args.sparse_input, cfg.seed + k, args.max_rows))
    metric = cfg.metrics[0]
    series = [key for key in histories[0] if key not in ("epoch_time", "test")]
    final = {key: float(np.mean([h[key][-1] for h in histories])) for key in series}
    pick = min if metric == "mae" else max  # the best epoch's validation metric
    best = {key: float(np.mean([pick(h[key]) for h in histories])) for key in series if key == f"val_{metric}"}
    test = {key: float(np.mean([h["test"][key] for h in histories])) for key in histories[0].get("test", ())}
    result = {"framework": "torch", "config": os.path.basename(args.config), "epochs": epochs,
              "epoch_s": [h["epoch_time"] for h in histories], "final": final, "best": best, "test": test,
              "metric": metric, "seed": cfg.seed,
              "total_s": time.perf_counter() - started, "rss_after_data_mb": rss_after_data,
              "threads": torch.get_num_threads(), "sparse_input": args.sparse_input, "max_rows": args.max_rows,
              "versions": {"torch": torch.__version__}}
    print(RESULT_MARKER + json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())
