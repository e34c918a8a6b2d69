"""The base of every config mapping, and the tagged unions that pick an entry's schema by its `type`."""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Tag

from nnctl.plugins import LAYER_TYPES  # the layer types plugins registered (a dict filled at run time)


class Section(BaseModel):
    """Every mapping in a config: unknown keys are errors and values are never coerced."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_default=False)


def _tagged(specs: dict) -> Any:
    """A union picked by the (already canonical) `type` key."""
    members = tuple(Annotated[spec, Tag(tag)] for tag, spec in specs.items())
    return Annotated[Union[members], Discriminator(_tag_of)]


def _tag_of(value):
    tag = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return "plugin" if isinstance(tag, str) and tag in LAYER_TYPES else tag
