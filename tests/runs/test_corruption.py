"""Run-folder corruption suite: every run file × every damage × every command that reads runs, on a copy of
one tiny trained run (and a 2-fold run). The contract: exit 0 where the damage cannot matter to the command,
else exit 2 with one line naming the damaged file; never a traceback, never an uncaught exception.

A case is (file, damage, command). CI runs every (file, damage) pair against the commands that read that file
plus one other, chosen by a fixed rotation; `-m slow` runs the whole product. `python -m
tests.runs.test_corruption [--all]` prints the tally without pytest (the issue's before/after counts).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import safetensors.numpy
import yaml

from tests.conftest import TINY_CONFIG, invoke, run_path, write_npz

MAX_LINE = 320  # "~300": the config loader's lines quote up to 100 characters of a value and the allowed names
CONFIG = TINY_CONFIG.replace("epochs: 3", "epochs: 2").replace(
    "  validation: {split: 0.2}", "  transforms: [standardize]\n  validation: {split: 0.2}") + \
    "callbacks: [model_checkpoint]\n"

# The run's files, by the kind of content that damages are made of.
FILES = {"manifest.json": "json", "preprocessing.json": "json", "metrics.json": "json", "history.json": "json",
         "config.yaml": "yaml", "events.jsonl": "jsonl", "weights.safetensors": "weights",
         "checkpoints/last.safetensors": "checkpoint", "checkpoints/epoch_001.safetensors": "weights"}
KFOLD_FILES = {"kfold.json": "json", "fold_1/history.json": "json"}

# command name → (arguments after the command's own name; RUN, RUNS, X and OUT are filled in)
COMMANDS = {
    "evaluate": ["evaluate", "RUN"],
    "evaluate --json": ["evaluate", "RUN", "--json"],
    "evaluate --weights": ["evaluate", "RUN", "--weights", "checkpoints/epoch_001.safetensors"],
    "predict --input": ["predict", "RUN", "--input", "X"],
    "runs": ["runs", "RUNS"],
    "runs --json": ["runs", "RUNS", "--json"],
    "compare": ["compare", "RUN", "RUN"],
    "compare --json": ["compare", "RUN", "RUN", "--json"],
    "plot": ["plot", "RUN", "-o", "OUT"],
    "train --resume": ["train", "--resume", "RUN", "--set", "epochs=3", "--quiet"],
}
KFOLD_COMMANDS = ["runs", "runs --json", "compare", "compare --json", "plot"]  # resume refuses K-fold runs

# Which files each command reads (and so must report when damaged). `runs` lists every run it finds, so it
# notes a damaged file on stderr and exits 0 rather than hiding the other runs.
READS = {
    "evaluate": {"manifest.json", "config.yaml", "weights.safetensors", "preprocessing.json", "metrics.json"},
    "predict --input": {"manifest.json", "config.yaml", "weights.safetensors", "preprocessing.json"},
    "runs": {"manifest.json", "metrics.json", "history.json", "kfold.json"},
    "compare": {"manifest.json", "metrics.json", "history.json", "config.yaml", "kfold.json"},
    "plot": {"manifest.json", "history.json", "kfold.json"},
    "train --resume": {"manifest.json", "config.yaml", "checkpoints/last.safetensors", "kfold.json"},
}
READS["evaluate --json"] = READS["evaluate"]
READS["evaluate --weights"] = READS["evaluate"] - {"weights.safetensors"} | {"checkpoints/epoch_001.safetensors"}
READS["runs --json"], READS["compare --json"] = READS["runs"], READS["compare"]
# Files whose absence is a normal state (not written yet, or optional): deleting them may be harmless.
# (A fold's history.json is read only while kfold.json, written last, is absent.)
OPTIONAL = {"metrics.json", "history.json", "events.jsonl", "kfold.json", "fold_1/history.json"}
# Records that hold numbers only: lengthening their strings changes nothing.
NO_STRINGS = {"metrics.json", "history.json", "kfold.json", "fold_1/history.json"}
# Records whose every key is optional: dropping keys leaves a valid, smaller record.
ALL_KEYS_OPTIONAL = {"metrics.json", "history.json", "kfold.json", "fold_1/history.json"}
# A run's outputs that `train --resume` rewrites at its end: damage there is overwritten, not read.
RESUME_REWRITES = {"metrics.json", "history.json", "weights.safetensors", "events.jsonl", "preprocessing.json"}


# ---- damages ---------------------------------------------------------------------------------------------------
def _json_damage(value):
    return lambda path, kind: path.write_text(json.dumps(value), encoding="utf-8")


def _drop_keys(path, kind):
    if kind in ("weights", "checkpoint"):
        return _edit_tensors(path, kind, drop=True)
    data = _load(path, kind)
    if isinstance(data, dict):
        data = {key: value for index, (key, value) in enumerate(data.items()) if index % 2}
    _dump(path, kind, data)


def _retype(value):
    return 1 if isinstance(value, str) else "x"


def _wrong_types(path, kind):
    if kind == "checkpoint":
        return _edit_state(path, lambda state: {key: _retype(value) for key, value in state.items()})
    if kind == "weights":
        return _edit_tensors(path, kind, dtype=np.float64)
    data = _load(path, kind)
    if isinstance(data, dict):
        data = {key: _retype(value) for key, value in data.items()}
    _dump(path, kind, data)


def _load(path, kind):
    text = path.read_text(encoding="utf-8")
    if kind == "yaml":
        return yaml.safe_load(text)
    if kind == "jsonl":
        return json.loads(text.splitlines()[0])
    return json.loads(text)


def _dump(path, kind, data):
    text = yaml.safe_dump(data) if kind == "yaml" else json.dumps(data)
    path.write_text(text, encoding="utf-8")


def _edit_tensors(path, kind, drop=False, dtype=None, shape=False, nan=False):
    tensors, metadata = _read_safetensors(path)
    prefix = "weights/" if kind == "checkpoint" else ""
    target = sorted(key for key in tensors if key.startswith(prefix))[0]
    if drop:
        del tensors[target]
    if dtype is not None:
        tensors = {key: value.astype(dtype) if key.startswith(prefix) else value for key, value in tensors.items()}
    if shape:
        tensors[target] = np.concatenate([tensors[target], tensors[target][:1]])
    if nan:
        tensors[target] = np.full_like(tensors[target], np.nan)
    path.write_bytes(safetensors.numpy.save(tensors, metadata=metadata))


def _edit_state(path, change):
    tensors, metadata = _read_safetensors(path)
    metadata["state"] = json.dumps(change(json.loads(metadata["state"])))
    path.write_bytes(safetensors.numpy.save(tensors, metadata=metadata))


def _read_safetensors(path):
    data = path.read_bytes()
    header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
    return safetensors.numpy.load(data), header.get("__metadata__")


def _lengthen(value, keys: bool):
    """`value` with every string (or, with `keys`, every mapping key) made 5,000 characters long."""
    if isinstance(value, dict):
        return {(key * (5000 // len(key) + 1) if keys and key else key): _lengthen(item, keys)
                for key, item in value.items()}
    if isinstance(value, list):
        return [_lengthen(item, keys) for item in value]
    return "x" * 5000 if isinstance(value, str) and not keys else value


def _long(keys: bool):
    def damage(path, kind):
        if kind == "checkpoint":
            return _edit_state(path, lambda state: _lengthen(state, keys))
        if kind == "weights":
            tensors, metadata = _read_safetensors(path)
            tensors = {(name * 300 if keys else name): value for name, value in tensors.items()}
            return path.write_bytes(safetensors.numpy.save(tensors, metadata=_lengthen(metadata, False)))
        if kind == "jsonl":
            lines = [json.dumps(_lengthen(json.loads(line), keys)) for line in path.read_text().splitlines()]
            return path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        _dump(path, kind, _lengthen(_load(path, kind), keys))
    return damage


def _missing_state_keys(path, kind):
    if kind != "checkpoint":
        return _drop_keys(path, kind)
    _edit_state(path, lambda state: {key: value for index, (key, value) in enumerate(state.items()) if index % 2})


def _random_bytes(path, kind):
    size = max(64, path.stat().st_size)
    path.write_bytes(np.random.default_rng(zlib.crc32(str(path.name).encode())).bytes(size))


def _replace(path, make):
    path.unlink()
    make(path)


def _tensor_damage(**change):
    def damage(path, kind):
        if kind in ("weights", "checkpoint"):
            return _edit_tensors(path, kind, **change)
        return _wrong_types(path, kind)  # for a non-tensor file: the nearest damage
    return damage


DAMAGES = {
    "deleted": lambda path, kind: path.unlink(),
    "empty": lambda path, kind: path.write_bytes(b""),
    "truncated": lambda path, kind: path.write_bytes(path.read_bytes()[:path.stat().st_size // 2]),
    "random bytes": _random_bytes,
    "[]": _json_damage([]),
    "null": _json_damage(None),
    '"x"': _json_damage("x"),
    "1": _json_damage(1),
    "missing keys": _drop_keys,
    "wrong types": _wrong_types,
    "state missing keys": _missing_state_keys,
    "long strings": _long(keys=False),
    "long keys": _long(keys=True),
    "deep nesting": lambda path, kind: path.write_text("[" * 100_000, encoding="utf-8"),
    "directory": lambda path, kind: _replace(path, lambda p: p.mkdir()),
    "dangling symlink": lambda path, kind: _replace(path, lambda p: os.symlink("nowhere", p)),
    "symlink loop": lambda path, kind: _replace(path, lambda p: os.symlink(p.name, p)),
    "wrong shape": _tensor_damage(shape=True),
    "wrong dtype": _tensor_damage(dtype=np.float64),
    "NaN tensors": _tensor_damage(nan=True),
}
TENSOR_ONLY = {"wrong shape", "wrong dtype", "NaN tensors", "state missing keys"}


def damages_for(kind: str) -> list[str]:
    names = list(DAMAGES)
    return names if kind in ("weights", "checkpoint") else [name for name in names if name not in TENSOR_ONLY]


def kind_of(file: str) -> str:
    return {**FILES, **KFOLD_FILES}[file]


# ---- what a command may answer -------------------------------------------------------------------------------
def expected(command: str, file: str, damage: str) -> str:
    """"error" (exit 2 naming the file), "note" (exit 0, the file named on stderr), "ok" (exit 0) or "any"
    (exit 0, or 2 naming the file)."""
    reads = file in READS[command]
    if command == "train --resume" and file in RESUME_REWRITES:
        return "any"  # read by no check, rewritten at the end (a folder in its place cannot be)
    if not reads:
        return "ok" if file != "events.jsonl" else "any"
    if (damage == "deleted" and file in OPTIONAL) or (damage == "missing keys" and file in ALL_KEYS_OPTIONAL):
        return "any"
    if damage == "long strings" and (file in NO_STRINGS or kind_of(file) == "weights"):
        return "any"  # nothing there to lengthen (a weights file's metadata is not read)
    if command.startswith("compare") and file == "config.yaml" and damage in ("truncated", "missing keys",
                                                                              "wrong types", "long strings",
                                                                              "long keys"):
        return "any"  # compare diffs the YAML it holds (no schema, so older runs compare): still a mapping
    if damage == "NaN tensors" and file != "checkpoints/last.safetensors":
        return "note"  # a diverged run's weights are still its weights: figures are NaN, said so
    if damage == "wrong types" and file in ("weights.safetensors", "checkpoints/epoch_001.safetensors"):
        return "error"  # float64 tensors
    return "note" if command.startswith("runs") else "error"


def cases(commands=COMMANDS, files=FILES, every: bool = False) -> list[tuple[str, str, str]]:
    """(file, damage, command) triples: all of them with `every`, else per (file, damage) the commands that read
    the file (one of them, rotating) and one more command, rotating."""
    out = []
    names = list(commands)
    for file, kind in files.items():
        for index, damage in enumerate(damages_for(kind)):
            if every:
                out += [(file, damage, command) for command in names]
                continue
            readers = [command for command in names if file in READS[command]]
            picks = {readers[index % len(readers)]} if readers else set()
            picks.add(names[(index * 3 + len(file)) % len(names)])
            out += [(file, damage, command) for command in sorted(picks)]
    return out


# ---- the runs and one case -----------------------------------------------------------------------------------
def train_runs(folder: Path) -> SimpleNamespace:
    """A tiny trained run (checkpoints included) and a 2-fold run under folder/runs, and inputs for predict."""
    write_npz(folder / "tiny.npz")
    config = folder / "tiny.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    made = []
    for args in (["train"], ["kfold", "--folds", "2", "--set", "name=tiny_cv", "--set", "callbacks=[]"]):
        result = invoke(args[0], config, "--runs-dir", folder / "runs", "--quiet", *args[1:])
        assert result.exit_code == 0, result.output
        made.append(run_path(result.stdout))
    with np.load(folder / "tiny.npz") as data:
        np.save(folder / "x.npy", data["x_test"][:5])
    return SimpleNamespace(folder=folder, runs=folder / "runs", run=made[0], kfold=made[1], x=folder / "x.npy")


def prepare_case(pristine, work: Path, file: str, damage: str, kfold: bool = False) -> tuple[list[str], Path]:
    """A copy of the runs with `file` of one run damaged; the command line of each command for it."""
    runs = work / "runs"
    shutil.copytree(pristine.runs, runs, symlinks=True)
    source = pristine.kfold if kfold else pristine.run
    run = runs / source.relative_to(pristine.runs)
    kind = (KFOLD_FILES if kfold else FILES)[file]
    DAMAGES[damage](run / file, kind)
    return run, runs


def command_line(command: str, run: Path, runs: Path, x: Path, out: Path) -> list[str]:
    table = {"RUN": str(run), "RUNS": str(runs), "X": str(x), "OUT": str(out)}
    return [table.get(arg, arg) for arg in COMMANDS[command]]


def check(result_code, stdout, stderr, exception, file, command, damage, run: str) -> list[str]:
    """Every way the answer breaks the contract (empty when it keeps it)."""
    problems = []
    text = stdout + stderr
    want = expected(command, file, damage)
    named = file.split("/")[-1] in stderr
    if "Traceback" in text:
        problems.append("traceback")
    if exception is not None and not isinstance(exception, SystemExit):
        problems.append(f"uncaught {type(exception).__name__}: {str(exception)[:100]}")
    elif result_code not in (0, 2) and not (command == "evaluate" and result_code == 1):
        problems.append(f"exit {result_code}")
    elif want == "error" and result_code != 2:
        problems.append(f"exit {result_code}, expected 2")
    elif want in ("ok", "note") and result_code != 0:
        problems.append(f"exit {result_code}, expected 0")
    if (result_code == 2 or want == "note") and not named and not problems:
        problems.append("the message does not name the file")
    if command.endswith("--json") and result_code == 0:
        try:
            json.loads(stdout, parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))
        except ValueError as error:
            problems.append(f"not strict JSON ({str(error)[:60]})")
    # The cap is on what a message quotes; the run's own path (the user's) is not counted.
    long = [line for line in text.replace(run, "RUN").splitlines() if len(line) > MAX_LINE]
    if long:
        problems.append(f"a line of {len(long[0])} characters")
    return problems


def run_case(pristine, work: Path, file: str, damage: str, command: str, kfold: bool = False) -> list[str]:
    run, runs = prepare_case(pristine, work, file, damage, kfold)
    result = invoke(*command_line(command, run, runs, pristine.x, work / "plot.png"))
    return check(result.exit_code, result.stdout, result.stderr, result.exception, file, command, damage,
                 str(runs))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return train_runs(tmp_path_factory.mktemp("corruption"))


def _ids(triples):
    return [f"{file}|{damage}|{command}" for file, damage, command in triples]


CI_CASES = cases()
KFOLD_CASES = cases(commands=KFOLD_COMMANDS, files=KFOLD_FILES)


@pytest.mark.parametrize("file, damage, command", CI_CASES, ids=_ids(CI_CASES))
def test_a_damaged_run_file_is_one_line_naming_it(pristine, tmp_path, file, damage, command):
    assert run_case(pristine, tmp_path, file, damage, command) == []


@pytest.mark.parametrize("file, damage, command", KFOLD_CASES, ids=_ids(KFOLD_CASES))
def test_a_damaged_kfold_file(pristine, tmp_path, file, damage, command):
    assert run_case(pristine, tmp_path, file, damage, command, kfold=True) == []


SLOW_CASES = [case for case in cases(every=True) if case not in set(CI_CASES)]


@pytest.mark.slow
@pytest.mark.parametrize("file, damage, command", SLOW_CASES, ids=_ids(SLOW_CASES))
def test_every_damage_with_every_command(pristine, tmp_path, file, damage, command):
    assert run_case(pristine, tmp_path, file, damage, command) == []


PROCESS_CASES = [("manifest.json", "[]", "evaluate --json"), ("metrics.json", "deep nesting", "compare"),
                 ("checkpoints/last.safetensors", "state missing keys", "train --resume"),
                 ("preprocessing.json", "wrong types", "predict --input"), ("history.json", "symlink loop", "plot")]


@pytest.mark.parametrize("file, damage, command", PROCESS_CASES, ids=_ids(PROCESS_CASES))
def test_as_a_real_process(pristine, tmp_path, file, damage, command):
    run, runs = prepare_case(pristine, tmp_path, file, damage)
    done = subprocess.run([sys.executable, "-m", "nnctl", *command_line(command, run, runs, pristine.x,
                                                                        tmp_path / "plot.png")],
                          capture_output=True, text=True, timeout=120)
    assert check(done.returncode, done.stdout, done.stderr, None, file, command, damage, str(runs)) == []
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, done.stderr


def test_the_suite_covers_every_file_damage_and_command():
    covered = {(file, damage) for file, damage, _ in CI_CASES}
    assert covered == {(file, damage) for file, kind in FILES.items() for damage in damages_for(kind)}
    assert {command for _, _, command in CI_CASES} == set(COMMANDS)


def main(argv) -> None:
    """Runs the suite without pytest and prints a tally of broken contracts (for before/after counts)."""
    import collections
    import tempfile

    every = "--all" in argv
    with tempfile.TemporaryDirectory() as temp:
        (Path(temp) / "pristine").mkdir()
        pristine = train_runs(Path(temp) / "pristine")
        tally, total, failing = collections.Counter(), 0, 0
        todo = [(case, False) for case in (cases(every=True) if every else CI_CASES)]
        todo += [(case, True) for case in KFOLD_CASES]
        for index, ((file, damage, command), kfold) in enumerate(todo):
            work = Path(temp) / f"case{index}"
            work.mkdir()
            try:
                problems = run_case(pristine, work, file, damage, command, kfold)
            except Exception as error:  # noqa: BLE001 - the tally must survive a case that breaks the harness
                problems = [f"harness: {type(error).__name__}"]
            shutil.rmtree(work, ignore_errors=True)
            total += 1
            for problem in problems:
                kind = problem.split(":")[0] if problem.startswith("uncaught") else problem.split(",")[0]
                tally[kind] += 1
            if problems:
                failing += 1
                print(f"{file} | {damage} | {command}: {'; '.join(problems)}")
        print(f"\n{total} cases, {failing} failing; broken contracts by kind: {dict(tally.most_common())}")


if __name__ == "__main__":
    main(sys.argv[1:])
