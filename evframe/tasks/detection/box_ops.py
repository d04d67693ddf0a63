"""Box utilities of the detection task (Metavision's ``detection.box`` API), in torch.

Conventions: ``xyxy`` boxes are ``(x1, y1, x2, y2)`` corners in pixels with ``x2 > x1``, ``y2 > y1``; ``cxcywh``
("xywh" in the function names, as in the reference) are ``(center x, center y, width, height)``. Regression targets
follow SSD: a box is expressed relative to an anchor ``(acx, acy, aw, ah)`` as
``((cx - acx) / (v0 * aw), (cy - acy) / (v0 * ah), log(w / aw) / v1, log(h / ah) / v1)`` with the variances
``(v0, v1) = (0.1, 0.2)``. IoU and NMS are torchvision's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torchvision

#: SSD variances of the centre and size regression targets
VARIANCES = (0.1, 0.2)
#: largest log-size delta decoded (as torchvision's detection models): exp() never overflows
MAX_LOG_SIZE_DELTA = math.log(1000.0 / 16)


def xywh2xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """``(..., 4)`` (cx, cy, w, h) -> ``(..., 4)`` (x1, y1, x2, y2)."""
    center, size = boxes[..., :2], boxes[..., 2:4]
    return torch.cat([center - size / 2, center + size / 2], dim=-1)


def xyxy2xywh(boxes: torch.Tensor) -> torch.Tensor:
    """``(..., 4)`` (x1, y1, x2, y2) -> ``(..., 4)`` (cx, cy, w, h)."""
    top_left, bottom_right = boxes[..., :2], boxes[..., 2:4]
    return torch.cat([(top_left + bottom_right) / 2, bottom_right - top_left], dim=-1)


def box_iou(box1: torch.Tensor, box2: torch.Tensor) -> torch.Tensor:
    """IoU of every pair of ``box1`` (N, 4) and ``box2`` (M, 4), xyxy; returns (N, M)."""
    return torchvision.ops.box_iou(box1, box2)


def batch_box_iou(box1: torch.Tensor, box2: torch.Tensor) -> torch.Tensor:
    """IoU of ``box1`` (N, 4) against each of B sets ``box2`` (B, M, 4), xyxy; returns (B, N, M).

    Degenerate boxes (zero area, such as the padding of :func:`pack_boxes_list`) have IoU 0 with everything.
    """
    a, b = box1[None, :, None, :], box2[:, None, :, :]
    # x and y overlaps separately: (B, N, M) temporaries only, no (B, N, M, 2) ones
    inter = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp_(min=0)
    inter *= (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp_(min=0)
    area1 = (box1[:, 2:4] - box1[:, :2]).clamp(min=0).prod(dim=-1)
    area2 = (box2[..., 2:4] - box2[..., :2]).clamp(min=0).prod(dim=-1)
    union = (area1[None, :, None] + area2[:, None, :]) - inter
    # union is 0 only when both boxes are empty; their IoU is then 0, not 0/0
    return inter.div_(union.clamp_(min=torch.finfo(inter.dtype).tiny))


def box_nms(bboxes: torch.Tensor, scores: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Indices of the boxes (N, 4) kept by non-maximum suppression at IoU ``threshold``, by decreasing score."""
    return torchvision.ops.nms(bboxes, scores, threshold)


def box_clamp(boxes: torch.Tensor, xmin: float, ymin: float, xmax: float, ymax: float) -> torch.Tensor:
    """Boxes (N, 4) xyxy with x clamped to ``[xmin, xmax]`` and y to ``[ymin, ymax]`` (a new tensor)."""
    out = boxes.clone()
    out[..., 0::2] = out[..., 0::2].clamp(min=xmin, max=xmax)
    out[..., 1::2] = out[..., 1::2].clamp(min=ymin, max=ymax)
    return out


def box_select(boxes: torch.Tensor, xmin: float, ymin: float, xmax: float,
               ymax: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes (N, 4) xyxy lying entirely inside ``[xmin, xmax] x [ymin, ymax]``: returns (boxes (M, 4), mask (N,))."""
    mask = (boxes[:, 0] >= xmin) & (boxes[:, 1] >= ymin) & (boxes[:, 2] <= xmax) & (boxes[:, 3] <= ymax)
    return boxes[mask], mask


def bbox_to_deltas(boxes: torch.Tensor, default_boxes: torch.Tensor, variances: Sequence[float] = VARIANCES,
                   max_width: float = 10000) -> torch.Tensor:
    """Encodes xyxy ``boxes`` (..., 4) relative to cxcywh anchors ``default_boxes`` (..., 4) (SSD formula).

    Box sizes are clamped to ``[1e-6, max_width]`` so that empty boxes (padding) give finite deltas.
    """
    xywh = xyxy2xywh(boxes)
    size = xywh[..., 2:].clamp(min=1e-6, max=max_width)
    center = (xywh[..., :2] - default_boxes[..., :2]) / (variances[0] * default_boxes[..., 2:])
    return torch.cat([center, torch.log(size / default_boxes[..., 2:]) / variances[1]], dim=-1)


def deltas_to_bbox(loc_preds: torch.Tensor, default_boxes: torch.Tensor,
                   variances: Sequence[float] = VARIANCES) -> torch.Tensor:
    """Inverse of :func:`bbox_to_deltas`: deltas (..., 4) and cxcywh anchors (..., 4) -> xyxy boxes (..., 4)."""
    center = loc_preds[..., :2] * variances[0] * default_boxes[..., 2:] + default_boxes[..., :2]
    log_size = (loc_preds[..., 2:] * variances[1]).clamp(max=MAX_LOG_SIZE_DELTA)
    size = torch.exp(log_size) * default_boxes[..., 2:]
    return torch.cat([center - size / 2, center + size / 2], dim=-1)


def assign_priors(gt_boxes: torch.Tensor, gt_labels: torch.Tensor, corner_form_priors: torch.Tensor,
                  fg_iou_threshold: float, bg_iou_threshold: float,
                  allow_low_quality_matches: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Assigns ground-truth boxes to the priors (anchors) of one image.

    Each prior takes the ground truth it overlaps most. Its label is that box's class when the IoU is at least
    ``fg_iou_threshold``, 0 (background) below ``bg_iou_threshold`` and -1 (ignored by the loss) in between. With
    ``allow_low_quality_matches`` every ground-truth box that overlaps some prior also gets its best prior, whatever
    the IoU (so small or oddly shaped objects are still learnt).

    Args:
        gt_boxes: (M, 4) xyxy.
        gt_labels: (M,) int class ids (1..C; 0 is background).
        corner_form_priors: (A, 4) xyxy anchors.
    Returns:
        boxes (A, 4) xyxy assigned to each prior (zeros where there is no ground truth), labels (A,) int64.
    """
    num_priors = corner_form_priors.shape[0]
    if gt_boxes.shape[0] == 0:
        return (corner_form_priors.new_zeros((num_priors, 4)),
                torch.zeros(num_priors, dtype=torch.long, device=corner_form_priors.device))
    ious = box_iou(corner_form_priors, gt_boxes)  # (A, M)
    best_iou, best_gt = ious.max(dim=1)
    if allow_low_quality_matches:
        best_iou_per_gt, best_prior = ious.max(dim=0)
        has_overlap = best_iou_per_gt > 0
        gt_index = torch.arange(gt_boxes.shape[0], device=gt_boxes.device)[has_overlap]
        best_gt[best_prior[has_overlap]] = gt_index
        best_iou[best_prior[has_overlap]] = 2.0  # above any threshold: these priors are foreground
    labels = gt_labels.long()[best_gt]
    labels[best_iou < fg_iou_threshold] = -1
    labels[best_iou < bg_iou_threshold] = 0
    return gt_boxes[best_gt], labels


def pack_boxes_list(targets: Sequence[torch.Tensor | np.ndarray | None],
                    device: torch.device | str | None = None) -> tuple[torch.Tensor, list[int]]:
    """Pads a list of N per-image box sets to one tensor.

    Args:
        targets: N items, each a (n_i, >=5) tensor ``[x1, y1, x2, y2, label, ...]``, a ``BBOX_DTYPE`` array (top-left
            corner, width, height, class_id) or None (no box).
    Returns:
        packed (N, max n_i, 5) float32 ``[x1, y1, x2, y2, label]`` (padding rows are zeros with label -1),
        num_boxes: list of the N counts.
    """
    rows = [_as_box_vectors(t) for t in targets]
    sizes = [int(r.shape[0]) for r in rows]
    packed = torch.zeros((len(rows), max(sizes, default=0), 5), dtype=torch.float32)
    packed[..., 4] = -1
    for i, r in enumerate(rows):
        packed[i, : sizes[i]] = r
    return (packed if device is None else packed.to(device)), sizes


def _as_box_vectors(target: torch.Tensor | np.ndarray | None) -> torch.Tensor:
    """One image's boxes as a (n, 5) float32 tensor ``[x1, y1, x2, y2, label]``."""
    if target is None:
        return torch.zeros((0, 5), dtype=torch.float32)
    if isinstance(target, np.ndarray) and target.dtype.names is not None:
        from evframe.tasks.detection.targets import bboxes_to_box_vectors

        return bboxes_to_box_vectors(target)[:, :5]
    target = torch.as_tensor(target, dtype=torch.float32).cpu()
    if target.ndim != 2 or target.shape[1] < 5:
        raise ValueError(f"pack_boxes_list: expected (n, >=5) [x1, y1, x2, y2, label, ...] boxes, got shape "
                         f"{tuple(target.shape)}")
    return target[:, :5]


__all__ = ["VARIANCES", "xywh2xyxy", "xyxy2xywh", "box_iou", "batch_box_iou", "box_nms", "box_clamp", "box_select",
           "bbox_to_deltas", "deltas_to_bbox", "assign_priors", "pack_boxes_list"]
