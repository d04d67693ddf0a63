"""EventToVideo: a recurrent U-Net reconstructing intensity frames from event volumes (Rebecq et al., E2VID).

Every change of resolution is a bilinear resize by a factor 2 (downsampling by strided convolutions, upsampling by
bilinear interpolation to the skip connection's exact size, so odd sizes work). Architectures (``archi``):

* ``all_rnn``: every encoder stage is a :class:`~evframe.models.temporal.ConvRNN` (as E2VID), two residual blocks at
  the bottom;
* ``mid_rnn``: feed-forward encoder, one ConvRNN at the bottom (cheaper: the recurrence runs at the lowest
  resolution only);
* ``no_rnn``: no memory at all (a per-bin U-Net: the ablation showing what memory brings).

Input ``(T, B, in_channels, H, W)``; output ``(T, B, out_channels, H, W)`` in [0, 1] (sigmoid).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from evframe.models.layers import ResBlock, conv_layer
from evframe.models.temporal import ConvRNN, batch_to_time, seq_wise, time_to_batch

ARCHIS = ("all_rnn", "mid_rnn", "no_rnn")


class MergeSkip(nn.Module):
    """Merge with a skip connection: ``x`` is resized bilinearly to the skip's size, then concatenated to it.

    ``forward(x (T, B, Cx, h, w), skip (T, B, Cs, H, W)) -> (T, B, Cx + Cs, H, W)``.
    """

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or skip.ndim != 5 or x.shape[:2] != skip.shape[:2]:
            raise ValueError(f"MergeSkip: x and skip must be (T, B, C, H, W) with the same T and B, got "
                             f"{tuple(x.shape)} and {tuple(skip.shape)}")
        flat, b = time_to_batch(x)
        up = F.interpolate(flat, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([batch_to_time(up, b), skip], dim=2)


class EventToVideo(nn.Module):
    """High Speed and High Dynamic Range Video with an Event Camera (Rebecq et al.): recurrent U-Net.

    Args:
        in_channels: input channels (the event volume depth).
        out_channels: output channels (1: grayscale).
        num_layers: encoder stages (each halves the resolution and doubles the channels).
        base: channels of the first (full-resolution) layer.
        cell: ``"lstm"`` or ``"gru"`` recurrent cells.
        separable: depthwise-separable input-to-hidden and encoder/decoder convolutions.
        separable_hidden: depthwise-separable hidden-to-hidden convolutions.
        archi: one of :data:`ARCHIS`.
        norm: normalisation of the feed-forward convolutions (see :data:`evframe.models.layers.NORMS`).
    """

    def __init__(self, in_channels: int, out_channels: int, num_layers: int = 3, base: int = 4, cell: str = "lstm",
                 separable: bool = False, separable_hidden: bool = False, archi: str = "all_rnn",
                 norm: str = "none") -> None:
        super().__init__()
        if archi not in ARCHIS:
            raise ValueError(f"EventToVideo: archi={archi!r} is not one of {ARCHIS}")
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                            ("num_layers", num_layers), ("base", base)):
            if int(value) < 1:
                raise ValueError(f"EventToVideo: {name} must be >= 1, got {value}")
        self.archi = archi
        self.head = seq_wise(conv_layer(in_channels, base, 5, norm=norm, act="relu"))
        channels = [base * 2 ** i for i in range(num_layers + 1)]
        encoders = []
        for c_in, c_out in zip(channels[:-1], channels[1:], strict=True):
            if archi == "all_rnn":
                encoders.append(ConvRNN(c_in, c_out, 3, stride=2, padding=1, cell=cell, separable=separable,
                                        separable_hidden=separable_hidden))
            else:
                encoders.append(seq_wise(conv_layer(c_in, c_out, 3, stride=2, norm=norm, act="relu",
                                                    separable=separable)))
        self.encoders = nn.ModuleList(encoders)
        bottom = channels[-1]
        if archi == "mid_rnn":
            self.bottleneck: nn.Module = ConvRNN(bottom, bottom, 3, cell=cell, separable=separable,
                                                 separable_hidden=separable_hidden)
        else:
            self.bottleneck = nn.Sequential(
                *[seq_wise(ResBlock(bottom, bottom, separable=separable, norm=norm)) for _ in range(2)])
        self.merge = MergeSkip()
        # decoder stage i goes from channels[i + 1] to channels[i], merging the encoder output at channels[i]
        self.decoders = nn.ModuleList(
            seq_wise(conv_layer(channels[i + 1] + channels[i], channels[i], 3, norm=norm, act="relu",
                                separable=separable))
            for i in reversed(range(num_layers))
        )
        self.pred = seq_wise(nn.Conv2d(base, out_channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(T, B, in_channels, H, W)`` -> ``(T, B, out_channels, H, W)`` in [0, 1]."""
        if x.ndim != 5:
            raise ValueError(f"EventToVideo: expected (T, B, C, H, W), got shape {tuple(x.shape)}")
        skips = [self.head(x)]
        for encoder in self.encoders:
            skips.append(encoder(skips[-1]))
        y = self.bottleneck(skips[-1])
        for decoder, skip in zip(self.decoders, reversed(skips[:-1]), strict=True):
            y = decoder(self.merge(y, skip))
        return torch.sigmoid(self.pred(y))

