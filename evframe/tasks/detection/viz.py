"""Drawing boxes on RGB frames, and videos of a detector's predictions beside the ground truth."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import cv2
import numpy as np
import torch

from evframe.data.visualize import get_vis_func, make_grid
from evframe.tasks.detection.targets import bboxes_to_box_vectors
from evframe.tasks.video_callback import model_batches

#: RGB colour of each class id (cycled), and of the ground truth
CLASS_COLORS = ((255, 64, 64), (64, 160, 255), (255, 200, 0), (200, 64, 255), (0, 220, 120), (255, 128, 192))
GT_COLOR = (255, 255, 255)


def draw_boxes(frame: np.ndarray, boxes: torch.Tensor | np.ndarray | None, classes: Sequence[str] = (),
               color: tuple[int, int, int] | None = None, thickness: int = 1) -> np.ndarray:
    """Draws boxes on an RGB uint8 frame (H, W, 3) in place and returns it.

    Args:
        boxes: (n, >=5) ``[x1, y1, x2, y2, class_id]`` or (n, 6) detections ``[x1, y1, x2, y2, score, class_id]``
            (a ``BBOX_DTYPE`` array is read as ground truth), in the frame's pixels.
        classes: names of class ids 1..C (labels written next to detections).
        color: one colour for all boxes (None: by class).
    """
    if boxes is None:
        return frame
    is_gt = isinstance(boxes, np.ndarray) and boxes.dtype.names is not None
    rows = bboxes_to_box_vectors(boxes).cpu().numpy() if is_gt else torch.as_tensor(boxes).detach().cpu().numpy()
    for row in rows.reshape(-1, rows.shape[-1] if rows.size else 6):
        x1, y1, x2, y2 = (int(round(float(v))) for v in row[:4])
        if is_gt or rows.shape[1] < 6:
            class_id, score = int(row[4]), None
        else:
            class_id, score = int(round(float(row[5]))), float(row[4])
        c = color or CLASS_COLORS[(class_id - 1) % len(CLASS_COLORS)]
        cv2.rectangle(frame, (x1, y1), (x2, y2), c, thickness)
        if score is not None:
            name = classes[class_id - 1] if 0 < class_id <= len(classes) else str(class_id)
            cv2.putText(frame, f"{name} {score:.2f}", (x1, max(y1 - 2, 8)), cv2.FONT_HERSHEY_SIMPLEX, 0.3, c, 1,
                        cv2.LINE_AA)
    return frame


@torch.no_grad()
def detection_video_frames(module: Any, batches: Iterable[dict[str, Any]], preprocess_name: str, max_batches: int,
                           score_thresh: float = 0.4, nms_thresh: float = 0.5) -> Iterator[np.ndarray]:
    """Runs ``module`` (a :class:`DetectionLightningModule`) over ``batches``; yields one RGB frame per time bin:
    the B streams in a grid, ground truth in white, detections above ``score_thresh`` coloured by class.

    The module's memory is cleared before and after, reset by each batch's ``mask_keep_memory``; its train/eval
    mode is restored afterwards.
    """
    vis = get_vis_func(preprocess_name)
    for batch, inputs in model_batches(module, batches, max_batches):
        boxes = module.model.get_boxes(inputs, score_thresh, nms_thresh)
        inputs = inputs.cpu().numpy()
        for t in range(inputs.shape[0]):
            tiles = []
            for b in range(inputs.shape[1]):
                frame = np.ascontiguousarray(vis(inputs[t, b]))
                draw_boxes(frame, batch["labels"][t][b], color=GT_COLOR)
                tiles.append(draw_boxes(frame, boxes[t][b], module.classes))
            yield make_grid(tiles)


__all__ = ["CLASS_COLORS", "GT_COLOR", "detection_video_frames", "draw_boxes"]
