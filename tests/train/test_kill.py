"""SIGKILL a real `nnctl train` at seeded random moments: the run either holds no finished epoch or resumes to
the bytes of an uninterrupted run, its log never runs ahead of its checkpoint, and no stale lock blocks it.

A handful of kills here (one per phase); under `slow`, 30 more and 10 where the resume is killed too.
See kill_harness.py for the contract and the driver.
"""

import random
import sys

import pytest

from tests.train.kill_harness import environment, kill_and_check, kill_moment, run_reference

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return run_reference(tmp_path_factory.mktemp("reference"), environment())


def kill_many(tmp_path, reference, phases, seed):
    rng, env, broken = random.Random(seed), environment(), []
    for index, phase in enumerate(phases):
        phase, marker, delay = kill_moment(rng, reference, phase)
        verdict = kill_and_check(tmp_path / f"kill-{index}", reference, marker, delay, env)
        if not verdict.startswith("ok"):
            broken.append(f"{phase} ({delay:.3f} s after {marker or 'start'}): {verdict}")
    return broken


def test_kills_during_startup_training_and_writing_leave_a_run_that_resumes_exactly(tmp_path, reference):
    assert kill_many(tmp_path, reference, ["startup", "training", "training", "writing"], seed=14) == []


@pytest.mark.slow
@pytest.mark.long
def test_thirty_kills_at_random_moments_all_keep_the_contract(tmp_path, reference):
    assert kill_many(tmp_path, reference, [None] * 30, seed=1414) == []


@pytest.mark.slow
def test_a_resume_killed_at_a_random_moment_can_itself_be_resumed(tmp_path, reference):
    rng, env, broken = random.Random(2828), environment(), []
    for index in range(10):
        _, marker, delay = kill_moment(rng, reference, "training")
        again = rng.uniform(0.05, reference.exit)
        verdict = kill_and_check(tmp_path / f"kill-{index}", reference, marker, delay, env, kill_resume_at=again)
        if not verdict.startswith("ok"):
            broken.append(f"{delay:.3f} s after {marker}, then the resume {again:.3f} s after its start: {verdict}")
    assert broken == []
