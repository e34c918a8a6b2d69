"""The Python API's face: `nnctl.Sequential` and `nnctl.Model` are the engine's models (nnctl/nn/) with what a
Keras user expects at a prompt — `fit(verbose=...)` shows the command line's progress, `summary()` prints
the table. The engine's own classes never print (DESIGN.md: progress is a callback the face supplies).
"""

from __future__ import annotations

from nnctl.errors import ArgumentError
from nnctl.nn import functional
from nnctl.nn import model as _model

# Keras's verbose values → nnctl's progress modes (nnctl/train/progress.py): "auto" and 1, a live bar on a
# terminal (one line per epoch elsewhere); 2, one line per epoch; 0, nothing.
VERBOSE = {"auto": "auto", 1: "auto", 2: "plain", 0: "quiet"}


class _Face:
    def fit(self, x, y, *args, verbose="auto", callbacks=None, **kwargs):
        """The engine's `fit` (same arguments and result) with Keras's `verbose` progress."""
        from nnctl.train.progress import make_progress

        if verbose not in VERBOSE or isinstance(verbose, bool):
            raise ArgumentError(f"`verbose` must be \"auto\", 0, 1 or 2, got {verbose!r}.")
        if VERBOSE[verbose] == "quiet":
            return super().fit(x, y, *args, callbacks=callbacks, **kwargs)
        with make_progress(mode=VERBOSE[verbose]) as progress:
            return super().fit(x, y, *args, callbacks=[*(callbacks or []), progress], **kwargs)

    def save(self, path) -> None:
        """Writes the model (architecture, compile arguments, weights) to one safetensors file: see
        `nnctl.load_model`."""
        from nnctl.saving import save_model

        save_model(self, path)

    def summary(self, print_table: bool = True) -> dict:
        """Prints Keras's table (as `nnctl summary`); returns the same rows and totals as a dict."""
        info = super().summary()
        if print_table:
            from nnctl.cli_render import summary_table

            summary_table(info, self.name)
        return info


class Sequential(_Face, _model.Sequential):
    __doc__ = _model.Sequential.__doc__


class Model(_Face, functional.Model):
    __doc__ = functional.Model.__doc__


__all__ = ["Model", "Sequential"]
