"""Flow accuracy against dense ground truth: average endpoint error (AEE) and % outliers, beside zero flow.

Accumulated as sums (torchmetrics states reduced by summation), so the epoch value is the exact mean over all
evaluated pixels of all batches, and of all processes under DDP.
"""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics import Metric

from evframe.tasks.flow.metrics import OUTLIER_PX, endpoint_errors


class FlowErrorMetric(Metric):
    """Sums endpoint errors of predicted and zero flow over pixels that have events and a ground truth.

    ``update(pred (N, 2, H, W), gt (N, 2, H, W), mask (N, H, W) bool)``; ``compute()`` returns
    ``{"aee", "outlier_pct", "aee_zero", "outlier_pct_zero", "pixels"}`` (NaN when no pixel was evaluated).
    """

    full_state_update = False

    def __init__(self, outlier_px: float = OUTLIER_PX, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.outlier_px = float(outlier_px)
        for name in ("epe_sum", "outliers", "epe_zero_sum", "outliers_zero", "pixels"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> None:
        epe, epe_zero, _ = endpoint_errors(pred, gt, mask)
        self.epe_sum += epe.sum()
        self.outliers += (epe > self.outlier_px).sum()
        self.epe_zero_sum += epe_zero.sum()
        self.outliers_zero += (epe_zero > self.outlier_px).sum()
        self.pixels += epe.numel()

    def compute(self) -> dict[str, torch.Tensor]:
        n = self.pixels
        nan = torch.tensor(float("nan"), dtype=torch.float64, device=n.device)

        def ratio(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
            return x * scale / n if n > 0 else nan

        return {"aee": ratio(self.epe_sum), "outlier_pct": ratio(self.outliers, 100.0),
                "aee_zero": ratio(self.epe_zero_sum), "outlier_pct_zero": ratio(self.outliers_zero, 100.0),
                "pixels": n.clone()}


def labeled_pairs(batch: dict[str, Any], flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Gathers the (prediction, ground truth, event mask) of every labeled (t, b) of a batch.

    Args:
        batch: loader batch with ``inputs (T, B, C, H, W)``, ``labels`` (T lists of B flows (2, H, W) or None) and
            ``frame_is_labeled (T, B)``.
        flow: finest predicted flow ``(T, B, 2, H, W)``.
    Returns:
        ``pred (N, 2, H, W)``, ``gt (N, 2, H, W)``, ``mask (N, H, W)`` or None when nothing is labeled.
    """
    preds, gts, masks = [], [], []
    inputs = batch["inputs"]
    for t, row in enumerate(batch["labels"]):
        for b, gt in enumerate(row):
            if gt is None or not bool(batch["frame_is_labeled"][t, b]):
                continue
            gt = torch.as_tensor(gt, device=flow.device, dtype=flow.dtype)
            preds.append(flow[t, b])
            gts.append(gt)
            masks.append(inputs[t, b].abs().sum(0) > 0)
    if not preds:
        return None
    return torch.stack(preds), torch.stack(gts), torch.stack(masks)
