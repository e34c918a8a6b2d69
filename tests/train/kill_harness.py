"""SIGKILL a real `nnctl train` at a chosen moment, then check the run folder's contract (used by test_kill.py).

The contract: either no run holds a finished epoch, or `nnctl train --resume` on it succeeds and ends with the
weight bytes and history values of an uninterrupted run; events.jsonl and history.json never claim an epoch
that checkpoints/last.safetensors lacks. Run as a script to count outcomes, e.g. against the code before a fix:
    PYTHONPATH=/work/base python tests/train/kill_harness.py --kills 20 --seed 1
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

NAME = "killed"
CHECKPOINT = "checkpoints/last.safetensors"
# A small dense model whose 60 short epochs (~6 ms each here) put a kill mid-training often enough.
CONFIG = f"""\
name: {NAME}
seed: 3
data:
  path: data.npz
  validation: {{split: 0.2}}
model:
  layers:
    - {{type: dense, units: 64, activation: relu}}
    - {{type: dense, units: 32, activation: relu}}
    - {{type: dense, units: 1, activation: sigmoid}}
loss: binary_crossentropy
optimizer: {{type: adam, learning_rate: 0.001}}
metrics: [accuracy]
epochs: 60
batch_size: 8
"""


def write_experiment(folder: Path) -> Path:
    """data.npz (5,000 training rows of 32 features, 1,000 test rows) and kill.yaml in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6000, 32)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.float32)
    np.savez(folder / "data.npz", x_train=x[:5000], y_train=y[:5000], x_test=x[5000:], y_test=y[5000:])
    (folder / "kill.yaml").write_text(CONFIG, encoding="utf-8")
    return folder / "kill.yaml"


def nnctl(*args) -> list[str]:
    return [sys.executable, "-m", "nnctl", *[str(a) for a in args]]


def environment(pythonpath: str | None = None) -> dict:
    env = dict(os.environ)
    env.pop("NNCTL_CHECKPOINT_SECONDS", None)  # the default interval, as users run it
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return env


@dataclass
class Reference:
    """An uninterrupted run: its result, and when (seconds after the process started) its manifest and its
    weights appeared and it exited."""

    weights: bytes
    history: dict
    manifest_at: float
    weights_at: float
    exit: float


def history_values(history: dict) -> dict:
    return {key: value for key, value in history.items() if key != "epoch_time"}


def _watch(process, runs: Path, marker: str | None, delay: float, kill: bool) -> dict:
    """Polls (every ~1 ms) for `marker` (a file of the run) to appear, then waits `delay` s and SIGKILLs
    `process` when `kill`; returns when each file appeared, in seconds after `began`."""
    began, seen = time.monotonic(), {}
    deadline = None if marker else began + delay
    while process.poll() is None:
        now = time.monotonic()
        for name in ("manifest.json", "weights.safetensors"):
            if name not in seen and list(runs.glob(f"{NAME}/2*/{name}")):
                seen[name] = now - began
                if name == marker:
                    deadline = now + delay
        if kill and deadline is not None and now >= deadline:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.001)
    process.wait()
    seen["exit"] = time.monotonic() - began
    return seen


def run_reference(folder: Path, env: dict) -> Reference:
    config = write_experiment(folder)
    runs = folder / "reference"
    process = subprocess.Popen(nnctl("train", config, "--runs-dir", runs, "-q"), cwd=folder, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = _watch(process, runs, None, 0.0, kill=False)
    assert process.returncode == 0, process.stderr.read()
    run = next(path for path in (runs / NAME).glob("2*") if path.is_dir())
    return Reference((run / "weights.safetensors").read_bytes(), json.loads((run / "history.json").read_text()),
                     seen["manifest.json"], seen["weights.safetensors"], seen["exit"])


def kill_moment(rng: random.Random, reference: Reference, phase: str | None = None) -> tuple[str, str | None, float]:
    """A seeded moment to kill at, as (phase, the run file whose appearance starts the clock, delay): during
    start-up and compilation, mid-training (from the manifest on), or while the results are written."""
    phase = phase or rng.choice(["startup", "training", "training", "writing"])
    if phase == "startup":
        return phase, None, rng.uniform(0.05, reference.manifest_at + 0.1)
    if phase == "training":
        return phase, "manifest.json", rng.uniform(0.0, reference.weights_at - reference.manifest_at)
    # history.json, metrics.json and the manifest follow the weights within a few milliseconds.
    return phase, "weights.safetensors", rng.uniform(0.0, 0.004)


def _checkpoint_epochs(path: Path) -> int:
    """epochs_done from a checkpoint's safetensors header, read without nnctl (so any version's file works)."""
    data = path.read_bytes()
    size = int.from_bytes(data[:8], "little")
    return int(json.loads(json.loads(data[8:8 + size])["__metadata__"]["state"])["epochs_done"])


def _event_epochs(run: Path) -> list[int]:
    epochs = []
    try:
        lines = (run / "events.jsonl").read_bytes().splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and isinstance(event.get("epoch"), int):
            epochs.append(event["epoch"])
    return epochs


def check_after_kill(runs: Path, reference: Reference, env: dict, kill_resume_at: float | None = None) -> str:
    """"ok: ..." when the contract holds, otherwise what broke it. With `kill_resume_at`, the first resume is
    itself SIGKILLed that many seconds after it starts, and the contract checked again before resuming."""
    found = [path for path in (runs / NAME).glob("2*") if path.is_dir()] if (runs / NAME).is_dir() else []
    if not found:
        return "ok: no run folder"
    assert len(found) == 1, found
    run = found[0]
    events = _event_epochs(run)
    history_file = run / "history.json"
    history = json.loads(history_file.read_text()) if history_file.exists() else {}
    claimed = max(events + [len(history.get("loss", []))] + [0])
    if not (run / CHECKPOINT).exists():
        if claimed:
            return f"bad: events/history claim epoch {claimed} but there is no checkpoint (cannot resume)"
        return "ok: no finished epoch"
    done = _checkpoint_epochs(run / CHECKPOINT)
    if claimed > done:
        return f"bad: events/history claim epoch {claimed}, the checkpoint holds {done}"
    manifest = json.loads((run / "manifest.json").read_text())
    if manifest.get("status") != "completed" and kill_resume_at is not None:
        process = subprocess.Popen(nnctl("train", "--resume", run, "-q"), cwd=runs.parent, env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _watch(process, runs, None, kill_resume_at, kill=True)
        return check_after_kill(runs, reference, env)
    if manifest.get("status") != "completed":
        resumed = subprocess.run(nnctl("train", "--resume", run, "-q"), cwd=runs.parent, env=env,
                                 capture_output=True, text=True, timeout=300)
        if resumed.returncode != 0:
            last = (resumed.stderr.strip().splitlines() or ["(no message)"])[-1][:200]
            return f"bad: resume from epoch {done} exited {resumed.returncode}: {last}"
    if (run / "weights.safetensors").read_bytes() != reference.weights:
        return f"bad: weights differ from the uninterrupted run (checkpoint held epoch {done})"
    if history_values(json.loads(history_file.read_text())) != history_values(reference.history):
        return f"bad: history differs from the uninterrupted run (checkpoint held epoch {done})"
    return f"ok: resumed from epoch {done}" if manifest.get("status") != "completed" else "ok: had completed"


def kill_and_check(folder: Path, reference: Reference, marker: str | None, delay: float, env: dict,
                   kill_resume_at: float | None = None) -> str:
    """Starts a fresh `nnctl train` in `folder`, SIGKILLs it `delay` s after `marker` appears (after the start
    when None), and checks the contract (killing the first resume too, with `kill_resume_at`)."""
    config = write_experiment(folder)
    process = subprocess.Popen(nnctl("train", config, "--runs-dir", folder / "runs", "-q"), cwd=folder, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _watch(process, folder / "runs", marker, delay, kill=True)
    return check_after_kill(folder / "runs", reference, env, kill_resume_at)


def main(argv=None) -> int:
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    env, rng = environment(os.environ.get("PYTHONPATH")), random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        reference = run_reference(Path(tmp) / "reference", env)
        print(f"reference: manifest at {reference.manifest_at:.2f} s, weights at {reference.weights_at:.2f} s, "
              f"exit {reference.exit:.2f} s")
        bad = 0
        for index in range(args.kills):
            phase, marker, delay = kill_moment(rng, reference)
            verdict = kill_and_check(Path(tmp) / f"kill-{index}", reference, marker, delay, env)
            bad += verdict.startswith("bad")
            print(f"{index:3d} {phase:9s} {delay:6.3f} s after {marker or 'start'}: {verdict}", flush=True)
        print(f"{bad} of {args.kills} kills broke the contract")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
