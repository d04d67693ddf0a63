"""Recurrent feature pyramids for the detector (Metavision's ``Vanilla``, ``Vanilla_VGG``, ``Vanilla_VGGRU``).

All three share one layout: a convolutional *stem* of ``stem_depth`` stride-2 blocks applied to every time bin at
once (time folded into the batch), reaching stride ``2**stem_depth`` (16 by default), then ``num_levels``
convolutional RNN levels: the first keeps the stem's resolution, each next one halves it. Every RNN level is one
pyramid level, so ``forward(x (T, B, C, H, W))`` returns ``num_levels`` maps ``(T, B, cout, h_l, w_l)`` with
``h_0 = ceil(H / 2**stem_depth)`` and ``h_l = ceil(h_{l-1} / 2)``.

* ``Vanilla``: stem of conv + squeeze-excite blocks, convolutional LSTM levels.
* ``Vanilla_VGG``: stem of VGG blocks (two 3x3 convs, the second strided), convolutional LSTM levels.
* ``Vanilla_VGGRU``: the VGG stem with convolutional GRU levels.

The recurrent state persists across calls (streaming); reset it with the loader's ``mask_keep_memory`` through
:func:`evframe.models.temporal.reset_recurrent_states` (the Lightning module does it before every batch).
"""

from __future__ import annotations

import torch
from torch import nn

from evframe.models.layers import ConvLayer, SEConvLayer
from evframe.models.temporal import ConvRNN, seq_wise


def _stem_channels(base: int, depth: int) -> list[int]:
    """Channels after each stem block: 2b, 4b, 8b, then 8b (wider blocks gain little at coarse resolution)."""
    return [base * 2 ** min(i + 1, 3) for i in range(depth)]


def se_stem(cin: int, base: int, depth: int) -> nn.Sequential:
    """``depth`` stride-2 blocks of a 3x3 conv layer followed by squeeze-excitation (the first conv is 5x5: with
    few input channels, a wider first kernel is cheap and sees more context)."""
    layers: list[nn.Module] = []
    channels = [cin, *_stem_channels(base, depth)]
    for i in range(depth):
        layers.append(SEConvLayer(channels[i], channels[i + 1], 5 if i == 0 else 3, 2, separable=False))
    return nn.Sequential(*layers)


def vgg_stem(cin: int, base: int, depth: int) -> nn.Sequential:
    """``depth`` VGG blocks: a 3x3 conv layer then a strided 3x3 conv layer."""
    layers: list[nn.Module] = []
    channels = [cin, *_stem_channels(base, depth)]
    for i in range(depth):
        layers += [ConvLayer(channels[i], channels[i + 1], 3, 1), ConvLayer(channels[i + 1], channels[i + 1], 3, 2)]
    return nn.Sequential(*layers)


class RecurrentPyramid(nn.Module):
    """A stem (applied to every time bin at once) then ``num_levels`` ConvRNN levels (see the module docstring).

    Args:
        stem: 2-D module ``(N, cin, H, W) -> (N, stem_channels, H / 2**stem_depth, ...)``.
        stem_channels: its output channels.
        cout: channels of every pyramid level.
        num_levels: number of ConvRNN levels (pyramid levels).
        cell: ``"lstm"`` or ``"gru"``.
        separable: depthwise-separable input-to-hidden and hidden-to-hidden convolutions in the ConvRNNs (several
            times fewer multiply-adds: the RNN levels dominate the cost of the network).
    """

    def __init__(self, stem: nn.Module, stem_channels: int, cout: int, num_levels: int, cell: str,
                 separable: bool = False) -> None:
        super().__init__()
        if num_levels < 1:
            raise ValueError(f"{type(self).__name__}: num_levels must be >= 1, got {num_levels}")
        self.cout = cout
        self.num_levels = num_levels
        self.stem = seq_wise(stem)
        self.levels = nn.ModuleList(
            ConvRNN(stem_channels if i == 0 else cout, cout, 3, 1 if i == 0 else 2, 1, cell=cell, separable=separable,
                    separable_hidden=separable)
            for i in range(num_levels)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(T, B, C, H, W)`` -> ``num_levels`` maps ``(T, B, cout, h_l, w_l)``, finest first."""
        y = self.stem(x)
        outs: list[torch.Tensor] = []
        for level in self.levels:
            y = level(y)
            outs.append(y)
        return outs


class Vanilla(RecurrentPyramid):
    """Squeeze-excite stem to stride ``2**stem_depth``, then convolutional LSTM levels.

    Args:
        cin: input channels; base: width factor of the stem; cout: channels of the pyramid levels;
        num_levels: pyramid levels; stem_depth: stride-2 stem blocks; separable: depthwise-separable ConvRNNs.
    """

    def __init__(self, cin: int = 1, base: int = 16, cout: int = 256, num_levels: int = 4, stem_depth: int = 4,
                 separable: bool = False):
        super().__init__(se_stem(cin, base, stem_depth), _stem_channels(base, stem_depth)[-1], cout, num_levels,
                         "lstm", separable)


class Vanilla_VGG(RecurrentPyramid):  # noqa: N801 - Metavision's name
    """VGG stem to stride ``2**stem_depth``, then convolutional LSTM levels (arguments as :class:`Vanilla`)."""

    def __init__(self, cin: int = 1, base: int = 16, cout: int = 256, num_levels: int = 4, stem_depth: int = 4,
                 separable: bool = False):
        super().__init__(vgg_stem(cin, base, stem_depth), _stem_channels(base, stem_depth)[-1], cout, num_levels,
                         "lstm", separable)


class Vanilla_VGGRU(RecurrentPyramid):  # noqa: N801 - Metavision's name
    """VGG stem to stride ``2**stem_depth``, then convolutional GRU levels (arguments as :class:`Vanilla`)."""

    def __init__(self, cin: int = 1, base: int = 16, cout: int = 256, num_levels: int = 4, stem_depth: int = 4,
                 separable: bool = False):
        super().__init__(vgg_stem(cin, base, stem_depth), _stem_channels(base, stem_depth)[-1], cout, num_levels,
                         "gru", separable)


FEATURE_EXTRACTORS: dict[str, type[RecurrentPyramid]] = {
    "Vanilla": Vanilla,
    "Vanilla_VGG": Vanilla_VGG,
    "Vanilla_VGGRU": Vanilla_VGGRU,
}

__all__ = ["FEATURE_EXTRACTORS", "RecurrentPyramid", "Vanilla", "Vanilla_VGG", "Vanilla_VGGRU", "se_stem",
           "vgg_stem"]
