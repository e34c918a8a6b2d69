"""The layer library, one module per family; `LAYERS` is the name → class table configs and specs read.

A new layer is one class in its family's module and one line in the table below.
"""

from nnctl.nn.layers.base import Layer, Param
from nnctl.nn.layers.core import Activation, Dense, Dropout, Flatten, Input, Reshape
from nnctl.nn.layers.embedding import Embedding
from nnctl.nn.layers.regularization import SpatialDropout1D, SpatialDropout2D
from nnctl.registry import Registry

LAYERS = Registry(
    "layer",
    entries={
        "input": Input, "dense": Dense, "activation": Activation, "dropout": Dropout, "flatten": Flatten,
        "reshape": Reshape,
        "embedding": Embedding,
        "spatial_dropout1d": SpatialDropout1D, "spatial_dropout2d": SpatialDropout2D,
    },
    aliases={"input_layer": "input", "fully_connected": "dense", "linear": "dense"},
    base=Layer,
)

__all__ = ["LAYERS", "Layer", "Param", "Input", "Dense", "Activation", "Dropout", "Flatten", "Reshape", "Embedding",
           "SpatialDropout1D", "SpatialDropout2D"]
