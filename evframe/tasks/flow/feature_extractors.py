"""Recurrent U-Nets regressing a flow pyramid from event tensors (Metavision's ``eminet`` / ``midinet`` family).

All networks share one layout (:class:`RecurrentUNet`), for ``scales = S`` and ``base = b``:

* stem: a 3x3 conv layer at full resolution, ``C -> b`` channels (``(1 + context_bins) * C -> b`` when the stem
  also sees the ``context_bins`` bins before each one, see :class:`~evframe.models.temporal.BinHistory`);
* encoder: ``S`` stride-2 layers, level ``i`` (1..S) has ``b * 2**i`` channels at ``1 / 2**i`` resolution
  (recurrent ConvRNNs for ``eminet``; conv + squeeze-excitation for ``midinet``);
* middle (``midinet``: one ConvRNN; ``midinet2``: ``depth`` ConvRNNs with a residual connection) at ``1 / 2**S``;
* decoder: ``S`` levels, each reduces the coarser features to ``b * 2**i`` channels (1x1 conv), upsamples them
  (bilinear x2), adds the encoder skip of that resolution, concatenates the upsampled coarser flow and applies a
  conv layer (conv + squeeze-excitation for midinet);
* flow heads: a 3x3 conv to 2 channels at the bottleneck and at every decoder level. Each level predicts a residual
  added to the upsampled coarser flow (x2: pixels of the finer grid), so levels agree coarse to fine.
* optional (``global_motion``): an affine field regressed from the bottleneck features pooled over the image is
  added to the coarsest flow (:class:`~evframe.tasks.flow.global_motion.GlobalAffineHead`).

``forward(x (T, B, C, H, W))`` returns ``S + 1`` flows, coarse to fine; level ``j`` (0 = coarsest) is
``(T, B, 2, ceil(H / 2**(S-j)), ceil(W / 2**(S-j)))`` in pixels of that resolution per time bin; the last one is at
full input resolution. Inputs whose size is not a multiple of ``2**S`` are zero-padded at the bottom/right (zeros =
no events) and the outputs cropped. The recurrent state persists across calls: :meth:`RecurrentUNet.reset` with
the loader's ``mask_keep_memory`` and :meth:`RecurrentUNet.detach` between batches.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from evframe.models.layers import SEConvLayer, conv_layer
from evframe.models.temporal import (
    BinHistory,
    ConvRNN,
    batch_to_time,
    clear_recurrent_states,
    detach_recurrent_states,
    reset_recurrent_states,
    time_to_batch,
)
from evframe.tasks.flow.global_motion import GlobalAffineHead

ENCODERS = ("rnn", "se")


class _ResidualRNNStack(nn.Module):
    """``depth`` ConvRNNs (same width) with a residual connection around the whole stack: ``x + rnn_d(..(x))``."""

    def __init__(self, channels: int, depth: int, cell: str, separable: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            ConvRNN(channels, channels, 3, 1, 1, cell=cell, separable=separable, separable_hidden=separable)
            for _ in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for layer in self.layers:
            y = layer(y)
        return x + y


class RecurrentUNet(nn.Module):
    """Recurrent U-Net flow regressor (see the module docstring for the layout).

    Args:
        n_input_channels: channels ``C`` of the input tensor.
        base: channels of the full-resolution level; level ``i`` has ``base * 2**i``.
        scales: number of stride-2 encoder layers (and decoder levels); ``scales + 1`` flows are returned.
        separable: depthwise-separable convolutions in the encoder, middle and decoder.
        rnn_cell: ``"lstm"`` or ``"gru"``.
        encoder: ``"rnn"`` (every encoder layer is a strided ConvRNN, eminet) or ``"se"`` (conv + squeeze-excite,
            midinet).
        middle_depth: number of ConvRNNs at the bottleneck (0 = none).
        middle_residual: add a residual connection around the middle ConvRNNs (midinet2).
        norm, act: normalisation and activation of the conv layers (see :mod:`evframe.models.layers`).
        channels_last: run the convolutions in channels-last memory format (2-3x faster small-channel convolutions
            on CPU; harmless on GPU). Outputs are returned contiguous either way.
        context_bins: the stem also sees this many previous time bins of the input, at full resolution (0: only
            the current bin, as Metavision's networks). Motion under a pixel per bin leaves almost no trace inside
            one bin, and the recurrent layers at coarse resolution cannot see it either; stacking the previous
            bins makes it visible where it happens.
        global_motion: add a :class:`~evframe.tasks.flow.global_motion.GlobalAffineHead` at the bottleneck: the
            coarsest flow is an affine field regressed from the whole image plus the per-pixel head's residual (every
            finer level refines it). False: per-pixel heads only, as Metavision's networks.
    """

    def __init__(
        self,
        n_input_channels: int,
        base: int = 16,
        scales: int = 3,
        separable: bool = True,
        rnn_cell: str = "lstm",
        encoder: str = "se",
        middle_depth: int = 1,
        middle_residual: bool = False,
        norm: str = "batch",
        act: str = "relu",
        channels_last: bool = True,
        context_bins: int = 0,
        global_motion: bool = False,
    ) -> None:
        super().__init__()
        self.channels_last = channels_last
        for key, value, minimum in (("n_input_channels", n_input_channels, 1), ("base", base, 1),
                                    ("scales", scales, 1), ("middle_depth", middle_depth, 0),
                                    ("context_bins", context_bins, 0)):
            if int(value) != value or value < minimum:
                raise ValueError(f"RecurrentUNet: {key} must be an integer >= {minimum}, got {value!r}")
        if encoder not in ENCODERS:
            raise ValueError(f"RecurrentUNet: encoder={encoder!r} is not one of {ENCODERS}")
        if rnn_cell not in ("lstm", "gru"):
            raise ValueError(f"RecurrentUNet: rnn_cell={rnn_cell!r} is not 'lstm' or 'gru'")
        self.n_input_channels = n_input_channels
        self.scales = scales
        channels = [base * 2**i for i in range(scales + 1)]
        self.channels = channels

        self.history = BinHistory(context_bins) if context_bins else None
        # A full conv at the stem: with few input channels a depthwise conv would see one polarity/micro bin at once.
        self.stem = conv_layer(n_input_channels * (1 + context_bins), base, 3, 1, norm=norm, act=act,
                               separable=False)
        self.encoders = nn.ModuleList()
        for i in range(1, scales + 1):
            if encoder == "rnn":
                self.encoders.append(ConvRNN(channels[i - 1], channels[i], 3, 2, 1, cell=rnn_cell,
                                             separable=separable, separable_hidden=separable))
            else:
                self.encoders.append(SEConvLayer(channels[i - 1], channels[i], 3, 2, separable=separable,
                                                 norm=norm, act=act))
        top = channels[-1]
        if middle_depth == 0:
            self.middle: nn.Module | None = None
        elif middle_residual:
            self.middle = _ResidualRNNStack(top, middle_depth, rnn_cell, separable)
        else:
            self.middle = nn.Sequential(*[
                ConvRNN(top, top, 3, 1, 1, cell=rnn_cell, separable=separable, separable_hidden=separable)
                for _ in range(middle_depth)
            ])
        self.laterals = nn.ModuleList()
        self.decoders = nn.ModuleList()
        self.heads = nn.ModuleList([self._head(top)])
        self.global_motion = GlobalAffineHead(top) if global_motion else None
        for i in range(scales - 1, -1, -1):
            # 1x1 reduction at the coarse resolution *before* upsampling, then the skip is added (not concatenated):
            # the full-resolution layer then sees channels[i] + 2 channels instead of 3x as many, which is most of
            # the network's cost at full resolution.
            self.laterals.append(nn.Conv2d(channels[i + 1], channels[i], 1))
            in_ch = channels[i] + 2
            if encoder == "se":
                self.decoders.append(SEConvLayer(in_ch, channels[i], 3, 1, separable=separable, norm=norm, act=act))
            else:
                self.decoders.append(conv_layer(in_ch, channels[i], 3, 1, norm=norm, act=act, separable=separable))
            self.heads.append(self._head(channels[i]))

    @staticmethod
    def _head(channels: int) -> nn.Conv2d:
        head = nn.Conv2d(channels, 2, 3, padding=1)
        # Start near zero flow: the loss landscape is well behaved there, large random flows are not.
        nn.init.normal_(head.weight, std=1e-3)
        nn.init.zeros_(head.bias)
        return head

    # -- recurrent state -----------------------------------------------------------------------------------------
    def reset(self, mask_keep_memory: torch.Tensor) -> None:
        """Zeroes the memory of streams whose ``mask_keep_memory`` ``(B,)`` is 0."""
        reset_recurrent_states(self, mask_keep_memory)

    def detach(self) -> None:
        """Truncated BPTT: stop gradients at the current memory."""
        detach_recurrent_states(self)

    def clear(self) -> None:
        """Drops the memory of every stream."""
        clear_recurrent_states(self)

    # -- forward ---------------------------------------------------------------------------------------------------
    def _run(self, module: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
        """Runs ``module`` on flattened ``(T*B, C, H, W)``; recurrent modules get the ``(T, B, ...)`` view."""
        if any(isinstance(m, ConvRNN) for m in module.modules()):
            out = time_to_batch(module(batch_to_time(x, batch_size)))[0]
            # the recurrent loop produces standard-layout tensors; switch back so the next convolutions stay fast
            return out.contiguous(memory_format=torch.channels_last) if self.channels_last else out
        return module(x)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.ndim != 5 or x.shape[2] != self.n_input_channels:
            raise ValueError(
                f"{type(self).__name__}: expected inputs (T, B, {self.n_input_channels}, H, W), got {tuple(x.shape)}"
            )
        if self.history is not None:
            x = self.history(x)
        t, b, _, h, w = x.shape
        factor = 2**self.scales
        pad_h, pad_w = (-h) % factor, (-w) % factor
        flat, _ = time_to_batch(x)
        if pad_h or pad_w:
            flat = F.pad(flat, (0, pad_w, 0, pad_h))
        if self.channels_last:
            flat = flat.contiguous(memory_format=torch.channels_last)

        feat = self.stem(flat)
        skips = [feat]
        for enc in self.encoders:
            feat = self._run(enc, feat, b)
            skips.append(feat)
        if self.middle is not None:
            feat = self._run(self.middle, feat, b)

        flow = self.heads[0](feat)
        if self.global_motion is not None:
            flow = flow + self.global_motion(feat)
        flows = [flow]
        for level, (lateral, dec, head) in enumerate(zip(self.laterals, self.decoders, self.heads[1:], strict=True)):
            skip = skips[self.scales - 1 - level]
            size = skip.shape[-2:]
            up_feat = F.interpolate(lateral(feat), size=size, mode="bilinear", align_corners=False)
            # x2 because a displacement of 1 coarse pixel is 2 pixels on the finer grid.
            up_flow = 2.0 * F.interpolate(flow, size=size, mode="bilinear", align_corners=False)
            feat = dec(torch.cat((up_feat + skip, up_flow), dim=1))
            flow = up_flow + head(feat)
            flows.append(flow)

        out = []
        for level, f in enumerate(flows):
            down = 2 ** (self.scales - level)
            hs, ws = -(-h // down), -(-w // down)
            out.append(batch_to_time(f[..., :hs, :ws].contiguous(), b))
        return out


def eminet(n_input_channels: int, base: int = 16, scales: int = 3, separable: bool = True, rnn_cell: str = "lstm",
           **kwargs) -> RecurrentUNet:
    """U-Net whose encoder layers are strided (depthwise-separable by default) ConvRNNs: minimal footprint.

    Args:
        n_input_channels: channels of the input features.
        base: channels of the first level; e.g. ``scales=2, base=4`` gives ``[4, 8, 16, 8, 4]`` channels.
        scales: number of encoder layers (and decoder levels).
        separable: depthwise-separable convolutions (fewer parameters, harder to train).
        rnn_cell: ``"lstm"`` or ``"gru"``.
        **kwargs: ``norm``, ``act``, ``context_bins`` (see :class:`RecurrentUNet`).
    """
    return RecurrentUNet(n_input_channels, base, scales, separable, rnn_cell, encoder="rnn", middle_depth=0,
                         **kwargs)


def eminet_non_sep(n_input_channels: int, base: int = 16, scales: int = 3, rnn_cell: str = "lstm",
                   **kwargs) -> RecurrentUNet:
    """:func:`eminet` with full (not depthwise-separable) convolutions."""
    kwargs.pop("separable", None)
    return eminet(n_input_channels, base, scales, separable=False, rnn_cell=rnn_cell, **kwargs)


def midinet(n_input_channels: int, base: int = 16, scales: int = 3, separable: bool = True, rnn_cell: str = "lstm",
            **kwargs) -> RecurrentUNet:
    """U-Net with squeeze-excitation conv layers in the encoder and decoder and one ConvRNN at the bottleneck.

    Args as :func:`eminet` (``separable`` applies to the conv layers and the ConvRNN).
    """
    return RecurrentUNet(n_input_channels, base, scales, separable, rnn_cell, encoder="se", middle_depth=1,
                         middle_residual=False, **kwargs)


def midinet2(n_input_channels: int, base: int = 16, scales: int = 3, separable: bool = True, rnn_cell: str = "lstm",
             depth: int = 1, **kwargs) -> RecurrentUNet:
    """:func:`midinet` whose middle block is ``depth`` ConvRNNs with a residual connection around them.

    Raises:
        ValueError: ``depth < 1``.
    """
    if int(depth) != depth or depth < 1:
        raise ValueError(f"midinet2: depth must be an integer >= 1 (number of middle ConvRNNs), got {depth!r}")
    return RecurrentUNet(n_input_channels, base, scales, separable, rnn_cell, encoder="se", middle_depth=int(depth),
                         middle_residual=True, **kwargs)


FEATURE_EXTRACTORS: dict[str, Callable[..., RecurrentUNet]] = {
    "eminet": eminet,
    "eminet_non_sep": eminet_non_sep,
    "midinet": midinet,
    "midinet2": midinet2,
}


def build_feature_extractor(name: str, n_input_channels: int, **kwargs) -> nn.Module:
    """Instantiates ``FEATURE_EXTRACTORS[name](n_input_channels, **kwargs)`` with a clear error for unknown names."""
    if name not in FEATURE_EXTRACTORS:
        raise ValueError(f"unknown flow feature extractor {name!r}; available: {sorted(FEATURE_EXTRACTORS)}")
    return FEATURE_EXTRACTORS[name](n_input_channels, **kwargs)
