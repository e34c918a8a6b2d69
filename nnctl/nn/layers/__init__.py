"""The layer library, one module per family; `LAYERS` is the name → class table configs and specs read.

A new layer is one class in its family's module and one line in the table below.
"""

from nnctl.nn.layers.base import Layer, Param
from nnctl.nn.layers.conv import Conv1D, Conv2D
from nnctl.nn.layers.core import Activation, Dense, Dropout, Flatten, Input, Masking, Reshape
from nnctl.nn.layers.embedding import Embedding
from nnctl.nn.layers.merge import Add, Average, Concatenate, Dot, Maximum, Minimum, Multiply, Subtract
from nnctl.nn.layers.normalization import BatchNormalization, LayerNormalization
from nnctl.nn.layers.pooling import (AveragePooling1D, AveragePooling2D, GlobalAveragePooling1D, GlobalAveragePooling2D,
                                     GlobalMaxPooling1D, GlobalMaxPooling2D, MaxPooling1D, MaxPooling2D)
from nnctl.nn.layers.recurrent import GRU, LSTM, SimpleRNN
from nnctl.nn.layers.regularization import SpatialDropout1D, SpatialDropout2D
from nnctl.nn.layers.wrappers import Bidirectional
from nnctl.registry import Registry

LAYERS = Registry(
    "layer",
    entries={
        "input": Input, "dense": Dense, "activation": Activation, "dropout": Dropout, "flatten": Flatten,
        "reshape": Reshape,
        "embedding": Embedding,
        "spatial_dropout1d": SpatialDropout1D, "spatial_dropout2d": SpatialDropout2D,
        "conv1d": Conv1D, "conv2d": Conv2D,
        "max_pooling1d": MaxPooling1D, "max_pooling2d": MaxPooling2D,
        "average_pooling1d": AveragePooling1D, "average_pooling2d": AveragePooling2D,
        "global_max_pooling1d": GlobalMaxPooling1D, "global_max_pooling2d": GlobalMaxPooling2D,
        "global_average_pooling1d": GlobalAveragePooling1D, "global_average_pooling2d": GlobalAveragePooling2D,
        "batch_normalization": BatchNormalization, "layer_normalization": LayerNormalization,
        "masking": Masking, "simple_rnn": SimpleRNN, "lstm": LSTM, "gru": GRU, "bidirectional": Bidirectional,
        "add": Add, "subtract": Subtract, "multiply": Multiply, "average": Average, "maximum": Maximum,
        "minimum": Minimum, "concatenate": Concatenate, "dot": Dot,
    },
    # Keras's own aliases (keras.layers.Convolution2D, MaxPool2D, GlobalAvgPool1D, ...).
    aliases={"input_layer": "input", "fully_connected": "dense", "linear": "dense",
             "convolution1d": "conv1d", "convolution2d": "conv2d",
             "max_pool1d": "max_pooling1d", "max_pool2d": "max_pooling2d",
             "avg_pool1d": "average_pooling1d", "avg_pool2d": "average_pooling2d",
             "global_max_pool1d": "global_max_pooling1d", "global_max_pool2d": "global_max_pooling2d",
             "global_avg_pool1d": "global_average_pooling1d", "global_avg_pool2d": "global_average_pooling2d"},
    base=Layer,
)

# The layers Bidirectional can wrap.
RECURRENT_TYPES = ("simple_rnn", "lstm", "gru")

__all__ = ["LAYERS", "RECURRENT_TYPES", "Masking", "SimpleRNN", "LSTM", "GRU", "Bidirectional", "Layer", "Param",
           "Input", "Dense", "Activation", "Dropout", "Flatten", "Reshape", "Embedding", "Add", "Subtract",
           "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot",
           "SpatialDropout1D", "SpatialDropout2D", "Conv1D", "Conv2D", "MaxPooling1D", "MaxPooling2D",
           "AveragePooling1D", "AveragePooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D",
           "GlobalAveragePooling1D", "GlobalAveragePooling2D", "BatchNormalization", "LayerNormalization"]
