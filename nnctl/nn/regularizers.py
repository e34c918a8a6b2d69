"""Weight penalties (Keras names): l1, l2, l1_l2; the engine's `regularize` kernel applies them."""

from __future__ import annotations

from nnctl.errors import check_float_range
from nnctl.registry import Registry


class Regularizer:
    """A penalty l1·Σ|w| + l2·Σw² added to the loss; subclasses only choose the two factors."""

    def __init__(self, l1: float = 0.0, l2: float = 0.0):
        self.l1 = check_float_range("l1", l1, 0.0, float("inf"))
        self.l2 = check_float_range("l2", l2, 0.0, float("inf"))

    def get_config(self) -> dict:
        return {"l1": self.l1, "l2": self.l2}


class L1(Regularizer):
    def __init__(self, l1: float = 0.01):
        super().__init__(l1=l1)

    def get_config(self):
        return {"l1": self.l1}


class L2(Regularizer):
    def __init__(self, l2: float = 0.01):
        super().__init__(l2=l2)

    def get_config(self):
        return {"l2": self.l2}


class L1L2(Regularizer):
    def __init__(self, l1: float = 0.01, l2: float = 0.01):
        super().__init__(l1=l1, l2=l2)


REGULARIZERS = Registry("regularizer", entries={"l1": L1, "l2": L2, "l1_l2": L1L2}, base=Regularizer)
