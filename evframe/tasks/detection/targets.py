"""From the loader's box labels (``BBOX_DTYPE`` arrays) to the tensors the detector trains on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


def bboxes_to_box_vectors(bbox: np.ndarray | torch.Tensor | None) -> torch.Tensor:
    """Uniformises boxes to a (n, 6) float32 tensor ``[x1, y1, x2, y2, class_id, track_id]``.

    Accepts a ``BBOX_DTYPE`` structured array (top-left corner, width, height), a tensor already in this layout
    (returned as float32), or None (no box).
    """
    if bbox is None:
        return torch.zeros((0, 6), dtype=torch.float32)
    if isinstance(bbox, torch.Tensor):
        return bbox.float()
    if bbox.dtype.names is None:
        return torch.as_tensor(np.asarray(bbox, dtype=np.float32))
    x1 = bbox["x"].astype(np.float32)
    y1 = bbox["y"].astype(np.float32)
    out = np.stack([x1, y1, x1 + bbox["w"].astype(np.float32), y1 + bbox["h"].astype(np.float32),
                    bbox["class_id"].astype(np.float32), bbox["track_id"].astype(np.float32)], axis=1)
    return torch.from_numpy(out.reshape(-1, 6))


def valid_boxes(vectors: torch.Tensor) -> torch.Tensor:
    """Rows of (n, >=4) ``[x1, y1, x2, y2, ...]`` with finite corners and positive width and height.

    The loaders already drop such boxes (with a counted warning); this guards labels from other ``load_labels``
    hooks, since one NaN box would turn the whole loss into NaN."""
    ok = torch.isfinite(vectors[:, :4]).all(dim=1) & (vectors[:, 2] > vectors[:, 0]) & (vectors[:, 3] > vectors[:, 1])
    return vectors[ok]


def flatten_targets(labels: Sequence[Sequence[Any]]) -> list[torch.Tensor]:
    """The loader's ``labels`` (T lists of B box arrays) as T*B (n, 5) ``[x1, y1, x2, y2, class_id]`` tensors in
    time-major order (row ``t * B + b``, as :func:`evframe.models.temporal.time_to_batch`); invalid boxes (see
    :func:`valid_boxes`) are left out."""
    return [valid_boxes(bboxes_to_box_vectors(boxes)[:, :5]) for per_time in labels for boxes in per_time]


def labeled_mask(batch: dict[str, Any], active: torch.Tensor | None = None) -> torch.Tensor:
    """(T*B,) bool, time-major: frames that carry a ground truth (``frame_is_labeled``) of active (non-padding)
    streams. Only these contribute to the loss and the evaluation."""
    mask = torch.as_tensor(batch["frame_is_labeled"]).bool().clone()
    if active is not None:
        mask &= active.to(mask.device).view(1, -1)
    return mask.reshape(-1)


__all__ = ["bboxes_to_box_vectors", "flatten_targets", "labeled_mask", "valid_boxes"]
