"""Seeded random mutations of the shipped configs, and an isolated `nnctl check` that classifies the outcome.

Each shipped config keeps its model and the shape of its data, but reads tiny `synthetic` data, so mutants run
in CI without the datasets. Run as a script to count outcomes for any checkout (the issue's "before" figure):

    PYTHONPATH=/work/base python tests/config/config_mutants.py --seeds 5 --per-seed 60
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import resource
import signal
import sys
import tempfile
import time
from pathlib import Path

import yaml

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

# Each dataset, as tiny synthetic data of the same shape (the model section stays meaningful).
TINY_DATA = {
    "boston_housing": {"dataset": {"type": "synthetic", "kind": "regression", "samples": 60, "features": 13}},
    "mnist": {"dataset": {"type": "synthetic", "samples": 60, "features": 784, "classes": 10}},
    "fashion_mnist": {"dataset": {"type": "synthetic", "samples": 60, "features": 784, "classes": 10}},
    "imdb": {"dataset": {"type": "synthetic", "kind": "text", "samples": 60, "width": 10000, "length": 20},
             "transforms": [{"type": "multi_hot", "width": 10000}]},
    "reuters": {"dataset": {"type": "synthetic", "kind": "text", "samples": 92, "classes": 46, "width": 10000,
                            "length": 20},
                "transforms": [{"type": "multi_hot", "width": 10000}, {"type": "one_hot", "classes": 46}]},
}


def tiny_base(path: Path) -> str:
    """The text of a shipped config with its data section pointed at tiny synthetic data."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    section = data["data"]
    spec = section["dataset"]
    name = spec if isinstance(spec, str) else spec["type"]
    if name == "synthetic":
        spec["samples"] = min(spec.get("samples", 1000), 100)
    else:
        tiny = json.loads(json.dumps(TINY_DATA[name]))
        if any(isinstance(t, dict) and t.get("type") == "pad_sequences" for t in section.get("transforms") or []):
            tiny.pop("transforms", None)  # a sequence model keeps its padding (and Embedding its int ids)
        section.update(tiny)
    validation = section.get("validation") or {}
    if "holdout" in validation:
        validation["holdout"] = 10
    data["epochs"] = min(data.get("epochs", 1), 3)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120)


CALLBACKS = [{"type": "early_stopping", "monitor": "val_loss", "patience": 2},
             {"type": "reduce_lr_on_plateau", "factor": 0.5, "patience": 1},
             {"type": "csv_logger", "filename": "logs/history.csv"},
             {"type": "model_checkpoint", "filepath": "checkpoints/e{epoch:03d}-{val_loss:.3f}.safetensors",
              "monitor": "val_accuracy", "save_best_only": True}]


def shipped_bases() -> dict[str, str]:
    """Every shipped config with tiny data, plus the smoke config with callbacks (none ships with any)."""
    bases = {path.stem: tiny_base(path) for path in sorted(CONFIGS.glob("*.yaml"))}
    if "smoke" in bases:
        data = yaml.safe_load(bases["smoke"])
        data["callbacks"] = json.loads(json.dumps(CALLBACKS))
        bases["smoke_callbacks"] = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120)
    return bases


# ---- mutations ---------------------------------------------------------------------------------------------
HUGE = [10**6, 10**9, 2**31, 2**32, 2**63, 10**18, 10**30, -(10**18), 10**100, 0, -1, -7]
ODD_STRINGS = ["", " ", "ünïcødé", "名前", "\u202eevil", "x\u200by", "😀", "a" * 300, "../../x", "/etc/passwd",
               "{epoch.__class__}", "e{nope}", "${HOME}", "NaN", "null", "true", "1e999", "0x10", "-.inf"]
RETYPES = [None, True, False, "text", 0, 1, -1, 1.5, [], {}, [1, 2], {"type": "x"}, {"type": None}, [None],
           [[1]], {"a": {"b": 1}}]
NAMES = ["relu", "tanh", "sigmoid", "softmax", "linear", "adam", "sgd", "rmsprop", "mse", "mae", "accuracy",
         "binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy", "he_normal",
         "glorot_uniform", "zeros", "l2", "early_stopping", "csv_logger", "model_checkpoint", "dense", "dropout",
         "flatten", "standardize", "one_hot", "multi_hot", "Dense", "RMSProp", "huber"]
CONTROL = [chr(c) for c in (*range(0, 9), 11, 12, *range(14, 32), 127, 0x85, 0xFFFE)]


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, prefix + (index,))


def _parent(data, path):
    for part in path[:-1]:
        data = data[part]
    return data


def _tree_mutation(rng: random.Random, data) -> str:
    paths = [p for p in _paths(data) if p]
    path = rng.choice(paths)
    parent, last = _parent(data, path), path[-1]
    kind = rng.choice(["delete", "retype", "huge", "float", "string", "rename", "unknown", "swap", "wrap", "long",
                       "nudge", "nudge", "name", "name"])
    value = parent[last]
    if kind == "nudge" and isinstance(value, (int, float)) and not isinstance(value, bool):
        # Small, often valid changes: they get past the schema into data loading and model building.
        parent[last] = type(value)(rng.choice([0.5, 2, 3, 10, 100]) * value) if value else rng.choice([1, 2])
    elif kind == "name" and isinstance(value, str):
        parent[last] = rng.choice(NAMES)
    elif kind == "delete":
        del parent[last]
    elif kind == "retype":
        parent[last] = json.loads(json.dumps(rng.choice(RETYPES)))
    elif kind == "huge":
        parent[last] = rng.choice(HUGE)
    elif kind == "float":
        parent[last] = rng.choice([math.nan, math.inf, -math.inf, 1e308, -0.0, 1e-320, 0.5, 2.5])
    elif kind == "string":
        parent[last] = rng.choice(ODD_STRINGS)
    elif kind == "rename" and isinstance(parent, dict):
        key = str(last)
        at = rng.randrange(len(key) + 1)
        new = key[:at] + rng.choice("xse_") + key[at + 1:] if rng.random() < 0.5 else key[:at] + key[at + 1:]
        parent[new or "k"] = parent.pop(last)
    elif kind == "unknown" and isinstance(parent, dict):
        parent[rng.choice(["units", "unitz", "tyep", "epoch", "metric", "x" * 500, "名前", "1", "null"])] = 1
    elif kind == "swap":
        other = rng.choice(paths)
        try:
            value = _parent(data, other)[other[-1]]
            parent[last] = json.loads(json.dumps(value, allow_nan=True))
        except (KeyError, IndexError, TypeError):
            pass
    elif kind == "wrap":
        parent[last] = rng.choice([[parent[last]], {"type": parent[last]}, {"value": parent[last]}])
    elif kind == "long":
        parent[last] = rng.choice(["x" * 100_000, list(range(5000)), {f"k{i}": i for i in range(2000)}])
    return f"{kind} {'.'.join(map(str, path))[:80]}"


def _bomb(levels: int) -> str:
    lines = ['lol0: &a0 "lol"']
    lines += [f"lol{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def _text_mutation(rng: random.Random, text: str) -> tuple[str, str]:
    lines = text.splitlines(keepends=True)
    kind = rng.choice(["control", "comment-control", "duplicate-line", "bomb", "recursive", "deep", "deep-map",
                       "flip", "truncate", "tag", "bigint", "anchor-reuse", "indent", "bytes"])
    at = rng.randrange(len(lines))
    if kind == "control":
        pos = rng.randrange(len(text) + 1)
        return text[:pos] + rng.choice(CONTROL) + text[pos:], kind
    if kind == "comment-control":
        return text + f"# note {rng.choice(CONTROL)} here\n", kind
    if kind == "duplicate-line":
        return "".join(lines[:at + 1] + [lines[at]] + lines[at + 1:]), kind
    if kind == "bomb":
        return text + _bomb(rng.choice([4, 6, 9])), kind
    if kind == "recursive":
        return text + rng.choice(["zz: &r [*r]\n", "zz: &r {a: *r}\n", "seed: &s [1, [*s]]\n"]), kind
    if kind == "deep":
        depth = rng.choice([200, 5000, 20000])
        return text.replace("epochs:", "epochs: " + "[" * depth + "]" * depth + "\nold_epochs:", 1), kind
    if kind == "deep-map":
        depth = rng.choice([150, 5000])
        return text + "deep: " + "{a: " * depth + "1" + "}" * depth + "\n", kind
    if kind == "flip":
        pos = rng.randrange(len(text))
        return text[:pos] + rng.choice("{}[]:,-&*!|>'\"#%@` \t\n") + text[pos + 1:], kind
    if kind == "truncate":
        return text[:rng.randrange(len(text))], kind
    if kind == "tag":
        return text.replace("epochs: ", rng.choice(['epochs: !!int "abc" #', "epochs: !!float x #",
                                                    "epochs: !!python/object:os.system #", "epochs: !!map #",
                                                    "epochs: !!binary aGk= #", "epochs: !custom "]), 1), kind
    if kind == "bigint":
        return text.replace("seed: ", "seed: " + "9" * rng.choice([50, 4301, 100_000]) + " #", 1), kind
    if kind == "anchor-reuse":
        return text + "a: &x 1\nb: &x 2\nc: *nope\n", kind
    if kind == "indent":
        lines[at] = rng.choice(["  ", "\t", " "]) + lines[at]
        return "".join(lines), kind
    return text + "\udcff", kind  # "bytes": a lone surrogate, written as invalid UTF-8


def mutants(seed: int, count: int, bases: dict[str, str] | None = None):
    """(name, text, what was done) for `count` mutants, the same for the same seed."""
    rng = random.Random(seed)
    bases = bases or shipped_bases()
    names = sorted(bases)
    for index in range(count):
        base = names[index % len(names)]
        data = yaml.safe_load(bases[base])
        steps = [_tree_mutation(rng, data) for _ in range(rng.choice([1, 1, 2, 3]))]
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120)
        if rng.random() < 0.4:
            text, kind = _text_mutation(rng, text)
            steps.append(kind)
        yield f"{index:04d}-{base}", text, "; ".join(steps)


# ---- running one mutant --------------------------------------------------------------------------------------
LINE = re.compile(r"^error: (?P<where>.+?:\d+:\d+|--set .+?): ")
MAX_LINE = 300  # characters after the file name


def classify(path: str, exit_code: int, stderr: str, exception) -> tuple[str, str]:
    """("ok" | "refused" | "uncaught" | "unlocated" | "long", detail) for one `nnctl check` outcome."""
    if exception is not None and not isinstance(exception, SystemExit):
        return "uncaught", f"{type(exception).__name__}: {str(exception)[:160]}"
    if exit_code == 0:
        return "ok", ""
    lines = stderr.splitlines()
    if exit_code != 2 or not lines:
        return "uncaught", f"exit {exit_code}: {stderr[-160:]}"
    for line in lines:
        if not LINE.match(line) or not (line[7:].startswith(path) or line.startswith("error: --set ")):
            return "unlocated", line[:200]
        if len(line) - len(path) > MAX_LINE:
            return "long", f"{len(line) - len(path)} characters: {line[:160]}"
    return "refused", lines[0][:200]


_WARM = []


def _warm_up() -> None:
    """One check of each base in this process, so every fork starts with the modules and schemas loaded."""
    if _WARM:
        return
    from click.testing import CliRunner

    import nnctl.cli

    with tempfile.TemporaryDirectory() as folder:
        for name, text in shipped_bases().items():
            CliRunner().invoke(nnctl.cli.main, ["check", str(write_mutant(Path(folder), name, text))])
    _WARM.append(True)


def _virtual_bytes() -> int:
    """This process's address-space size now (the child's limit is set above it: a test suite that loaded
    Numba and friends before may already hold gigabytes of reserved address space)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def check_in_child(path: str, timeout: float = 20.0, memory: int = 3 << 30) -> tuple[str, str, float]:
    """Runs `nnctl check path` in a forked child allowed `memory` bytes more address space than this process
    holds, and `timeout` seconds: (kind, detail, seconds), with "timeout", "killed" (e.g. out of memory) and
    "crashed" (a signal) as extra kinds."""
    from click.testing import CliRunner

    import nnctl.cli

    _warm_up()
    limit = _virtual_bytes() + memory
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    limit = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
    read_end, write_end = os.pipe()
    began = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: check, report one JSON line, and leave without running any cleanup
        try:
            os.close(read_end)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            result = CliRunner().invoke(nnctl.cli.main, ["check", path])
            outcome = classify(path, result.exit_code, result.stderr, result.exception)
        except BaseException as error:  # noqa: BLE001 — the report must reach the parent whatever happened
            outcome = ("uncaught", f"{type(error).__name__}: {str(error)[:160]}")
        os.write(write_end, json.dumps(outcome).encode()[:60_000])
        os._exit(0)
    os.close(write_end)
    chunks, deadline = [], began + timeout
    os.set_blocking(read_end, False)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        try:
            while chunk := os.read(read_end, 65536):
                chunks.append(chunk)
        except BlockingIOError:
            pass
        if done:
            break
        if time.perf_counter() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(read_end)
            return "timeout", f"over {timeout:.0f} s", time.perf_counter() - began
        time.sleep(0.005)
    os.close(read_end)
    seconds = time.perf_counter() - began
    if os.WIFSIGNALED(status):
        return "crashed", f"signal {os.WTERMSIG(status)}", seconds
    if not chunks:
        return "killed", f"no report (exit {os.WEXITSTATUS(status)})", seconds
    kind, detail = json.loads(b"".join(chunks))
    return kind, detail, seconds


def write_mutant(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_bytes(text.encode("utf-8", "surrogateescape" if "\udcff" in text else "strict")
                     if "\udcff" not in text else text.replace("\udcff", "").encode() + b"\xff\n")
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1, as test_config_fuzz's chunks")
    parser.add_argument("--per-seed", type=int, default=60)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--show", type=int, default=5, help="examples to print per kind")
    args = parser.parse_args(argv)
    import nnctl

    print(f"nnctl from {Path(nnctl.__file__).parent}")
    counts: dict[str, int] = {}
    examples: dict[str, list] = {}
    slowest = (0.0, "")
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for name, text, steps in mutants(seed, args.per_seed):
                path = write_mutant(Path(folder), f"s{seed}-{name}", text)
                kind, detail, seconds = check_in_child(str(path), timeout=args.timeout)
                counts[kind] = counts.get(kind, 0) + 1
                slowest = max(slowest, (seconds, f"s{seed}-{name} [{steps}]"))
                examples.setdefault(kind, []).append(f"s{seed}-{name} [{steps}] {detail}")
    for kind, found in sorted(examples.items()):
        if kind not in ("ok", "refused"):
            print(f"-- {kind}: {len(found)}")
            for line in found[:args.show]:
                print("  ", line[:260])
    total = args.seeds * args.per_seed
    print(f"{total} mutants (seeds {args.first_seed}..{args.first_seed + args.seeds - 1} × {args.per_seed}): "
          f"{dict(sorted(counts.items()))}; slowest {slowest[0]:.1f} s ({slowest[1][:100]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
