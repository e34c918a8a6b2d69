"""Epoch-based learning-rate schedules for the `learning_rate_scheduler` callback, with Keras's formulas
(`keras.optimizers.schedules`) read with epochs in place of steps.
"""

from __future__ import annotations

import bisect
import math

from nnctl.errors import ArgumentError, check_float_range, check_positive_int
from nnctl.registry import Registry


def check_non_negative_int(name: str, value) -> int:
    """`value` as an int >= 0, or an ArgumentError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ArgumentError(f"`{name}` must be a non-negative integer, got {value!r}.")
    return value


def check_bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ArgumentError(f"`{name}` must be true or false, got {value!r}.")
    return value


def _non_negative(name, value) -> float:
    return check_float_range(name, value, 0.0, math.inf)


def _positive(name, value) -> float:
    return check_float_range(name, value, 0.0, math.inf, low_open=True)


class Schedule:
    """Base: a subclass validates its arguments in `__init__`, returns them from `get_config()` and maps
    `(epoch, initial_lr)` to the epoch's learning rate in `__call__` (epoch is 0-based; `initial_lr` is the
    optimizer's learning rate when training first began).

    Example:
        class Halving(Schedule):
            name = "halving"
            def __call__(self, epoch, initial_lr): return initial_lr / 2 ** epoch
    """

    name = ""

    def __call__(self, epoch: int, initial_lr: float) -> float:
        raise NotImplementedError

    def get_config(self) -> dict:
        return {}

    def spec(self) -> dict:
        """The `{type: name, **config}` mapping that rebuilds this schedule through `SCHEDULES.get`."""
        return {"type": self.name, **self.get_config()}


class StepDecay(Schedule):
    """`initial_lr * factor ** floor(epoch / every)`: the rate drops by `factor` every `every` epochs."""

    name = "step_decay"

    def __init__(self, factor=0.5, every=10):
        self.factor = check_float_range("factor", factor, 0.0, 1.0, low_open=True)
        self.every = check_positive_int("every", every)

    def __call__(self, epoch, initial_lr):
        return initial_lr * self.factor ** (epoch // self.every)

    def get_config(self):
        return {"factor": self.factor, "every": self.every}


class ExponentialDecay(Schedule):
    """Keras ExponentialDecay: `initial_lr * decay_rate ** (epoch / decay_epochs)`, the exponent floored
    with `staircase`."""

    name = "exponential_decay"

    def __init__(self, decay_rate, decay_epochs=1, staircase=False):
        self.decay_rate = _positive("decay_rate", decay_rate)
        self.decay_epochs = check_positive_int("decay_epochs", decay_epochs)
        self.staircase = check_bool("staircase", staircase)

    def __call__(self, epoch, initial_lr):
        progress = epoch / self.decay_epochs
        return initial_lr * self.decay_rate ** (math.floor(progress) if self.staircase else progress)

    def get_config(self):
        return {"decay_rate": self.decay_rate, "decay_epochs": self.decay_epochs, "staircase": self.staircase}


class InverseTimeDecay(Schedule):
    """Keras InverseTimeDecay: `initial_lr / (1 + decay_rate * epoch / decay_epochs)`, the ratio floored
    with `staircase`."""

    name = "inverse_time_decay"

    def __init__(self, decay_rate, decay_epochs=1, staircase=False):
        self.decay_rate = _non_negative("decay_rate", decay_rate)
        self.decay_epochs = check_positive_int("decay_epochs", decay_epochs)
        self.staircase = check_bool("staircase", staircase)

    def __call__(self, epoch, initial_lr):
        progress = epoch / self.decay_epochs
        return initial_lr / (1.0 + self.decay_rate * (math.floor(progress) if self.staircase else progress))

    def get_config(self):
        return {"decay_rate": self.decay_rate, "decay_epochs": self.decay_epochs, "staircase": self.staircase}


class CosineDecay(Schedule):
    """Keras CosineDecay with epochs as steps.

    Without warmup: `initial_lr * ((1 - alpha) * 0.5 * (1 + cos(pi * min(epoch, decay_epochs) / decay_epochs))
    + alpha)`. With `warmup_target`: the rate rises linearly from `initial_lr` (epoch 0) towards
    `warmup_target` over `warmup_epochs`, then the cosine above runs from `warmup_target` over the next
    `decay_epochs`; after both it stays at `alpha * warmup_target`.
    """

    name = "cosine_decay"

    def __init__(self, decay_epochs, alpha=0.0, warmup_epochs=0, warmup_target=None):
        self.decay_epochs = check_positive_int("decay_epochs", decay_epochs)
        self.alpha = check_float_range("alpha", alpha, 0.0, 1.0)
        self.warmup_epochs = check_non_negative_int("warmup_epochs", warmup_epochs)
        self.warmup_target = None if warmup_target is None else _non_negative("warmup_target", warmup_target)
        # Keras silently ignores warmup steps without a target; here that is a mistake worth naming.
        if self.warmup_epochs and self.warmup_target is None:
            raise ArgumentError("`warmup_epochs` needs `warmup_target` (the rate the warmup rises to).")

    def _cosine(self, epoch, from_lr):
        fraction = min(epoch, self.decay_epochs) / self.decay_epochs
        return from_lr * ((1.0 - self.alpha) * 0.5 * (1.0 + math.cos(math.pi * fraction)) + self.alpha)

    def __call__(self, epoch, initial_lr):
        if self.warmup_target is None:
            return self._cosine(epoch, initial_lr)
        if epoch < self.warmup_epochs:
            return initial_lr + (self.warmup_target - initial_lr) * epoch / self.warmup_epochs
        return self._cosine(epoch - self.warmup_epochs, self.warmup_target)

    def get_config(self):
        return {"decay_epochs": self.decay_epochs, "alpha": self.alpha, "warmup_epochs": self.warmup_epochs,
                "warmup_target": self.warmup_target}


class LinearWarmup(Schedule):
    """`initial_lr * (start_factor + (1 - start_factor) * min(1, (epoch + 1) / warmup_epochs))`, then constant.

    `start_factor` is the factor at a virtual epoch -1, so the first epoch already trains (at
    `initial_lr / warmup_epochs` with the default 0), epoch `warmup_epochs - 1` is the first at the full
    `initial_lr`, and `warmup_epochs=1` is no warmup at all. For warmup followed by decay use
    `cosine_decay` with `warmup_epochs` and `warmup_target`.
    """

    name = "linear_warmup"

    def __init__(self, warmup_epochs, start_factor=0.0):
        self.warmup_epochs = check_positive_int("warmup_epochs", warmup_epochs)
        self.start_factor = check_float_range("start_factor", start_factor, 0.0, 1.0)

    def __call__(self, epoch, initial_lr):
        progress = min(1.0, (epoch + 1) / self.warmup_epochs)
        return initial_lr * (self.start_factor + (1.0 - self.start_factor) * progress)

    def get_config(self):
        return {"warmup_epochs": self.warmup_epochs, "start_factor": self.start_factor}


class PiecewiseConstant(Schedule):
    """Keras PiecewiseConstantDecay over epochs: `values[0]` while epoch <= boundaries[0], `values[i]` while
    boundaries[i-1] < epoch <= boundaries[i], `values[-1]` after the last boundary. The values are absolute
    learning rates: the optimizer's own rate is not used."""

    name = "piecewise_constant"

    def __init__(self, boundaries, values):
        if not isinstance(boundaries, (list, tuple)):
            raise ArgumentError(f"`boundaries` must be a list of epochs, got {boundaries!r}.")
        if not isinstance(values, (list, tuple)):
            raise ArgumentError(f"`values` must be a list of learning rates, got {values!r}.")
        self.boundaries = [check_non_negative_int("boundaries", b) for b in boundaries]
        self.values = [_non_negative("values", v) for v in values]
        if any(b >= c for b, c in zip(self.boundaries, self.boundaries[1:])):
            raise ArgumentError(f"`boundaries` must be strictly increasing, got {list(boundaries)}.")
        if len(self.values) != len(self.boundaries) + 1:
            raise ArgumentError(f"`values` must have one more entry than `boundaries` ({len(self.boundaries) + 1}),"
                                f" got {len(self.values)}.")

    def __call__(self, epoch, initial_lr):
        return self.values[bisect.bisect_left(self.boundaries, epoch)]

    def get_config(self):
        return {"boundaries": list(self.boundaries), "values": list(self.values)}


class PolynomialDecay(Schedule):
    """Keras PolynomialDecay over epochs: `(initial_lr - end_learning_rate) * (1 - e / d) ** power +
    end_learning_rate` with e = min(epoch, decay_epochs), d = decay_epochs; with `cycle`, d grows to the next
    multiple of decay_epochs above the epoch instead (e = epoch)."""

    name = "polynomial_decay"

    def __init__(self, decay_epochs, end_learning_rate=1e-4, power=1.0, cycle=False):
        self.decay_epochs = check_positive_int("decay_epochs", decay_epochs)
        self.end_learning_rate = _non_negative("end_learning_rate", end_learning_rate)
        self.power = _positive("power", power)
        self.cycle = check_bool("cycle", cycle)

    def __call__(self, epoch, initial_lr):
        span = self.decay_epochs
        if self.cycle:
            span *= max(1, math.ceil(epoch / self.decay_epochs))
        else:
            epoch = min(epoch, span)
        return (initial_lr - self.end_learning_rate) * (1.0 - epoch / span) ** self.power + self.end_learning_rate

    def get_config(self):
        return {"decay_epochs": self.decay_epochs, "end_learning_rate": self.end_learning_rate,
                "power": self.power, "cycle": self.cycle}


SCHEDULES = Registry(
    "schedule",
    entries={"step_decay": StepDecay, "exponential_decay": ExponentialDecay, "cosine_decay": CosineDecay,
             "linear_warmup": LinearWarmup, "piecewise_constant": PiecewiseConstant,
             "polynomial_decay": PolynomialDecay, "inverse_time_decay": InverseTimeDecay},
    aliases={"step": "step_decay", "exponential": "exponential_decay", "cosine": "cosine_decay",
             "warmup": "linear_warmup", "piecewise": "piecewise_constant",
             "piecewise_constant_decay": "piecewise_constant", "polynomial": "polynomial_decay",
             "inverse_time": "inverse_time_decay"},
    base=Schedule,
)
