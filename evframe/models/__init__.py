"""Reusable model parts: sequence helpers, convolutional RNNs and small 2-D blocks."""

from evframe.models.layers import (
    ConvLayer,
    ResBlock,
    SEConvLayer,
    SeparableConvLayer,
    SqueezeExcite,
    conv_layer,
    make_activation,
    make_norm,
)
from evframe.models.temporal import (
    BinHistory,
    ConvGRUCell,
    ConvLSTMCell,
    ConvRNN,
    SequenceWise,
    batch_to_time,
    clear_recurrent_states,
    detach_recurrent_states,
    recurrent_modules,
    reset_recurrent_states,
    seq_wise,
    time_to_batch,
)

__all__ = [
    "BinHistory",
    "ConvGRUCell",
    "ConvLSTMCell",
    "ConvLayer",
    "ConvRNN",
    "ResBlock",
    "SEConvLayer",
    "SeparableConvLayer",
    "SequenceWise",
    "SqueezeExcite",
    "batch_to_time",
    "clear_recurrent_states",
    "conv_layer",
    "detach_recurrent_states",
    "make_activation",
    "make_norm",
    "recurrent_modules",
    "reset_recurrent_states",
    "seq_wise",
    "time_to_batch",
]
