"""nnctl: declarative deep-learning training from YAML on a Numba kernel engine.

`import nnctl` stays light: the engine (and Numba) loads only when a model is built.
"""

__version__ = "0.1.0"
