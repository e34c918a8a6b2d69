"""A config's `{type: model, config: …, weights: …, trainable: …}` layer: another config's model as one layer of
this one (Keras: a model is a layer), fresh from its config or starting from a trained run's weights.

    layers:
      - {name: encoder, type: model, config: encoder.yaml, weights: runs/encoder/latest, trainable: false}
      - {type: dense, units: 1, activation: sigmoid}

Paths are relative to the config. The nested model's input shape comes from its config (`model.input_shape`),
from the trained run, or — when it is the first layer — from this model's input. Its weights become this
model's, named `<name>/<layer>/<weight>`; the run saves them with the rest, so `evaluate` and `predict` need
only the nested config (for the architecture), not the trained run it started from.
"""

from __future__ import annotations

import contextvars
from pathlib import Path

from nnctl.errors import NnctlError, ShapeError

_OPEN: contextvars.ContextVar[tuple] = contextvars.ContextVar("nested_configs", default=())


def _path(resolved, text: str) -> Path:
    path = Path(text).expanduser()
    return (path if path.is_absolute() else resolved.base_dir / path).resolve()


def _trained(path: Path):
    """The trained model of a run folder (or of one of its weights files)."""
    from nnctl.train.inference import load_run

    if path.is_file():
        folder = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        return load_run(folder, path).model
    return load_run(path).model


def nested_layer(resolved, spec: dict, shape_hint, pretrained: bool = True):
    """The NestedModel layer `spec` describes; an NnctlError (located by the caller at the entry) otherwise.
    `pretrained=False` skips reading the trained run's weights when only the architecture is needed (a saved
    run's own weights replace them)."""
    from nnctl.config.build import build_model
    from nnctl.config.resolve import load_config
    from nnctl.nn.functional import as_layer

    config = _path(resolved, spec["config"]) if spec.get("config") else None
    weights = _path(resolved, spec["weights"]) if spec.get("weights") else None
    if config is not None and config in _OPEN.get():
        raise NnctlError(f"{config.name} nests itself (through {' → '.join(p.name for p in _OPEN.get())})")
    token = _OPEN.set(_OPEN.get() + ((config,) if config is not None else ()))
    try:
        trained = _trained(weights) if weights is not None and (pretrained or config is None) else None
        if config is not None:
            nested = load_config(config)
            model_section = nested.config.model
            shape = model_section.input_shape or (trained.input_shape if trained is not None else shape_hint)
            if shape is None and not model_section.inputs and model_section.layers[0].type != "input":
                raise NnctlError(f"the input shape of {config.name}'s model is unknown: give its "
                                 f"`model.input_shape`, or put it first in this model")
            model = build_model(nested, input_shape=shape, callbacks=False, pretrained=pretrained)
            if trained is not None:
                given, wanted = trained.get_weights(), model.get_weights()
                if set(given) != set(wanted):
                    extra, missing = sorted(set(given) - set(wanted)), sorted(set(wanted) - set(given))
                    raise NnctlError(f"the weights of {weights} do not fit {config.name}'s model: "
                                     + "; ".join(part for part in (
                                         f"the run has {', '.join(extra)} too" if extra else "",
                                         f"it lacks {', '.join(missing)}" if missing else "") if part))
                try:
                    model.set_weights(given)
                except ShapeError as err:
                    raise NnctlError(f"the weights of {weights} do not fit {config.name}'s model: {err}") from None
        else:
            model = trained
    finally:
        _OPEN.reset(token)
    model.name = spec.get("name") or model.name
    model.trainable = spec.get("trainable", True)
    return as_layer(model)
