"""nnctl: declarative deep-learning training from YAML on a Numba kernel engine.

`import nnctl` stays light: the engine (and Numba) loads only when a model is built.
"""

__version__ = "0.1.0"

# The Python API a Keras user reaches for, loaded on first use (PEP 562) so the line above stays true.
_API = {"Input": "nnctl.nn.functional", "Model": "nnctl.api", "Sequential": "nnctl.api", "load_model": "nnctl.saving",
        "load_run": "nnctl.api"}


def __getattr__(name):
    import importlib

    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    if name in ("ops", "datasets"):  # `import nnctl; nnctl.ops.matmul(...)`, `nnctl.datasets.imdb`
        return importlib.import_module(f"nnctl.{name}")
    raise AttributeError(f"module 'nnctl' has no attribute {name!r}")
