"""Activation names (Keras spellings) → engine codes, with each one's default parameter."""

from __future__ import annotations

from nnctl.registry import Registry

# name → (engine activation name, default alpha: ELU's alpha or leaky ReLU's negative slope)
_TABLE = {
    "linear": ("linear", 0.0), "relu": ("relu", 0.0), "sigmoid": ("sigmoid", 0.0), "tanh": ("tanh", 0.0),
    "softmax": ("softmax", 0.0), "elu": ("elu", 1.0), "leaky_relu": ("leaky_relu", 0.2),
    "softplus": ("softplus", 0.0), "gelu": ("gelu", 0.0),
}
ACTIVATIONS = Registry("activation", entries={name: (lambda n=name: _TABLE[n]) for name in _TABLE},
                       aliases={"none": "linear", "identity": "linear", "leakyrelu": "leaky_relu"})


def resolve_activation(name: str | None) -> str:
    """Canonical activation name; None means linear (Keras's `activation=None`)."""
    return "linear" if name is None else ACTIVATIONS.canonical(name)


def default_alpha(name: str) -> float:
    return _TABLE[name][1]
