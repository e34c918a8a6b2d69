"""Epoch time of `Sequential.fit` from a plain script (MNIST 784-512-10) — the Python API against `nnctl train`.

Run: NNCTL_DATA_DIR=/work/shared/datasets python bench/api_speed.py [epochs]
"""

import os
import sys
import time

import numpy as np

from nnctl.nn.layers import Dense
from nnctl.nn.model import Sequential


def mnist():
    folder = os.environ.get("NNCTL_DATA_DIR")
    if folder and os.path.exists(os.path.join(folder, "mnist.npz")):
        with np.load(os.path.join(folder, "mnist.npz")) as data:
            return data["x_train"].reshape(-1, 784).astype(np.float32) / 255, data["y_train"].astype(np.int64)
    rng = np.random.default_rng(0)  # random look-alike: 19 % non-zero pixels, like MNIST
    x = (rng.random((60000, 784)) < 0.19) * rng.random((60000, 784))
    return x.astype(np.float32), rng.integers(0, 10, 60000)


def main(epochs: int = 3) -> None:
    x, y = mnist()
    model = Sequential([Dense(512, activation="relu"), Dense(10, activation="softmax")], input_shape=(784,), seed=42)
    model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[:256], y[:256], epochs=1, batch_size=128)  # compile the kernels outside the timing
    began = time.perf_counter()
    history = model.fit(x, y, epochs=epochs, batch_size=128)
    print(f"epoch times: {' '.join(f'{t:.2f}s' for t in history['epoch_time'])}; "
          f"mean {np.mean(history['epoch_time']):.2f} s/epoch; total {time.perf_counter() - began:.1f} s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
