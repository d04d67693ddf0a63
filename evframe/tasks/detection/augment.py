"""Training augmentation that keeps recurrent memory consistent: a whole recording is mirrored or not."""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import torch


def flip_recording(path: str, epoch: int, seed: int = 0) -> bool:
    """Whether recording ``path`` is mirrored during ``epoch``: a fair coin, fixed for the whole epoch (every batch of
    a recording, hence the memory carried between them, sees the same side) and drawn anew each epoch."""
    return zlib.crc32(f"{seed}:{epoch}:{path}".encode()) % 2 == 1


def hflip_boxes(boxes: np.ndarray | None, width: int) -> np.ndarray | None:
    """A copy of ``BBOX_DTYPE`` boxes mirrored left-right in a frame ``width`` pixels wide: ``x -> width - x - w``."""
    if boxes is None:
        return None
    out = boxes.copy()
    out["x"] = width - boxes["x"] - boxes["w"]
    return out


def hflip_batch(batch: dict[str, Any], epoch: int, seed: int = 0) -> dict[str, Any]:
    """The batch with the streams whose recording :func:`flip_recording` picks mirrored (inputs ``(T, B, C, H, W)``
    flipped along W, their box labels mirrored); other streams and padding are unchanged. ``batch`` is not modified.
    """
    infos = batch.get("video_infos") or []
    flips = [not md.is_padding() and flip_recording(md.path, epoch, seed) for md, _, _ in infos]
    if not any(flips):
        return batch
    width = int(batch["inputs"].shape[-1])
    index = torch.tensor(flips, device=batch["inputs"].device)
    inputs = torch.where(index.view(1, -1, 1, 1, 1), batch["inputs"].flip(-1), batch["inputs"])
    labels = [[hflip_boxes(boxes, width) if flips[b] else boxes for b, boxes in enumerate(per_time)]
              for per_time in batch["labels"]]
    return dict(batch, inputs=inputs, labels=labels)


__all__ = ["flip_recording", "hflip_batch", "hflip_boxes"]
