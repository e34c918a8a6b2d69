"""The Python API's face: `nnctl.Sequential` and `nnctl.Model` are the engine's models (nnctl/nn/) with what a
Keras user expects at a prompt — `fit(verbose=...)` shows the command line's progress, `summary()` prints
the table. The engine's own classes never print (DESIGN.md: progress is a callback the face supplies).
"""

from __future__ import annotations

from nnctl.errors import ArgumentError
from nnctl.named import named
from nnctl.nn import functional
from nnctl.nn import model as _model
from nnctl.nn.multi import MultiModel

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

    @classmethod
    def _several_class(cls):
        return _SeveralModel


class _SeveralModel(Model, MultiModel):
    """`nnctl.Model` with several inputs or outputs (nnctl/nn/multi.py)."""


_SeveralModel.__name__ = _SeveralModel.__qualname__ = "Model"


class TrainedRun:
    """A finished run, ready to use (`nnctl.load_run`): its `model` (trained weights), its `config`, and the
    preprocessing its training data got, which `predict` applies to raw inputs as `nnctl predict` does."""

    def __init__(self, loaded):
        self._loaded = loaded
        self.model, self.config, self.path = loaded.model, loaded.resolved.config, loaded.run.path

    def predict(self, x):
        """Outputs for raw inputs: an array (or a CSR-like matrix) shaped like the run's data before its
        transforms; for a model with several inputs, a dict by input name (or a list), giving a list of outputs."""
        from nnctl.train.inference import predict_inputs
        from nnctl.train.inference_named import predict_named, several

        if several(self.model):
            return predict_named(self._loaded, named(x, self.model.input_names, "the inputs"))
        return predict_inputs(self._loaded, x)

    def predict_texts(self, texts):
        """Outputs for raw texts, for a run trained on imdb or reuters (encoded with its word index)."""
        from nnctl.train.inference import encode_texts, predict_inputs

        return predict_inputs(self._loaded, encode_texts(self._loaded, list(texts)))

    def evaluate(self, split: str = "test") -> dict:
        """The model's loss and metrics on the run's own `split` (its data is read again)."""
        from nnctl.train.inference import evaluate_split

        return evaluate_split(self._loaded, split)

    def __repr__(self):
        return f"<TrainedRun {self.path}>"


def load_run(path, weights=None) -> TrainedRun:
    """The run at `path` (a run folder, `runs/<name>/latest`, …) with its trained weights, or `weights` (e.g.
    `checkpoints/best.safetensors`); damage is one error naming the file, as on the command line."""
    from nnctl.train.inference import load_run as load

    return TrainedRun(load(path, weights))


__all__ = ["Model", "Sequential", "TrainedRun", "load_run"]
