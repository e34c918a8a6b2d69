"""Explicit name → object tables for every family (layers, losses, optimizers, ...), with Keras aliases.

Each family module builds its own `Registry` from a literal dict at its bottom: no import side effects.
"""

from __future__ import annotations

from typing import Any, Callable

from nnctl.errors import ArgumentError, UnknownNameError, show


def normalize(name: str) -> str:
    """Keras accepts `BinaryCrossentropy`, `binary_crossentropy` and `binary-crossentropy` alike."""
    out = []
    for i, ch in enumerate(str(name).strip()):
        if ch.isupper() and i and (out and out[-1] not in "_.:" and not out[-1].isdigit()):  # Conv2D → conv2d
            out.append("_")
        out.append("_" if ch in "- " else ch.lower())
    return "".join(out)


class Registry:
    """A family's table: `get("rmsprop")`, `get({"type": "rmsprop", "learning_rate": 1e-3})` or an instance.

    Example:
        OPTIMIZERS = Registry("optimizer", base=Optimizer, entries={"sgd": SGD}, aliases={"gd": "sgd"})
    """

    def __init__(self, kind: str, entries: dict[str, Callable], aliases: dict[str, str] | None = None,
                 base: type | None = None):
        self.kind = kind
        self.base = base
        self.entries = dict(entries)
        self.aliases = dict(aliases or {})
        for alias, target in self.aliases.items():
            assert target in self.entries, f"alias {alias!r} points at unknown {target!r}"

    def names(self) -> list[str]:
        """Every accepted spelling: canonical names and aliases."""
        return sorted(set(self.entries) | set(self.aliases))

    def canonical(self, name: str) -> str:
        """The canonical name for `name` or an alias of it; UnknownNameError with a suggestion otherwise."""
        if not isinstance(name, str):
            raise ArgumentError(f"a {self.kind} name must be a string, got {show(name)}.")
        key = normalize(name)
        key = self.aliases.get(key, key)
        if key not in self.entries:
            # Compact spellings like "rmsprop"/"RMSProp" normalize differently; try without underscores.
            squashed = {k.replace("_", ""): k for k in self.names()}
            found = squashed.get(key.replace("_", ""))
            if found is None:  # the list names each entry once; aliases can still be suggested
                raise UnknownNameError(self.kind, name, sorted(self.entries), self.names())
            key = self.aliases.get(found, found)
        return key

    def lookup(self, name: str) -> Callable:
        """The class (or factory) registered under `name`."""
        return self.entries[self.canonical(name)]

    def get(self, spec: Any, **defaults) -> Any:
        """Build from a name, a `{type: name, **kwargs}` dict, or pass an instance through."""
        if self.base is not None and isinstance(spec, self.base):
            return spec
        if isinstance(spec, str):
            return self.lookup(spec)(**defaults)
        if isinstance(spec, dict):
            spec = dict(spec)
            if "type" not in spec:
                raise ArgumentError(f"a {self.kind} given as a mapping needs a `type` key, got {show(sorted(map(str, spec)))}.")
            name = spec.pop("type")
            return self.lookup(name)(**{**defaults, **spec})
        raise ArgumentError(f"cannot interpret {show(spec)} as a {self.kind}: give a name or a mapping with `type`.")
