"""Keras's `keras.datasets` for the Python API: `nnctl.datasets.imdb.load_data(num_words=10000)` and the
others return `(x_train, y_train), (x_test, y_test)` as Keras does, from the same files (found in
`$NNCTL_DATA_DIR`, the cache, or downloaded and hash-checked; nothing is unpickled).

The word-index datasets give `x` as Keras does, an object array of lists of word indexes; `get_word_index()`
gives the word → index table.
"""

from __future__ import annotations

import numpy as np


def _pairs(data):
    return (_keras_x(data.x_train), data.y_train), (_keras_x(data.x_test), data.y_test)


def _keras_x(x):
    """Sequences → Keras's object array of lists (other arrays as they are)."""
    if not hasattr(x, "to_lists"):
        return x
    out = np.empty(len(x), dtype=object)
    out[:] = x.to_lists()
    return out


class _Module:
    """One `nnctl.datasets.<name>` namespace: `load_data` with Keras's arguments (and `get_word_index`)."""

    def __init__(self, name, loader, words=False):
        self.__name__, self._loader, self._words = f"nnctl.datasets.{name}", loader, words
        self.name = name

    def load_data(self, *args, **kwargs):
        from nnctl.data import builtin

        return _pairs(getattr(builtin, self._loader)(*args, **kwargs))

    def get_word_index(self):
        if not self._words:
            raise AttributeError(f"{self.__name__} has no word index")
        from nnctl.data.builtin import word_index

        return dict(word_index(self.name))

    def __repr__(self):
        return f"<nnctl dataset module {self.__name__}>"


imdb = _Module("imdb", "load_imdb", words=True)
reuters = _Module("reuters", "load_reuters", words=True)
mnist = _Module("mnist", "load_mnist")
fashion_mnist = _Module("fashion_mnist", "load_fashion_mnist")
boston_housing = _Module("boston_housing", "load_boston_housing")

__all__ = ["boston_housing", "fashion_mnist", "imdb", "mnist", "reuters"]
