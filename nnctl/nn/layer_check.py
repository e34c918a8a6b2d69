"""`nnctl check-layer`: what a user's layer class must get right, checked on the real model code — its
gradients (weights and input) against central differences in float64, and its config round trip
(`cls(**layer.get_config())` gives the same config: what `nnctl.load_model(..., custom_objects=...)` needs).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

from nnctl.errors import NnctlError


def load_class(spec: str):
    """The class named by `FILE.py:Class` (a file, imported under its own name) or `module:Class`."""
    where, _, name = spec.rpartition(":")
    if not where or not name:
        raise NnctlError(f"{spec!r}: give FILE.py:Class or module:Class, e.g. my_layers.py:SimpleDense")
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise NnctlError(f"{where}: no such file")
        module_name = f"nnctl_user_{path.stem}"
        loader = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(loader)
        sys.modules[module_name] = module
        loader.loader.exec_module(module)
    else:
        module = importlib.import_module(where)
    cls = getattr(module, name, None)
    from nnctl.nn.layers import Layer

    if not (isinstance(cls, type) and issubclass(cls, Layer)):
        raise NnctlError(f"{spec}: {name!r} is not a Layer class in {where}")
    return cls


def check_layer(cls, arguments: dict, input_shape: tuple, seed: int = 0) -> list[tuple[str, bool, str]]:
    """[(check, passed, detail)] for `cls(**arguments)` on inputs of `input_shape` (without the batch)."""
    from nnctl.nn.layers import Dense
    from nnctl.nn.model import Sequential

    results = []
    rng = np.random.default_rng(seed)
    # A linear Dense before the layer: its weight gradient checks the layer's input gradient too.
    model = Sequential([Dense(int(input_shape[-1])), cls(**arguments)], input_shape=input_shape, seed=seed,
                       dtype="float64")
    model.compile(optimizer="sgd", loss="mse")
    model.store.values += rng.normal(0, 0.1, model.store.values.size)
    x = rng.standard_normal((4,) + tuple(input_shape))
    y = rng.standard_normal((4,) + tuple(model.output_shape))
    model.compute_gradients(x, y)
    analytic = model.store.grads.copy()
    numeric = np.zeros_like(analytic)
    values = model.store.values
    for i in range(values.size):
        keep = values[i]
        values[i] = keep + 1e-6
        up = model.compute_gradients(x, y)[0]
        values[i] = keep - 1e-6
        numeric[i] = (up - model.compute_gradients(x, y)[0]) / 2e-6
        values[i] = keep
    error = np.abs(analytic - numeric) / np.maximum(np.abs(numeric), 1e-4)
    worst = int(np.argmax(error)) if error.size else 0
    names = [p.name for p in model.store.params for _ in range(p.size)]
    results.append(("gradients (weights and input, central differences, float64)", bool(error.max(initial=0) < 1e-4),
                    f"max relative error {error.max(initial=0):.1e}" + (f" at {names[worst]}" if error.size else "")))
    layer = model.layers[1]
    try:
        config = layer.get_config()
        again = cls(**{k: v for k, v in config.items()}).get_config()
        same = again == config
        results.append(("config round trip: cls(**get_config())", same, "same config" if same else
                        f"{config} became {again}"))
    except Exception as err:  # noqa: BLE001 — a user's class: report whatever it raises
        results.append(("config round trip: cls(**get_config())", False, f"{type(err).__name__}: {err}"))
    return results
