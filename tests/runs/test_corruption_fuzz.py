"""Seeded random damage to run files (byte flips, cuts, insertions, repeated slices) read by a random command:
the same contract as the corruption suite, on damage nobody wrote down. 60 mutants in CI, 240 more under slow.
"""

from __future__ import annotations

import random

import pytest

from tests.conftest import invoke
from tests.runs.test_corruption import COMMANDS, FILES, KFOLD_COMMANDS, KFOLD_FILES, MAX_LINE, command_line, train_runs


def mutate(data: bytes, rng: random.Random) -> bytes:
    """`data` with one to three random edits."""
    data = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        where = rng.randrange(len(data) + 1)
        kind = rng.choice(["flip", "flip", "cut", "insert", "repeat", "digit"])
        if kind == "flip" and data:
            data[min(where, len(data) - 1)] ^= 1 << rng.randrange(8)
        elif kind == "cut":
            data = data[:where] + data[where + rng.randint(1, 64):]
        elif kind == "insert":
            data[where:where] = bytes(rng.choice(b'[]{}",:0123456789.-eE\\nulltrfas \n\xff\x00') for _ in
                                      range(rng.randint(1, 8)))
        elif kind == "repeat":
            data[where:where] = data[max(0, where - 64):where] * rng.randint(1, 50)
        elif kind == "digit":  # numbers are where a plausible-looking lie hides
            digits = [i for i, byte in enumerate(data) if 48 <= byte <= 57]
            if digits:
                data[rng.choice(digits)] = rng.choice(b"0123456789")
    return bytes(data)


def mutant(seed: int) -> tuple[str, str, bool]:
    rng = random.Random(seed)
    kfold = rng.random() < 0.2
    files, commands = (KFOLD_FILES, KFOLD_COMMANDS) if kfold else (FILES, list(COMMANDS))
    return rng.choice(sorted(files)), rng.choice(commands), kfold


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return train_runs(tmp_path_factory.mktemp("fuzz"))


def run_mutant(pristine, work, seed: int) -> list[str]:
    import shutil

    file, command, kfold = mutant(seed)
    runs = work / "runs"
    shutil.copytree(pristine.runs, runs, symlinks=True)
    run = runs / (pristine.kfold if kfold else pristine.run).relative_to(pristine.runs)
    target = run / file
    target.write_bytes(mutate(target.read_bytes(), random.Random(seed * 7919)))
    result = invoke(*command_line(command, run, runs, pristine.x, work / "plot.png"))
    text = result.stdout + result.stderr
    problems = []
    if "Traceback" in text or (result.exception is not None and not isinstance(result.exception, SystemExit)):
        problems.append(f"uncaught {type(result.exception).__name__}: {str(result.exception)[:100]}")
    elif result.exit_code not in (0, 2):
        problems.append(f"exit {result.exit_code}")
    elif result.exit_code == 2 and str(runs) not in result.stderr:
        problems.append("the message names no file of the run")
    if any(len(line) > MAX_LINE for line in text.replace(str(runs), "RUNS").splitlines()):
        problems.append("a line over the limit")
    return [f"{file} | {command}: {problem}" for problem in problems]


@pytest.mark.parametrize("seed", range(60))
def test_random_damage(pristine, tmp_path, seed):
    assert run_mutant(pristine, tmp_path, seed) == []


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(60, 300))
def test_more_random_damage(pristine, tmp_path, seed):
    assert run_mutant(pristine, tmp_path, seed) == []
