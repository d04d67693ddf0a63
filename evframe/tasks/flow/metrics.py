"""Flow accuracy against ground truth: average endpoint error (AEE) and percentage of outliers.

Outlier definition: a pixel whose endpoint error ``||pred - gt||`` exceeds ``outlier_px`` (3 pixels, the "% outliers
(>3 px)" of the event-flow literature). Optionally (KITTI style) also require the error to exceed ``outlier_rel``
times ``||gt||``. Errors are in whatever unit both flows share; evframe compares flows in pixels per time bin at the
network input resolution (see :func:`gt_to_pixels_per_bin` to convert the px/s labels).

Each metric is reported beside the same metric for a zero-flow prediction on the same pixels, the trivial baseline
any useful model must beat.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchmetrics import Metric

OUTLIER_PX = 3.0


def _as_tensor(x: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x)
    if isinstance(x, torch.Tensor):
        return x
    raise TypeError(f"flow_metrics: {name} must be a torch.Tensor or np.ndarray, got {type(x).__name__}")


def gt_to_pixels_per_bin(flow_px_per_s: torch.Tensor, delta_t_us: int, downsample: int = 0) -> torch.Tensor:
    """Converts a ground-truth flow in sensor pixels per second to pixels per time bin of ``delta_t_us``
    microseconds at a resolution downsampled by ``2**downsample`` (values only; resize the map separately)."""
    return flow_px_per_s * (float(delta_t_us) * 1e-6 / 2**downsample)


def endpoint_errors(
    pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pixel endpoint errors of ``pred`` and of zero flow at the valid pixels.

    Args:
        pred, gt: ``(B, 2, H, W)`` flows (x then y).
        mask: ``(B, H, W)`` bool, pixels to evaluate (e.g. with events); None = all. Pixels whose ``gt`` is not
            finite are always excluded.

    Returns:
        ``(epe, gt_norm, valid)``: errors of ``pred`` and of zero flow, 1-D over the valid pixels, and the
        ``(B, H, W)`` mask used.
    """
    pred = _as_tensor(pred, "pred")
    gt = _as_tensor(gt, "gt")
    if pred.ndim != 4 or pred.shape[1] != 2 or pred.shape != gt.shape:
        raise ValueError(
            f"flow_metrics: pred {tuple(pred.shape)} and gt {tuple(gt.shape)} must both be (B, 2, H, W)"
        )
    valid = torch.isfinite(gt).all(dim=1)
    if mask is not None:
        mask = _as_tensor(mask, "mask")
        if tuple(mask.shape) != (gt.shape[0], *gt.shape[2:]):
            raise ValueError(f"flow_metrics: mask must be (B, H, W) = {(gt.shape[0], *gt.shape[2:])}, "
                             f"got {tuple(mask.shape)}")
        valid = valid & mask.to(device=gt.device, dtype=torch.bool)
    pred = pred.to(device=gt.device, dtype=torch.float64)
    gt = gt.to(torch.float64)
    epe = torch.linalg.vector_norm(pred - gt, dim=1)[valid]
    gt_norm = torch.linalg.vector_norm(gt, dim=1)[valid]
    return epe, gt_norm, valid


def _outliers(epe: torch.Tensor, gt_norm: torch.Tensor, outlier_px: float, outlier_rel: float | None) -> torch.Tensor:
    out = epe > outlier_px
    if outlier_rel is not None:
        out = out & (epe > outlier_rel * gt_norm)
    return out


def flow_metrics(
    pred: torch.Tensor,
    gt: torch.Tensor,
    mask: torch.Tensor | None = None,
    outlier_px: float = OUTLIER_PX,
    outlier_rel: float | None = None,
) -> dict[str, float]:
    """AEE and % outliers of ``pred`` against ``gt`` at the pixels of ``mask``, with the zero-flow baseline.

    Args:
        pred, gt: ``(B, 2, H, W)`` flows in the same unit (pixels per bin).
        mask: ``(B, H, W)`` bool pixels to evaluate (None = all pixels with a finite gt).
        outlier_px: endpoint error above which a pixel is an outlier.
        outlier_rel: if set, an outlier must also have ``epe > outlier_rel * ||gt||`` (KITTI: 0.05).

    Returns:
        ``{"aee", "outlier_pct", "aee_zero", "outlier_pct_zero", "n_pixels"}``; the rates are NaN when no pixel
        is valid. ``*_zero`` are the same metrics for a zero-flow prediction.
    """
    epe, gt_norm, _ = endpoint_errors(pred, gt, mask)
    n = int(epe.numel())
    if n == 0:
        nan = float("nan")
        return {"aee": nan, "outlier_pct": nan, "aee_zero": nan, "outlier_pct_zero": nan, "n_pixels": 0}
    return {
        "aee": float(epe.mean()),
        "outlier_pct": 100.0 * float(_outliers(epe, gt_norm, outlier_px, outlier_rel).double().mean()),
        "aee_zero": float(gt_norm.mean()),
        "outlier_pct_zero": 100.0 * float(_outliers(gt_norm, gt_norm, outlier_px, outlier_rel).double().mean()),
        "n_pixels": n,
    }


class FlowErrorMetric(Metric):
    """Accumulates :func:`flow_metrics` over batches as pixel-weighted sums, so the epoch value is the exact mean
    over all evaluated pixels (not a mean of batch means). The sums are torchmetrics states reduced by summation,
    so under DDP the value covers the pixels of all processes.

    ``update(pred (N, 2, H, W), gt (N, 2, H, W), mask (N, H, W) bool or None)``; ``compute()`` returns tensors
    ``{"aee", "outlier_pct", "aee_zero", "outlier_pct_zero", "n_pixels"}`` (NaN rates when no pixel was seen).
    """

    full_state_update = False

    def __init__(self, outlier_px: float = OUTLIER_PX, outlier_rel: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.outlier_px = float(outlier_px)
        self.outlier_rel = outlier_rel
        for name in ("epe_sum", "outliers", "zero_sum", "zero_outliers", "n_pixels"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        epe, gt_norm, _ = endpoint_errors(pred, gt, mask)
        self.epe_sum += epe.sum()
        self.outliers += _outliers(epe, gt_norm, self.outlier_px, self.outlier_rel).sum()
        self.zero_sum += gt_norm.sum()
        self.zero_outliers += _outliers(gt_norm, gt_norm, self.outlier_px, self.outlier_rel).sum()
        self.n_pixels += epe.numel()

    def compute(self) -> dict[str, torch.Tensor]:
        n = self.n_pixels
        if n <= 0:
            nan = torch.tensor(float("nan"), dtype=torch.float64, device=n.device)
            return {"aee": nan, "outlier_pct": nan, "aee_zero": nan, "outlier_pct_zero": nan, "n_pixels": n.clone()}
        return {"aee": self.epe_sum / n, "outlier_pct": 100.0 * self.outliers / n, "aee_zero": self.zero_sum / n,
                "outlier_pct_zero": 100.0 * self.zero_outliers / n, "n_pixels": n.clone()}
