"""The config fuzzer: seeded mutants of every shipped config (tests/config/config_mutants.py) through
`nnctl check`, each in a forked child with a memory limit and a timeout. Every mutant must end in exit 0, or
exit 2 with one located line per problem (`error: FILE:LINE:COL: ...`), at most ~300 characters, in seconds.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import config_mutants  # noqa: E402  (a helper module beside this test, also run as a script)

CI_CHUNKS, SLOW_CHUNKS, PER_CHUNK = 5, 50, 60  # 300 mutants in CI, 3,000 more under `--run-long`
SECONDS = 10.0  # per mutant, generous for a loaded CI machine (here: ≤ 0.5 s typical, 5 s worst)


def run_chunk(tmp_path, seed: int) -> list[str]:
    failures = []
    for name, text, steps in config_mutants.mutants(seed, PER_CHUNK):
        path = config_mutants.write_mutant(tmp_path, name, text)
        kind, detail, seconds = config_mutants.check_in_child(str(path), timeout=30.0)
        if kind not in ("ok", "refused") or seconds > SECONDS:
            failures.append(f"{name} [{steps}]: {kind} after {seconds:.1f} s: {detail}")
    return failures


def test_every_shipped_config_passes_with_tiny_data(tmp_path):
    bases = config_mutants.shipped_bases()
    assert len(bases) >= 8
    for name, text in bases.items():
        path = config_mutants.write_mutant(tmp_path, name, text)
        assert config_mutants.check_in_child(str(path))[:2] == ("ok", ""), name


def test_the_child_reports_what_the_contract_forbids(tmp_path):
    classify = config_mutants.classify
    assert classify("c.yaml", 1, "", ValueError("x"))[0] == "uncaught"
    assert classify("c.yaml", 2, "error: c.yaml: no position\n", None)[0] == "unlocated"
    assert classify("c.yaml", 2, "error: c.yaml:1:2: " + "x" * 400 + "\n", None)[0] == "long"
    assert classify("c.yaml", 2, "error: c.yaml:1:2: fine\nerror: --set a=1: fine\n", None)[0] == "refused"
    path = config_mutants.write_mutant(tmp_path, "bomb", config_mutants.shipped_bases()["smoke"]
                                       + config_mutants._bomb(9))
    kind, detail, seconds = config_mutants.check_in_child(str(path))
    assert kind == "refused" and "aliases expand" in detail and seconds < SECONDS


@pytest.mark.parametrize("seed", range(CI_CHUNKS))
def test_config_mutants_keep_the_contract(tmp_path, seed):
    assert run_chunk(tmp_path, seed) == []


@pytest.mark.slow
@pytest.mark.long
@pytest.mark.parametrize("seed", range(CI_CHUNKS, CI_CHUNKS + SLOW_CHUNKS))
def test_more_config_mutants_keep_the_contract(tmp_path, seed):
    assert run_chunk(tmp_path, seed) == []
