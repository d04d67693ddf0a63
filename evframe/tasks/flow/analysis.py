"""Where a flow model's error comes from: per recording, per ground-truth speed, at motion boundaries or not.

The test AEE is one number; these breakdowns say what to fix. They answer three questions:

* which recordings (e.g. slow camera vs fast camera) carry the error (:class:`ErrorBreakdown`, ``group``);
* which speeds: pixels binned by the norm of their ground-truth flow (``speed_edges``, pixels per bin);
* how far from the nearest motion boundary (``distance_radii``: bands of pixels within 1, 2, 4, ... px of a jump;
  a network that spreads an object's motion over a halo around it shows a ratio near or above 1 in the bands a
  few pixels out);
* whether the error sits at motion boundaries (:func:`motion_boundaries`: near a jump of the ground-truth flow,
  where the events of a bin are swept by an object edge while the label describes the surface under it at the
  label time) or inside smoothly moving regions.

``experiments/analysis/flow_breakdown.py`` runs them on a trained run's test split.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch
import torch.nn.functional as F

#: default speed bins (pixels per time bin, at the network's resolution)
SPEED_EDGES: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, float("inf"))
#: default outer radii (pixels) of the distance-to-boundary bands
DISTANCE_RADII: tuple[int, ...] = (1, 2, 4, 8, 16)


def motion_boundaries(gt: torch.Tensor, radius: int = 3, jump: float = 0.75) -> torch.Tensor:
    """Pixels within ``radius`` pixels (square window) of a jump of the ground-truth flow.

    Args:
        gt: ``(N, 2, H, W)`` flow; non-finite values count as 0.
        radius: half size of the window (pixels).
        jump: a pixel is on a boundary when, over its window, some flow component varies by more than this
            (pixels per bin). Smooth camera motion (zoom, rotation) varies by far less over a few pixels.

    Returns:
        ``(N, H, W)`` bool.
    """
    if gt.ndim != 4 or gt.shape[1] != 2:
        raise ValueError(f"motion_boundaries: gt must be (N, 2, H, W), got {tuple(gt.shape)}")
    if radius < 0:
        raise ValueError(f"motion_boundaries: radius must be >= 0, got {radius}")
    g = torch.nan_to_num(gt.float(), nan=0.0, posinf=0.0, neginf=0.0)
    k = 2 * radius + 1
    high = F.max_pool2d(g, k, 1, radius)
    low = -F.max_pool2d(-g, k, 1, radius)
    return (high - low).amax(dim=1) > jump


class ErrorBreakdown:
    """Accumulates endpoint errors of a prediction and of zero flow, split by group, speed and boundary.

    ``update(pred, gt, mask, group)`` with ``pred``, ``gt`` ``(N, 2, H, W)`` and ``mask`` ``(N, H, W)`` (pixels
    to score, e.g. with events; non-finite ground truth is always left out). :meth:`rows` returns, for every
    group (and ``"all"``), both boundary classes, and for ``"all"`` every speed bin and distance band (pixels whose
    window of radius ``distance_radii[i]`` holds a jump but whose window of ``distance_radii[i-1]`` does not): ``n``
    pixels, ``aee``, ``aee_zero``, ``ratio`` and ``share`` (fraction of the whole error).
    """

    def __init__(self, speed_edges: Sequence[float] = SPEED_EDGES, boundary_radius: int = 3,
                 boundary_jump: float = 0.75, distance_radii: Sequence[int] = DISTANCE_RADII) -> None:
        radii = [int(r) for r in distance_radii]
        if any(r < 1 for r in radii) or any(b <= a for a, b in zip(radii, radii[1:], strict=False)):
            raise ValueError(f"ErrorBreakdown: distance_radii must be increasing integers >= 1, got "
                             f"{list(distance_radii)}")
        self.distance_radii = radii
        edges = [float(e) for e in speed_edges]
        if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
            raise ValueError(f"ErrorBreakdown: speed_edges must increase, got {list(speed_edges)}")
        self.speed_edges = edges
        self.boundary_radius = int(boundary_radius)
        self.boundary_jump = float(boundary_jump)
        # key -> [pixels, sum of errors, sum of zero-flow errors]
        self.sums: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])

    def _add(self, key: tuple[str, str], epe: torch.Tensor, zero: torch.Tensor) -> None:
        entry = self.sums[key]
        entry[0] += float(epe.numel())
        entry[1] += float(epe.sum())
        entry[2] += float(zero.sum())

    def update(self, pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None,
               group: str = "all") -> None:
        if pred.shape != gt.shape or pred.ndim != 4 or pred.shape[1] != 2:
            raise ValueError(f"ErrorBreakdown.update: pred {tuple(pred.shape)} and gt {tuple(gt.shape)} must both "
                             f"be (N, 2, H, W)")
        pred, gt = pred.detach().double().cpu(), gt.detach().double().cpu()
        valid = torch.isfinite(gt).all(dim=1)
        if mask is not None:
            if tuple(mask.shape) != (gt.shape[0], *gt.shape[2:]):
                raise ValueError(f"ErrorBreakdown.update: mask must be (N, H, W) = "
                                 f"{(gt.shape[0], *gt.shape[2:])}, got {tuple(mask.shape)}")
            valid = valid & mask.detach().cpu().bool()
        boundary = motion_boundaries(gt, self.boundary_radius, self.boundary_jump)
        epe = torch.linalg.vector_norm(pred - gt, dim=1)
        zero = torch.linalg.vector_norm(torch.nan_to_num(gt), dim=1)
        groups = ["all"] if group == "all" else ["all", str(group)]
        for name in groups:
            self._add((name, "all"), epe[valid], zero[valid])
            for tag, sel in (("boundary", valid & boundary), ("interior", valid & ~boundary)):
                self._add((name, tag), epe[sel], zero[sel])
            if name != "all":
                continue
            for lo, hi in zip(self.speed_edges, self.speed_edges[1:], strict=False):
                sel = valid & (zero >= lo) & (zero < hi)
                self._add((name, f"speed [{lo:g}, {hi:g})"), epe[sel], zero[sel])
            inner = torch.zeros_like(valid)
            for lo, radius in zip([0, *self.distance_radii], self.distance_radii, strict=False):
                near = motion_boundaries(gt, radius, self.boundary_jump)
                sel = valid & near & ~inner
                self._add((name, f"distance ({lo}, {radius}] px"), epe[sel], zero[sel])
                inner = inner | near
            if self.distance_radii:
                sel = valid & ~inner
                self._add((name, f"distance > {self.distance_radii[-1]} px"), epe[sel], zero[sel])

    def rows(self) -> list[dict[str, float | str]]:
        """One dict per (group, subset): ``group, subset, n, aee, aee_zero, ratio, share``."""
        total_error = self.sums[("all", "all")][1] if ("all", "all") in self.sums else 0.0
        out = []
        for (group, subset), (n, err, zero) in self.sums.items():
            out.append({
                "group": group, "subset": subset, "n": n,
                "aee": err / n if n else float("nan"),
                "aee_zero": zero / n if n else float("nan"),
                "ratio": err / zero if zero else float("nan"),
                "share": err / total_error if total_error else float("nan"),
            })
        return out

    def format(self) -> str:
        """The rows as an aligned text table."""
        lines = [f"{'group':<28}{'subset':<22}{'pixels':>10}{'aee':>8}{'zero':>8}{'ratio':>8}{'share':>8}"]
        for r in self.rows():
            lines.append(f"{r['group']:<28}{r['subset']:<22}{int(r['n']):>10}{r['aee']:>8.3f}{r['aee_zero']:>8.3f}"
                         f"{r['ratio']:>8.3f}{r['share']:>8.3f}")
        return "\n".join(lines)


def spread_object_motion(gt: torch.Tensor, radius: int, jump: float = 0.5) -> torch.Tensor:
    """The ground truth with every moving object's flow spread ``radius`` pixels into the background around it.

    What a network that blurs motion boundaries predicts at best; comparing the loss of this flow with that of the
    ground truth tells whether the loss itself prefers such a halo (see ``flow_breakdown.py``).

    Args:
        gt: ``(N, 2, H, W)`` flow; non-finite values count as 0.
        radius: pixels of growth (one 3x3 step per pixel); 0 returns ``gt``.
        jump: a pixel is an object pixel when its flow differs from the image's median flow (the background) by
            more than this (pixels per bin).

    Returns:
        ``(N, 2, H, W)``: at each step, every background pixel next to an object pixel takes the mean flow of its
        object neighbours and joins the object.
    """
    if gt.ndim != 4 or gt.shape[1] != 2:
        raise ValueError(f"spread_object_motion: gt must be (N, 2, H, W), got {tuple(gt.shape)}")
    if radius < 0:
        raise ValueError(f"spread_object_motion: radius must be >= 0, got {radius}")
    flow = torch.nan_to_num(gt.float(), nan=0.0, posinf=0.0, neginf=0.0)
    if radius == 0:
        return flow
    background = flow.flatten(2).median(dim=2).values[..., None, None]
    inside = (torch.linalg.vector_norm(flow - background, dim=1, keepdim=True) > jump).float()
    for _ in range(int(radius)):
        total = F.avg_pool2d(flow * inside, 3, 1, 1, count_include_pad=False) * 9
        count = F.avg_pool2d(inside, 3, 1, 1, count_include_pad=False) * 9
        grown = (count > 0.5) & (inside < 0.5)
        flow = torch.where(grown.expand_as(flow), total / count.clamp_min(1e-6), flow)
        inside = torch.maximum(inside, grown.float())
    return flow
