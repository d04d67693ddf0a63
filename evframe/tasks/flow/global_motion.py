"""A global affine motion head: one affine flow field per image, from features pooled over the whole image.

Camera motion over a distant or planar scene (and, to first order, any ego-motion) is an affine flow field. Six
parameters estimated from the whole image gather the evidence of every pixel, where a per-pixel head sees only its
receptive field; objects moving on their own are left to the per-pixel flow added on top. On the synthetic dataset it
did not help (test ratio 0.608 against 0.586 without it, one run each), so the models leave it off by default.
"""

from __future__ import annotations

import torch
from torch import nn

from evframe.tasks.flow.warping import pixel_grid


def affine_flow(params: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The flow field of affine motion parameters.

    Args:
        params: ``(N, 6)``: ``(ax, bx, cx, ay, by, cy)`` with ``flow_x = ax + bx * X + cx * Y`` and ``flow_y = ay +
            by * X + cy * Y``, in pixels; ``X``, ``Y`` are the pixel centre coordinates relative to the image centre,
            divided by half the width and half the height (so -1 .. 1 from edge to edge).
        height, width: size of the field.

    Returns:
        ``(N, 2, height, width)`` flow in pixels.
    """
    if params.ndim != 2 or params.shape[1] != 6:
        raise ValueError(f"affine_flow: params must be (N, 6), got {tuple(params.shape)}")
    half = torch.tensor([width / 2, height / 2], device=params.device, dtype=params.dtype).view(2, 1, 1)
    centred = (pixel_grid(height, width, params.device, params.dtype) + 0.5 - half) / half  # (2, H, W): X, Y
    basis = torch.cat((torch.ones_like(centred[:1]), centred))  # (3, H, W): 1, X, Y
    return torch.einsum("nck,khw->nchw", params.view(-1, 2, 3), basis)


class GlobalAffineHead(nn.Module):
    """Features ``(N, C, H, W)`` -> the affine flow ``(N, 2, H, W)`` of six parameters regressed from their mean and
    max over the image (a two-layer perceptron). The last layer starts at zero: the head adds nothing until the loss
    asks for it."""

    def __init__(self, channels: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or channels
        self.mlp = nn.Sequential(nn.Linear(2 * channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 6))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat((features.mean(dim=(2, 3)), features.amax(dim=(2, 3))), dim=1)
        return affine_flow(self.mlp(pooled), features.shape[-2], features.shape[-1])
