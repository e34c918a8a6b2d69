"""Single optimizer steps against numbers worked out by hand from Keras's update rules."""

import math

import numpy as np
import pytest

from nnctl.engine.backend import get_backend
from nnctl.errors import ArgumentError, UnknownNameError
from nnctl.nn.layers import Param
from nnctl.nn.optimizers import OPTIMIZERS
from nnctl.nn.store import ParameterStore


def step(spec, values, grads, steps=1):
    """Applies `steps` updates with fixed gradients to parameters built from `values` (a list of lists)."""
    params = [Param(f"p{i}", (len(v),), lambda shape, rng, v=v: np.array(v, np.float32)) for i, v in enumerate(values)]
    store = ParameterStore(params, np.random.default_rng(0))
    optimizer = OPTIMIZERS.get(spec)
    optimizer.build(store.values.size)
    for _ in range(steps):
        store.grads[:] = np.concatenate(grads)
        optimizer.apply(get_backend(), store)
    return np.concatenate([p.value for p in params]).tolist()


def test_sgd_plain_momentum_and_nesterov():
    assert step({"type": "sgd", "learning_rate": 0.1}, [[1.0]], [[0.5]]) == pytest.approx([0.95])
    # m1 = −0.05, p1 = 0.95; m2 = 0.9·(−0.05) − 0.05 = −0.095, p2 = 0.855
    assert step({"type": "sgd", "learning_rate": 0.1, "momentum": 0.9}, [[1.0]], [[0.5]], steps=2) == \
        pytest.approx([0.855])
    # Nesterov: p1 = 1 + 0.9·(−0.05) − 0.05 = 0.905
    assert step({"type": "sgd", "learning_rate": 0.1, "momentum": 0.9, "nesterov": True}, [[1.0]], [[0.5]]) == \
        pytest.approx([0.905])


def test_rmsprop_keras_defaults():
    # v = 0.1·0.25 = 0.025; p = 1 − 0.001·0.5/√(0.025 + 1e−7)
    expected = 1 - 0.001 * 0.5 / math.sqrt(0.025 + 1e-7)
    assert step("rmsprop", [[1.0]], [[0.5]]) == pytest.approx([expected], rel=1e-6)
    # momentum 0.5 over two steps: v2 = 0.9·0.025 + 0.025 = 0.0475
    inc1 = 0.001 * 0.5 / math.sqrt(0.025 + 1e-7)
    inc2 = 0.001 * 0.5 / math.sqrt(0.0475 + 1e-7)
    m2 = 0.5 * inc1 + inc2
    assert step({"type": "rmsprop", "momentum": 0.5}, [[1.0]], [[0.5]], steps=2) == \
        pytest.approx([1 - inc1 - m2], rel=1e-6)
    # centered: mean g = 0.05, denominator 0.025 − 0.0025 + 1e−7
    assert step({"type": "rmsprop", "centered": True}, [[1.0]], [[0.5]]) == \
        pytest.approx([1 - 0.001 * 0.5 / math.sqrt(0.0225 + 1e-7)], rel=1e-6)


def test_adam_adamw_amsgrad_and_adagrad():
    # Adam's first step is lr·g/|g| (up to ε): m = 0.05, v = 0.00025, α = 0.001·√0.001/0.1
    alpha = 0.001 * math.sqrt(1 - 0.999) / (1 - 0.9)
    adam1 = 1 - alpha * 0.05 / (math.sqrt(0.00025) + 1e-7)
    assert step("adam", [[1.0]], [[0.5]]) == pytest.approx([adam1], rel=1e-6)
    assert step({"type": "adam", "amsgrad": True}, [[1.0]], [[0.5]]) == pytest.approx([adam1], rel=1e-6)
    # AdamW decays first: p ← p − 0.001·0.004·p, then the Adam step
    assert step("adamw", [[1.0]], [[0.5]]) == pytest.approx([adam1 - 0.001 * 0.004], rel=1e-6)
    # Adagrad: accumulator 0.1 + 0.25 = 0.35
    assert step("adagrad", [[1.0]], [[0.5]]) == pytest.approx([1 - 0.001 * 0.5 / math.sqrt(0.35 + 1e-7)], rel=1e-6)


def test_gradient_clipping_modes():
    sgd = {"type": "sgd", "learning_rate": 1.0}
    # clipnorm is per tensor: [3, 4] (norm 5) → [0.6, 0.8]; [0.3] (norm 0.3) untouched
    assert step({**sgd, "clipnorm": 1.0}, [[0, 0], [0]], [[3, 4], [0.3]]) == pytest.approx([-0.6, -0.8, -0.3])
    # global_clipnorm scales all by 1/norm([3, 4, 0]) = 1/5
    assert step({**sgd, "global_clipnorm": 1.0}, [[0, 0], [0]], [[3, 4], [0]]) == pytest.approx([-0.6, -0.8, 0])
    assert step({**sgd, "clipvalue": 0.5}, [[0, 0]], [[3, -0.2]]) == pytest.approx([-0.5, 0.2])


def test_optimizer_argument_errors_name_the_argument():
    with pytest.raises(ArgumentError, match=r"`momentum` must be a float in \[0.0, 1.0\], got 1.5"):
        OPTIMIZERS.get({"type": "sgd", "momentum": 1.5})
    with pytest.raises(ArgumentError, match="`learning_rate` must be a float"):
        OPTIMIZERS.get({"type": "adam", "learning_rate": -1})
    with pytest.raises(ArgumentError, match="only one of `clipnorm`, `clipvalue` and `global_clipnorm`"):
        OPTIMIZERS.get({"type": "sgd", "clipnorm": 1.0, "clipvalue": 1.0})
    with pytest.raises(UnknownNameError, match="unknown optimizer 'rmsporp' — did you mean 'rmsprop'"):
        OPTIMIZERS.get("rmsporp")
