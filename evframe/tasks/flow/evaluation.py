"""Picking what the flow metrics evaluate out of a loader batch: labeled time bins, pixels with events."""

from __future__ import annotations

from typing import Any

import torch


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
