"""The outputs of a model with several (nn/multi.py): `Head`, one output's node, shape, loss and metrics; and
`per_output`, compile's loss, loss_weights and metrics read per output as Keras reads them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nnctl.errors import ArgumentError


@dataclass
class Head:
    """One model output: its node, shape, columns in the packed output rows, loss and metrics."""

    name: str
    node: int
    shape: tuple
    columns: slice
    loss: object = None
    weight: float = 1.0
    code: int = 0
    fused: bool = False
    metrics: list = field(default_factory=list)

    @property
    def units(self) -> int:
        return int(self.shape[-1])

    @property
    def steps(self) -> int:
        return int(np.prod(self.shape[:-1]))



def per_output(spec, names: list[str], what: str, single_applies: bool, default=None) -> dict:
    """`spec` as {output name: value}: a dict by name, a list in output order, or (when `single_applies`) one
    value for every output, as Keras's compile reads loss, loss_weights and metrics."""
    if spec is None:
        if default is None and what == "loss":
            raise ArgumentError("`loss` is required")
        return {name: default for name in names}
    if isinstance(spec, dict) and "type" not in spec:
        unknown = [str(key) for key in spec if key not in names]
        if unknown:
            raise ArgumentError(f"`{what}` names {', '.join(repr(u) for u in unknown)}, which is not an output "
                                f"(the outputs: {', '.join(names)})")
        if what == "loss":
            missing = [name for name in names if name not in spec]
            if missing:
                raise ArgumentError(f"`loss` gives no loss for output {', '.join(repr(m) for m in missing)}")
        return {name: spec.get(name, default) for name in names}
    if isinstance(spec, (list, tuple)) and not (what == "metrics" and len(names) == 1):
        if len(spec) != len(names):
            raise ArgumentError(f"`{what}` as a list needs one entry per output ({len(names)}: {', '.join(names)}), "
                                f"got {len(spec)}; or give a dict by output name")
        return dict(zip(names, spec))
    if single_applies or len(names) == 1:
        return {name: spec for name in names}
    raise ArgumentError(f"`{what}` for a model with several outputs is a dict by output name or a list in "
                        f"output order ({', '.join(names)})")
