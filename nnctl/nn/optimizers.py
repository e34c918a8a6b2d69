"""Optimizers with Keras names, arguments and defaults; the update itself is one engine kernel call.

An optimizer owns its slots (flat buffers shaped like the model's parameter buffer) and its step count.
"""

from __future__ import annotations

import numpy as np

from nnctl.engine.cpu.optim import (
    CLIP_GLOBAL_NORM,
    CLIP_NONE,
    CLIP_NORM,
    CLIP_VALUE,
    LR,
    OPTIMIZER_CODES,
    WEIGHT_DECAY,
)
from nnctl.errors import ArgumentError, check_float_range
from nnctl.nn.store import aligned_full
from nnctl.registry import Registry


def _positive(name, value):
    return check_float_range(name, value, 0.0, float("inf"), low_open=True)


class Optimizer:
    """Base: a subclass sets `kernel` (an engine optimizer name) and `slot_count`, validates its own
    arguments and returns them in `_own_hyperparameters()` in the order the kernel documents.

    Example:
        class Momentum(SGD):
            def __init__(self, learning_rate=0.01): super().__init__(learning_rate, momentum=0.9)
    """

    kernel = ""
    slot_count = 0

    def __init__(self, learning_rate=0.001, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None):
        self.learning_rate = _positive("learning_rate", learning_rate)
        self.weight_decay = None if weight_decay is None else check_float_range(
            "weight_decay", weight_decay, 0.0, float("inf"))
        clips = {k: v for k, v in (("clipnorm", clipnorm), ("clipvalue", clipvalue),
                                   ("global_clipnorm", global_clipnorm)) if v is not None}
        if len(clips) > 1:
            raise ArgumentError(f"only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set, "
                                f"got {', '.join(clips)}.")
        self.clipnorm, self.clipvalue, self.global_clipnorm = clipnorm, clipvalue, global_clipnorm
        self.clip_mode, self.clip = CLIP_NONE, 0.0
        for name, mode in (("clipnorm", CLIP_NORM), ("clipvalue", CLIP_VALUE), ("global_clipnorm", CLIP_GLOBAL_NORM)):
            if name in clips:
                self.clip_mode, self.clip = mode, _positive(name, clips[name])
        self.iterations = 0
        self.slots: list[np.ndarray] = []
        self.reset_row_clocks()

    def _own_hyperparameters(self) -> list[float]:
        return []

    def hyperparameters(self) -> np.ndarray:
        """The kernel's `hp` vector: learning rate, weight decay, then the optimizer's own values."""
        hp = np.zeros(8, dtype=np.float64)
        hp[LR] = self.learning_rate
        hp[WEIGHT_DECAY] = self.weight_decay or 0.0
        own = self._own_hyperparameters()
        hp[2:2 + len(own)] = own
        return hp

    @property
    def code(self) -> int:
        return OPTIMIZER_CODES[self.kernel]

    def build(self, size: int) -> None:
        """Allocates the slots for `size` parameters (unused slots are 1-element placeholders).

        Filled, not `np.zeros`: calloc'd pages stay unmapped until written, and the vectorized update
        loop's masked loads of a slot it never writes (RMSprop without `centered`) then take a
        microcode assist on every access — 20× slower on MNIST-sized layers. Cache-line aligned like
        the parameters (store.aligned_full).
        """
        self.slots = [aligned_full(size if i < self.slot_count else 1, 0.0) for i in range(3)]
        self.iterations = 0
        self.reset_row_clocks()

    def apply(self, backend, store) -> None:
        """One update of every parameter in `store` (a ParameterStore) from its gradients."""
        hp = self.hyperparameters()
        if not (store.row_params and self._rows_kernel()):
            backend.optimizer_step(self.code, hp, self.iterations, store.offsets, store.values, store.grads,
                                   *self.slots, self.clip_mode, self.clip)
        else:
            # Everything but the row-sparse tables (placed last) in one range, then each table by its rows.
            dense = len(store.params) - len(store.row_params)
            backend.optimizer_step(self.code, hp, self.iterations, store.offsets[:dense + 1], store.values,
                                   store.grads, *self.slots, self.clip_mode, self.clip)
            for index, param in enumerate(store.row_params, start=dense):
                self._step_rows(backend, store, hp, index, param)
        self.iterations += 1

    # ---- row-sparse tables ----------------------------------------------------------------------
    def _rows_kernel(self) -> str | None:
        """The by-rows kernel when this optimizer's dense step changes nothing but a decaying accumulator in
        rows with a zero gradient (plain SGD, RMSprop without momentum), else None: a dense step."""
        if self.weight_decay or self.clip_mode != CLIP_NONE:
            return None
        return {"rmsprop_plain": "rmsprop_rows_step", "sgd": "sgd_rows_step" if not getattr(
            self, "momentum", 1.0) else None}.get(self.kernel)

    def _step_rows(self, backend, store, hp, index, param) -> None:
        span = slice(int(store.offsets[index]), int(store.offsets[index + 1]))
        last = self._row_clocks.get(param.name)
        if last is None:  # every row current as of the last step
            last = self._row_clocks[param.name] = np.full(param.shape[0], self.iterations - 1, np.int64)
        if param.rows is None:  # any row may have a gradient: bring all up to date, then one dense step
            self._flush_one(backend, hp, last, self.slots[0][span].reshape(param.shape))
            backend.optimizer_step(self.code, hp, self.iterations, store.offsets[index:index + 2], store.values,
                                   store.grads, *self.slots, self.clip_mode, self.clip)
            last[:] = self.iterations
            return
        table = lambda buffer: buffer[span].reshape(param.shape)  # noqa: E731
        getattr(backend, self._rows_kernel())(hp, self.iterations, param.rows, last, table(store.values),
                                              table(store.grads), table(self.slots[0]))

    def _flush_one(self, backend, hp, last, slot) -> None:
        backend.rows_flush(hp, self.iterations, last, slot, 1 if self.kernel == "rmsprop_plain" else 0)

    def flush(self, backend, store) -> None:
        """Applies every decay the by-rows updates still owe (at each epoch's end, before anything reads the
        slots: checkpoints then hold what a dense update would, to float32 rounding)."""
        if not self._row_clocks:
            return
        hp = self.hyperparameters()
        dense = len(store.params) - len(store.row_params)
        for index, param in enumerate(store.row_params, start=dense):
            last = self._row_clocks.get(param.name)
            if last is not None:
                span = slice(int(store.offsets[index]), int(store.offsets[index + 1]))
                self._flush_one(backend, hp, last, self.slots[0][span].reshape(param.shape))

    def reset_row_clocks(self) -> None:
        """Forget which rows are behind: after build, flush or a restored checkpoint every row is current."""
        self._row_clocks: dict[str, np.ndarray] = {}

    def get_config(self) -> dict:
        return {"learning_rate": self.learning_rate, "weight_decay": self.weight_decay,
                "clipnorm": self.clipnorm, "clipvalue": self.clipvalue, "global_clipnorm": self.global_clipnorm}


class SGD(Optimizer):
    kernel, slot_count = "sgd", 1

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.momentum = check_float_range("momentum", momentum, 0.0, 1.0)
        if not isinstance(nesterov, bool):
            raise ArgumentError(f"`nesterov` must be true or false, got {nesterov!r}.")
        self.nesterov = nesterov

    def _own_hyperparameters(self):
        return [self.momentum, float(self.nesterov)]

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class RMSprop(Optimizer):
    slot_count = 3

    @property
    def kernel(self) -> str:
        return "rmsprop" if self.momentum or self.centered else "rmsprop_plain"

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.rho = check_float_range("rho", rho, 0.0, 1.0, high_open=True)
        self.momentum = check_float_range("momentum", momentum, 0.0, 1.0)
        self.epsilon = _positive("epsilon", epsilon)
        if not isinstance(centered, bool):
            raise ArgumentError(f"`centered` must be true or false, got {centered!r}.")
        self.centered = centered

    def _own_hyperparameters(self):
        return [self.rho, self.momentum, self.epsilon, float(self.centered)]

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum, "epsilon": self.epsilon,
                "centered": self.centered}


class Adam(Optimizer):
    kernel, slot_count = "adam", 3

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.beta_1 = check_float_range("beta_1", beta_1, 0.0, 1.0, high_open=True)
        self.beta_2 = check_float_range("beta_2", beta_2, 0.0, 1.0, high_open=True)
        self.epsilon = _positive("epsilon", epsilon)
        if not isinstance(amsgrad, bool):
            raise ArgumentError(f"`amsgrad` must be true or false, got {amsgrad!r}.")
        self.amsgrad = amsgrad

    def _own_hyperparameters(self):
        return [self.beta_1, self.beta_2, self.epsilon, float(self.amsgrad)]

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon,
                "amsgrad": self.amsgrad}


class AdamW(Adam):
    """Adam with decoupled weight decay (Keras default 0.004)."""

    def __init__(self, learning_rate=0.001, weight_decay=0.004, **kwargs):
        super().__init__(learning_rate, weight_decay=weight_decay, **kwargs)


class Adagrad(Optimizer):
    kernel, slot_count = "adagrad", 1

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.initial_accumulator_value = check_float_range(
            "initial_accumulator_value", initial_accumulator_value, 0.0, float("inf"))
        self.epsilon = _positive("epsilon", epsilon)

    def build(self, size):
        super().build(size)
        self.slots[0][:] = self.initial_accumulator_value

    def _own_hyperparameters(self):
        return [self.epsilon]

    def get_config(self):
        return {**super().get_config(), "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}


OPTIMIZERS = Registry(
    "optimizer",
    entries={"sgd": SGD, "rmsprop": RMSprop, "adam": Adam, "adamw": AdamW, "adagrad": Adagrad},
    aliases={"gradient_descent": "sgd", "rms_prop": "rmsprop"},
    base=Optimizer,
)
