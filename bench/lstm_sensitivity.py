"""How far one epoch of configs/imdb_lstm.yaml moves on the CPU when its initial weights move by float32 rounding
(each weight times 1 + 1e-7·N(0, 1)): the scale against which a CPU-vs-GPU difference after one epoch is read
(the GPU's float32 sums run in another order). Prints the first epoch's loss, val_loss, val_accuracy and the test
loss and accuracy of the plain and the nudged run, and their differences.

    NNCTL_DATA_DIR=… python bench/lstm_sensitivity.py [--scale 1e-7] [--config configs/imdb_lstm.yaml]
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np

from nnctl.config import load_config
from nnctl.train.session import prepare, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1e-7)
    parser.add_argument("--config", default="configs/imdb_lstm.yaml")
    args = parser.parse_args()
    figures = {}
    for label, scale in (("plain", 0.0), ("nudged", args.scale)):
        resolved = load_config(args.config, ["epochs=1"])
        prepared = prepare(resolved)
        if scale:
            rng = np.random.default_rng(1)
            weights = prepared.model.get_weights()
            prepared.model.set_weights({name: (w * (1 + scale * rng.standard_normal(w.shape))).astype(w.dtype)
                                        for name, w in weights.items()})
        result = train(resolved, tempfile.mkdtemp(), None, prepared)
        history, test = result.run.read_json("history.json"), result.run.read_json("metrics.json")["test"]
        figures[label] = (history["loss"][0], history["val_loss"][0], history["val_accuracy"][0], test["loss"],
                          test["accuracy"])
    names = ("loss", "val_loss", "val_accuracy", "test_loss", "test_accuracy")
    for label, values in figures.items():
        print(f"{label:7s} " + "  ".join(f"{n} {v:.5f}" for n, v in zip(names, values)))
    print("|diff|  " + "  ".join(f"{n} {abs(a - b):.2e}" for n, a, b in zip(names, *figures.values())))


if __name__ == "__main__":
    main()
