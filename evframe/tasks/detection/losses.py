"""Detection losses (Metavision's ``detection.losses``): softmax focal loss for anchor classification and
smooth-L1 for box regression, both normalised by the number of positive anchors."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

REDUCTIONS = ("none", "sum", "mean")
CLS_LOSSES = ("softmax_focal_loss", "cross_entropy")


def reduce(loss: torch.Tensor, mode: str = "none") -> torch.Tensor:
    """``loss`` summed, averaged or left as is (``mode`` in ``none``, ``sum``, ``mean``)."""
    if mode == "none":
        return loss
    if mode == "sum":
        return loss.sum()
    if mode == "mean":
        return loss.mean()
    raise ValueError(f"reduce: mode={mode!r} is not one of {REDUCTIONS}")


def softmax_focal_loss(pred: torch.Tensor, target: torch.Tensor, reduction: str = "none",
                       gamma: float = 2.0) -> torch.Tensor:
    """Focal loss ``-(1 - p_t)**gamma * log(p_t)`` over softmax probabilities.

    Args:
        pred: (..., C + 1) logits, background first.
        target: (...) int, -1 ignored (contributes 0), 0 background, 1..C classes.
        reduction: ``none`` (same shape as ``target``), ``sum`` or ``mean`` (over all entries).
        gamma: focusing parameter (0 gives cross-entropy).
    """
    valid = target >= 0
    log_p = F.log_softmax(pred, dim=-1)
    log_pt = log_p.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    loss = -((1 - log_pt.exp()) ** gamma) * log_pt
    return reduce(torch.where(valid, loss, torch.zeros_like(loss)), reduction)


def smooth_l1_loss(pred: torch.Tensor, target: torch.Tensor, beta: float = 0.11,
                   reduction: str = "sum") -> torch.Tensor:
    """Smooth L1 between positive anchors' predictions and targets (both (N, 4)): quadratic below ``beta``."""
    return F.smooth_l1_loss(pred, target, beta=beta, reduction=reduction)


class DetectionLoss(nn.Module):
    """SSD-style detection loss.

    Args:
        cls_loss_func: ``softmax_focal_loss`` or ``cross_entropy`` for the anchor classification.
        gamma: focusing parameter of the focal loss.
        beta: transition point of the smooth-L1 regression loss.
        loc_weight, cls_weight: weights of the two terms in ``loss``.

    ``forward(loc_preds (N, A, 4), loc_targets (N, A, 4), cls_preds (N, A, C + 1), cls_targets (N, A))`` returns a
    dict with ``loc_loss`` (smooth-L1 over positive anchors), ``cls_loss`` (over all non-ignored anchors), both
    divided by the number of positive anchors (at least 1, so a batch without objects gives a finite loss), and
    their weighted sum ``loss``.
    """

    def __init__(self, cls_loss_func: str = "softmax_focal_loss", gamma: float = 2.0, beta: float = 0.11,
                 loc_weight: float = 1.0, cls_weight: float = 1.0) -> None:
        super().__init__()
        if cls_loss_func not in CLS_LOSSES:
            raise ValueError(f"DetectionLoss: cls_loss_func={cls_loss_func!r} is not one of {CLS_LOSSES}")
        self.cls_loss_func = cls_loss_func
        self.gamma = float(gamma) if cls_loss_func == "softmax_focal_loss" else 0.0
        self.beta = float(beta)
        self.loc_weight = float(loc_weight)
        self.cls_weight = float(cls_weight)

    def forward(self, loc_preds: torch.Tensor, loc_targets: torch.Tensor, cls_preds: torch.Tensor,
                cls_targets: torch.Tensor) -> dict[str, torch.Tensor]:
        positive = cls_targets > 0
        num_positive = positive.sum().clamp(min=1).to(loc_preds.dtype)
        loc_loss = smooth_l1_loss(loc_preds[positive], loc_targets[positive], self.beta, "sum") / num_positive
        cls_loss = softmax_focal_loss(cls_preds, cls_targets, "sum", self.gamma) / num_positive
        return {"loss": self.loc_weight * loc_loss + self.cls_weight * cls_loss, "loc_loss": loc_loss,
                "cls_loss": cls_loss}


__all__ = ["CLS_LOSSES", "DetectionLoss", "reduce", "smooth_l1_loss", "softmax_focal_loss"]
