"""Weight initializers with Keras names and defaults; each draws from the run's seeded generator.

`INITIALIZERS.get("he_normal")(shape, rng)` → float32 array.
"""

from __future__ import annotations

import numpy as np

from nnctl.errors import ArgumentError
from nnctl.registry import Registry

# Keras's truncated normal keeps draws within 2σ; this is the σ of that truncated law for unit σ.
_TRUNCATED_STD = 0.87962566103423978


def compute_fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) as Keras computes them: kernels are (..., inputs, outputs)."""
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    return shape[-2] * receptive, shape[-1] * receptive


def truncated_normal(rng: np.random.Generator, shape, stddev: float, mean: float = 0.0) -> np.ndarray:
    """Normal draws, redrawn until within 2σ (as Keras's TruncatedNormal)."""
    out = rng.standard_normal(shape)
    bad = np.abs(out) > 2
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2
    return (mean + stddev * out).astype(np.float32)


class Initializer:
    """Override `__call__(shape, rng)`; `get_config()` returns the constructor arguments."""

    def __call__(self, shape, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def get_config(self) -> dict:
        return {}


class Constant(Initializer):
    def __init__(self, value: float = 0.0):
        self.value = float(value)

    def __call__(self, shape, rng):
        return np.full(shape, self.value, dtype=np.float32)

    def get_config(self):
        return {"value": self.value}


class Zeros(Constant):
    def __init__(self):
        super().__init__(0.0)

    def get_config(self):
        return {}


class Ones(Constant):
    def __init__(self):
        super().__init__(1.0)

    def get_config(self):
        return {}


class RandomNormal(Initializer):
    def __init__(self, mean: float = 0.0, stddev: float = 0.05):
        if stddev <= 0:
            raise ArgumentError(f"`stddev` must be positive, got {stddev!r}.")
        self.mean, self.stddev = float(mean), float(stddev)

    def __call__(self, shape, rng):
        return (self.mean + self.stddev * rng.standard_normal(shape)).astype(np.float32)

    def get_config(self):
        return {"mean": self.mean, "stddev": self.stddev}


class RandomUniform(Initializer):
    def __init__(self, minval: float = -0.05, maxval: float = 0.05):
        if maxval <= minval:
            raise ArgumentError(f"`maxval` must exceed `minval`, got {minval!r} and {maxval!r}.")
        self.minval, self.maxval = float(minval), float(maxval)

    def __call__(self, shape, rng):
        return rng.uniform(self.minval, self.maxval, shape).astype(np.float32)

    def get_config(self):
        return {"minval": self.minval, "maxval": self.maxval}


class VarianceScaling(Initializer):
    """Keras's family: variance `scale / n` with n = fan_in, fan_out or their mean; normal or uniform."""

    def __init__(self, scale: float = 1.0, mode: str = "fan_in", distribution: str = "truncated_normal"):
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ArgumentError(f"`mode` must be one of fan_in, fan_out, fan_avg, got {mode!r}.")
        if distribution not in ("truncated_normal", "uniform"):
            raise ArgumentError(f"`distribution` must be truncated_normal or uniform, got {distribution!r}.")
        self.scale, self.mode, self.distribution = float(scale), mode, distribution

    def __call__(self, shape, rng):
        fan_in, fan_out = compute_fans(tuple(shape))
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        variance = self.scale / max(1.0, n)
        if self.distribution == "uniform":
            limit = np.sqrt(3.0 * variance)
            return rng.uniform(-limit, limit, shape).astype(np.float32)
        return truncated_normal(rng, shape, np.sqrt(variance) / _TRUNCATED_STD)

    def get_config(self):
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution}


class Orthogonal(Initializer):
    """A (semi-)orthogonal matrix, as Keras's Orthogonal: the Q of a QR of a normal draw over the matrix
    (rows = every axis but the last, made column-sign-stable by R's diagonal), times `gain`."""

    def __init__(self, gain: float = 1.0):
        self.gain = float(gain)

    def __call__(self, shape, rng):
        shape = tuple(shape)
        if len(shape) < 2:
            raise ArgumentError(f"the orthogonal initializer needs a shape of 2 or more axes, got {shape}.")
        rows, cols = int(np.prod(shape[:-1])), shape[-1]
        q, r = np.linalg.qr(rng.standard_normal((max(rows, cols), min(rows, cols))))
        q *= np.sign(np.diag(r))
        if rows < cols:
            q = q.T
        return (self.gain * q).reshape(shape).astype(np.float32)

    def get_config(self):
        return {"gain": self.gain}


class Identity(Initializer):
    """`gain` times the identity matrix (a rectangular one has ones on its leading diagonal), as Keras's."""

    def __init__(self, gain: float = 1.0):
        self.gain = float(gain)

    def __call__(self, shape, rng):
        if len(shape) != 2:
            raise ArgumentError(f"the identity initializer needs a 2-D shape, got {tuple(shape)}.")
        return (self.gain * np.eye(*shape)).astype(np.float32)

    def get_config(self):
        return {"gain": self.gain}


def _preset(scale, mode, distribution):
    def make():
        return VarianceScaling(scale, mode, distribution)
    return make


INITIALIZERS = Registry(
    "initializer",
    entries={
        "glorot_uniform": _preset(1.0, "fan_avg", "uniform"),
        "glorot_normal": _preset(1.0, "fan_avg", "truncated_normal"),
        "he_uniform": _preset(2.0, "fan_in", "uniform"),
        "he_normal": _preset(2.0, "fan_in", "truncated_normal"),
        "lecun_uniform": _preset(1.0, "fan_in", "uniform"),
        "lecun_normal": _preset(1.0, "fan_in", "truncated_normal"),
        "variance_scaling": VarianceScaling,
        "random_normal": RandomNormal,
        "random_uniform": RandomUniform,
        "zeros": Zeros,
        "ones": Ones,
        "constant": Constant,
        "orthogonal": Orthogonal,
        "identity": Identity,
    },
    aliases={"xavier_uniform": "glorot_uniform", "xavier_normal": "glorot_normal", "zero": "zeros",
             "one": "ones", "normal": "random_normal", "uniform": "random_uniform"},
    base=Initializer,
)
