"""Backward warping of feature maps by an optical flow given in pixels.

Convention (evframe-wide): ``flow[:, 0]`` is the x displacement, ``flow[:, 1]`` the y displacement, in pixels of
the tensor being warped. :func:`backward_warp` samples ``out(p) = x(p + flow(p))`` with bilinear interpolation and
zeros outside the image. Pixel centres are ``0 .. W-1`` and map to ``-1 .. 1`` (``align_corners=True``), so the
displacement is normalised exactly once, by ``2 / (W - 1)`` (resp. ``2 / (H - 1)``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _check_flow(x: torch.Tensor, flow: torch.Tensor, where: str) -> None:
    if x.ndim not in (4, 5) or flow.ndim != x.ndim:
        raise ValueError(
            f"{where}: expected x (N, C, H, W) with flow (N, 2, H, W), or x (T, B, C, H, W) with flow "
            f"(T, B, 2, H, W); got x {tuple(x.shape)} and flow {tuple(flow.shape)}"
        )
    lead = x.ndim - 3
    if flow.shape[lead] != 2 or flow.shape[:lead] != x.shape[:lead] or flow.shape[-2:] != x.shape[-2:]:
        raise ValueError(
            f"{where}: flow must have shape {(*x.shape[:lead], 2, *x.shape[-2:])} to warp x {tuple(x.shape)}, "
            f"got {tuple(flow.shape)}"
        )


def pixel_grid(height: int, width: int, device: torch.device | None = None,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Pixel coordinates ``(2, H, W)``: channel 0 is x (column index), channel 1 is y (row index)."""
    ys = torch.arange(height, device=device, dtype=dtype)
    xs = torch.arange(width, device=device, dtype=dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((grid_x, grid_y), 0)


def flow_to_sampling_grid(flow: torch.Tensor) -> torch.Tensor:
    """Converts a pixel flow ``(N, 2, H, W)`` into the normalised ``grid_sample`` grid ``(N, H, W, 2)`` that reads
    ``p + flow(p)`` (``align_corners=True``)."""
    _, _, h, w = flow.shape
    coords = pixel_grid(h, w, flow.device, flow.dtype).unsqueeze(0) + flow
    # Single normalisation of absolute pixel positions to [-1, 1]; a size-1 axis maps to 0 (its only pixel).
    scale_x = 2.0 / max(w - 1, 1)
    scale_y = 2.0 / max(h - 1, 1)
    gx = coords[:, 0] * scale_x - (1.0 if w > 1 else 0.0)
    gy = coords[:, 1] * scale_y - (1.0 if h > 1 else 0.0)
    return torch.stack((gx, gy), dim=-1)


def backward_warp(x: torch.Tensor, flow: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Backward warping ``out(p) = x(p + flow(p))``; samples falling outside ``x`` read zeros.

    Args:
        x: ``(N, C, H, W)`` or ``(T, B, C, H, W)``.
        flow: ``(N, 2, H, W)`` or ``(T, B, 2, H, W)`` in pixels (x then y).
        mode: ``grid_sample`` interpolation (``"bilinear"`` or ``"nearest"``).

    Returns:
        a tensor shaped like ``x``.
    """
    _check_flow(x, flow, "backward_warp")
    if x.ndim == 5:
        t, b = x.shape[:2]
        out = backward_warp(x.flatten(0, 1), flow.flatten(0, 1), mode)
        return out.view(t, b, *out.shape[1:])
    grid = flow_to_sampling_grid(flow.to(x.dtype))
    return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=True)


def warp_by_fraction(x: torch.Tensor, flow: torch.Tensor, fraction: float | torch.Tensor) -> torch.Tensor:
    """Backward-warps ``x`` by ``fraction * flow``: with a forward flow over one time bin, this moves content seen
    at time ``t + fraction`` (in bins) back to where it was at time ``t``. ``fraction`` may be a scalar or a
    tensor broadcastable to ``flow`` (e.g. one value per sample)."""
    return backward_warp(x, flow * fraction)


class Warper(nn.Module):
    """Module form of :func:`backward_warp` (the "warping head" of :class:`FlowNetwork`)."""

    def __init__(self, mode: str = "bilinear") -> None:
        super().__init__()
        if mode not in ("bilinear", "nearest"):
            raise ValueError(f"Warper: mode={mode!r} is not 'bilinear' or 'nearest'")
        self.mode = mode

    def forward(self, x: torch.Tensor, flow: torch.Tensor, fraction: float = 1.0) -> torch.Tensor:
        return backward_warp(x, flow * fraction if fraction != 1.0 else flow, self.mode)


def forward_splat(values: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Forward warping: moves the content of every pixel ``p`` to ``p + flow(p)`` and sums what lands on each pixel.

    Each value is split over the four pixels around its target with bilinear weights (summing to 1); the part landing
    outside the image is dropped. Unlike :func:`backward_warp`, every value is moved exactly once, so the total is
    kept (up to what leaves the image): the image of warped events of event-count maps.

    Args:
        values: ``(N, C, H, W)``.
        flow: ``(N, 2, H, W)`` displacement in pixels (x then y) of each pixel of ``values``.

    Returns:
        ``(N, C, H, W)``.
    """
    if values.ndim != 4 or flow.ndim != 4 or flow.shape[1] != 2 or flow.shape[0] != values.shape[0] \
            or flow.shape[-2:] != values.shape[-2:]:
        raise ValueError(f"forward_splat: expected values (N, C, H, W) with flow (N, 2, H, W) of the same N, H, W; "
                         f"got values {tuple(values.shape)} and flow {tuple(flow.shape)}")
    n, c, h, w = values.shape
    coords = pixel_grid(h, w, flow.device, flow.dtype).unsqueeze(0) + flow
    x0, y0 = coords[:, 0].floor(), coords[:, 1].floor()
    fx, fy = coords[:, 0] - x0, coords[:, 1] - y0
    flat = values.reshape(n, c, h * w)
    out = values.new_zeros(n, c, h * w)
    for dx, dy, weight in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy),
                           (1, 1, fx * fy)):
        xs, ys = x0 + dx, y0 + dy
        inside = (xs >= 0) & (xs <= w - 1) & (ys >= 0) & (ys <= h - 1)
        index = (ys.clamp(0, h - 1) * w + xs.clamp(0, w - 1)).long().view(n, 1, -1).expand(n, c, -1)
        out.scatter_add_(2, index, flat * (weight * inside).to(values.dtype).view(n, 1, -1))
    return out.view(n, c, h, w)


def forward_density(flow: torch.Tensor) -> torch.Tensor:
    """How many pixels a flow sends to each pixel: ``(N, 2, H, W) -> (N, 1, H, W)``.

    Every pixel ``p`` is splatted to ``p + flow(p)`` (:func:`forward_splat` of ones). A smooth flow gives about 1
    everywhere; where two surfaces move onto the same pixels (an object covering the background it moves over) the
    density reaches about 2, and where a surface uncovers the background, about 0.
    """
    return forward_splat(flow.new_ones(flow.shape[0], 1, *flow.shape[-2:]), flow)
