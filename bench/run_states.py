"""Before/after counts for issue #15 honest run states: run `python bench/run_states.py` from a checkout; the
working folder decides which nnctl is measured (e.g. `cd /work/base && python /work/main/bench/run_states.py`)."""
import json, os, signal, subprocess, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, os.getcwd())
from click.testing import CliRunner
from nnctl.cli import main
from nnctl.train import session
from nnctl.train.session_callbacks import InterruptHandler
from tests.conftest import TINY_CONFIG, write_npz
import nnctl; print("nnctl from", nnctl.__file__)

def cli(*a):
    return CliRunner().invoke(main, [str(x) for x in a])

def tiny(folder, extra=""):
    write_npz(folder / "tiny.npz"); p = folder / "tiny.yaml"; p.write_text(TINY_CONFIG + extra); return p

bad = {}
# A. Ctrl-C before the first epoch, at 5 moments (no epoch finished): resume hint, evaluate/predict refusal, runs/<name>
class Early(InterruptHandler):
    requested = True
orig = session.InterruptHandler
for case in range(5):
    with tempfile.TemporaryDirectory() as t:
        t = Path(t); cfg = tiny(t)
        cli("train", cfg, "--runs-dir", t / "runs", "-q")  # a good run first
        time.sleep(1.01)
        session.InterruptHandler = Early
        r = cli("train", cfg, "--runs-dir", t / "runs", "-q")
        session.InterruptHandler = orig
        run = Path(r.stdout.splitlines()[-1][5:])
        bad.setdefault("A resume hint offered with no checkpoint", 0)
        bad["A resume hint offered with no checkpoint"] += "--resume" in r.stderr
        e = cli("evaluate", run, "--json")
        bad.setdefault("A evaluate of the empty run not refused in one line (exit 2)", 0)
        bad["A evaluate of the empty run not refused in one line (exit 2)"] += not (e.exit_code == 2 and "no trained weights" in e.stderr)
        e2 = cli("evaluate", t / "runs" / "tiny", "--json")
        bad.setdefault("A runs/<name> resolved to the empty run (evaluate failed)", 0)
        bad["A runs/<name> resolved to the empty run (evaluate failed)"] += e2.exit_code != 0
# B. SIGKILL at 3 moments (after epoch 1, 2, 3 of 5): `runs` status
KILLED = """
import sys, time
from nnctl.nn.callbacks import Callback
from nnctl.train import session
from nnctl.config import load_config
class Hang(Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == int(sys.argv[3]):
            print("ready", flush=True); time.sleep(600)
session.train(load_config(sys.argv[1]), sys.argv[2], progress=Hang())
"""
for at in range(3):
    with tempfile.TemporaryDirectory() as t:
        t = Path(t); cfg = tiny(t)
        p = subprocess.Popen([sys.executable, "-c", KILLED, str(cfg), str(t / "runs"), str(at)], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": os.getcwd()})
        p.stdout.readline(); p.send_signal(signal.SIGKILL); p.wait()
        rows = json.loads(cli("runs", t / "runs", "--json").stdout)
        bad.setdefault("B SIGKILLed run listed as running", 0)
        bad["B SIGKILLed run listed as running"] += rows[0]["status"] == "running"
        e = cli("evaluate", t / "runs" / "tiny", "--json")
        bad.setdefault("B SIGKILLed run: evaluate gives no epoch note", 0)
        bad["B SIGKILLed run: evaluate gives no epoch note"] += "epoch" not in e.stderr
# C. K-fold stopped in fold 2..4 of 4: labelled partial in runs/compare and kfold output
REG = TINY_CONFIG.replace("validation: {split: 0.2}", "validation: {kfold: 4}")
for stop_in in (2, 3, 4):
    started = []
    class InFold(InterruptHandler):
        def on_train_begin(self, logs=None):
            started.append(1); super().on_train_begin(logs)
        def on_epoch_end(self, epoch, logs=None):
            if len(started) == stop_in and epoch == 1: self._handle(None, None)
    with tempfile.TemporaryDirectory() as t:
        t = Path(t); write_npz(t / "tiny.npz"); cfg = t / "k.yaml"; cfg.write_text(REG)
        session.InterruptHandler = InFold
        r = cli("kfold", cfg, "--runs-dir", t / "runs")
        session.InterruptHandler = orig
        table = cli("runs", t / "runs").stdout
        bad.setdefault("C partial K-fold shown as the K-fold figure in `runs`", 0)
        bad["C partial K-fold shown as the K-fold figure in `runs`"] += "4-fold" in table
        bad.setdefault("C partial K-fold: kfold output titled as K-fold", 0)
        bad["C partial K-fold: kfold output titled as K-fold"] += "4-fold cross-validation" in r.stdout
# D. early stopping with restore_best_weights, 3 seeds: metrics.json figures vs the saved weights' epoch
ES = "\ncallbacks:\n  - {type: early_stopping, monitor: loss, mode: max, patience: 2, restore_best_weights: true}\n"
for seed in (1, 2, 3):
    with tempfile.TemporaryDirectory() as t:
        t = Path(t); cfg = tiny(t, ES); cfg.write_text(cfg.read_text().replace("seed: 1", f"seed: {seed}").replace("epochs: 3", "epochs: 8"))
        r = cli("train", cfg, "--runs-dir", t / "runs")
        run = Path(r.stdout.splitlines()[-1][5:])
        h = json.loads((run / "history.json").read_text()); m = json.loads((run / "metrics.json").read_text())
        ev = json.loads(cli("evaluate", run, "--split", "validation", "--json").stdout)
        bad.setdefault("D metrics.json val_loss differs from the saved weights' val_loss", 0)
        bad["D metrics.json val_loss differs from the saved weights' val_loss"] += abs(m["validation"]["loss"] - ev["loss"]) > 1e-4
        bad.setdefault("D Keras early-stopping lines missing", 0)
        bad["D Keras early-stopping lines missing"] += "Restoring model weights from the end of the best epoch" not in r.stdout
for k, v in bad.items():
    print(f"{v:3d}  {k}")
