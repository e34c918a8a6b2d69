"""Deep Learning with Python, 2nd ed., 3.5.4: "A linear classifier in pure TensorFlow", with nnctl.ops.

Two clouds of 1,000 points (means [0, 3] and [3, 0], covariance [[1, 0.5], [0.5, 1]]), W (2, 1) uniform in
[0, 1), b zeros, the mean squared error, 40 steps of gradient descent at learning rate 0.1. The book's loss
settles around 0.025 and the line y = 0.5 separates the two clouds.

    python examples/linear_classifier.py [--seed 0]
"""

from __future__ import annotations

import argparse

import numpy as np

from nnctl import ops


def make_data(rng, per_class: int = 1000):
    cov = [[1, 0.5], [0.5, 1]]
    negative = rng.multivariate_normal(mean=[0, 3], cov=cov, size=per_class)
    positive = rng.multivariate_normal(mean=[3, 0], cov=cov, size=per_class)
    inputs = np.vstack((negative, positive)).astype(np.float32)
    targets = np.vstack((np.zeros((per_class, 1), np.float32), np.ones((per_class, 1), np.float32)))
    return inputs, targets


def train(seed: int = 0, steps: int = 40, learning_rate: float = 0.1, verbose: bool = False):
    """(the loss after each step, the final accuracy at the 0.5 threshold)."""
    rng = np.random.default_rng(seed)
    inputs, targets = make_data(rng)
    W = ops.Variable(rng.uniform(size=(2, 1)))
    b = ops.Variable(np.zeros(1))

    def model(x):
        return ops.matmul(x, W) + b

    losses = []
    for step in range(steps):
        with ops.GradientTape() as tape:
            predictions = model(inputs)
            loss = ops.mean(ops.square(targets - predictions))
        grad_W, grad_b = tape.gradient(loss, [W, b])
        W.assign_sub(grad_W * learning_rate)
        b.assign_sub(grad_b * learning_rate)
        losses.append(float(loss.numpy()))
        if verbose:
            print(f"Loss at step {step}: {losses[-1]:.4f}")
    accuracy = float(np.mean((model(inputs).numpy() > 0.5) == (targets > 0.5)))
    return losses, accuracy


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    losses, accuracy = train(args.seed, verbose=True)
    print(f"accuracy: {accuracy:.4f}")


if __name__ == "__main__":
    main()
