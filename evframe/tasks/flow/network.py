"""FlowNetwork: a flow feature extractor together with its self-supervised loss and the sharpening helper
(Metavision's ``metavision_ml.flow.flow_network.FlowNetwork``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from evframe.models.temporal import clear_recurrent_states, detach_recurrent_states, reset_recurrent_states
from evframe.tasks.flow.feature_extractors import build_feature_extractor
from evframe.tasks.flow.losses import (
    FlowLoss,
    image_of_warped_events,
    micro_bin_times,
    resize_inputs,
    split_micro_bins,
)
from evframe.tasks.flow.warping import Warper


class FlowNetwork(nn.Module):
    """Feature extractor predicting a flow pyramid + the modules needed to train it.

    Args:
        array_dim: input shape ``(T, C, H, W)`` (num time bins, channels, height, width).
        flow_loss_weights: ``{loss name: weight}``, names from :data:`evframe.tasks.flow.losses.LOSS_NAMES`.
        feature_extractor: a module (forward ``(T, B, C, H, W)`` -> list of flows coarse to fine) or the name of one
            in :data:`evframe.tasks.flow.feature_extractors.FEATURE_EXTRACTORS` (built with ``C`` input channels
            and ``network_kwargs``).
        network_kwargs: keyword arguments of the named feature extractor (``base``, ``scales``, ``depth``, ...).
        smoothness_mask: regulariser names applied only at pixels with events (or True for all of them).
        loss_kwargs: further :class:`FlowLoss` arguments (``channels_per_micro_bin``, ``blur_sigma``, ...).

    Attributes: ``in_channels``, ``array_dim``, ``feature_extractor``, ``criterion`` (the :class:`FlowLoss`),
    ``warping_head`` (a :class:`Warper`).
    """

    def __init__(
        self,
        array_dim: Sequence[int],
        flow_loss_weights: Mapping[str, float] | None,
        feature_extractor: nn.Module | str = "midinet2",
        network_kwargs: Mapping[str, Any] | None = None,
        smoothness_mask: Iterable[str] | bool = (),
        loss_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        array_dim = tuple(int(v) for v in array_dim)
        if len(array_dim) != 4 or min(array_dim) < 1:
            raise ValueError(f"FlowNetwork: array_dim must be (T, C, H, W) of positive ints, got {array_dim}")
        self.array_dim = array_dim
        self.in_channels = array_dim[1]
        if isinstance(feature_extractor, str):
            feature_extractor = build_feature_extractor(feature_extractor, self.in_channels,
                                                        **dict(network_kwargs or {}))
        elif not isinstance(feature_extractor, nn.Module):
            raise TypeError(f"FlowNetwork: feature_extractor must be an nn.Module or a name, got "
                            f"{type(feature_extractor).__name__}")
        elif network_kwargs:
            raise ValueError("FlowNetwork: network_kwargs only apply when feature_extractor is a name")
        self.feature_extractor = feature_extractor
        self.criterion = FlowLoss(flow_loss_weights, masked_terms=smoothness_mask, **dict(loss_kwargs or {}))
        self.warping_head = Warper()

    def _check_inputs(self, inputs: torch.Tensor) -> None:
        if inputs.ndim != 5 or inputs.shape[2] != self.in_channels:
            raise ValueError(f"FlowNetwork: inputs must be (T, B, {self.in_channels}, H, W), got {tuple(inputs.shape)}")

    def forward(self, inputs: torch.Tensor) -> list[torch.Tensor]:
        """``(T, B, C, H, W)`` -> list of flows, coarse to fine, each ``(T, B, 2, h, w)`` in pixels per bin.

        Advances the recurrent state (streaming).
        """
        self._check_inputs(inputs)
        return self.feature_extractor(inputs)

    def compute_loss(
        self, inputs: torch.Tensor, flows: Sequence[torch.Tensor] | None = None, mask: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Weighted loss terms ``{name: scalar, ..., "loss": total}``; runs :meth:`forward` if ``flows`` is None."""
        self._check_inputs(inputs)
        if flows is None:
            flows = self.forward(inputs)
        return self.criterion(inputs, flows, mask)

    @torch.no_grad()
    def sharpen(
        self,
        inputs: torch.Tensor,
        micro_tbin: int = 0,
        depth_level: int = -1,
        flows: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Warps every micro time bin of each bin to the time of micro bin ``micro_tbin`` with the predicted flow
        and sums them: a sharper image than the plain sum when the flow is right.

        Args:
            inputs: ``(T, B, C, H, W)``.
            micro_tbin: index of the micro bin whose time the events are moved to (``0 <= micro_tbin < K``).
            depth_level: pyramid level used (index into the flow list; -1 = finest). The input is area-downsampled
                to that level's size.
            flows: a flow pyramid already computed for ``inputs``; when None :meth:`forward` is run (which advances
                the recurrent state).

        Returns:
            ``(T, B, P, h, w)`` with ``P = criterion.channels_per_micro_bin`` (one image per polarity).
        """
        self._check_inputs(inputs)
        if flows is None:
            flows = self.forward(inputs)
        try:
            flow = flows[depth_level]
        except IndexError:
            raise ValueError(
                f"FlowNetwork.sharpen: depth_level={depth_level} but there are {len(flows)} levels"
            ) from None
        x = resize_inputs(inputs, tuple(flow.shape[-2:]))
        micro = split_micro_bins(x, self.criterion.channels_per_micro_bin)
        t, b, k = micro.shape[:3]
        if not 0 <= micro_tbin < k:
            raise ValueError(f"FlowNetwork.sharpen: micro_tbin={micro_tbin} must be in [0, {k}) for this input")
        times = micro_bin_times(k)
        iwe = image_of_warped_events(micro.flatten(0, 1), flow.flatten(0, 1), times, float(times[micro_tbin]))
        return iwe.view(t, b, *iwe.shape[1:])

    def reset(self, mask_keep_memory: torch.Tensor) -> None:
        """Zeroes the recurrent state of streams whose ``mask_keep_memory`` ``(B,)`` is 0."""
        reset_recurrent_states(self, mask_keep_memory)

    def detach(self) -> None:
        """Truncated BPTT: stop gradients at the current recurrent state."""
        detach_recurrent_states(self)

    def clear(self) -> None:
        """Drops the recurrent state of every stream."""
        clear_recurrent_states(self)
