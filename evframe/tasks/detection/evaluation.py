"""Accumulates ground truth and detections of whole recordings batch after batch, then scores them with COCO."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from evframe.io.dtypes import BBOX_DTYPE
from evframe.tasks.detection.coco_eval import METRIC_NAMES, evaluate_detection


def detections_to_bbox(boxes: torch.Tensor, t: int, scale: float = 1.0) -> np.ndarray:
    """(n, 6) ``[x1, y1, x2, y2, score, class_id]`` -> BBOX_DTYPE at time ``t``, coordinates times ``scale``, the
    score in ``class_confidence``."""
    rows = boxes.detach().float().cpu().numpy().reshape(-1, 6)
    out = np.zeros(len(rows), dtype=BBOX_DTYPE)
    out["t"] = t
    out["x"], out["y"] = rows[:, 0] * scale, rows[:, 1] * scale
    out["w"], out["h"] = (rows[:, 2] - rows[:, 0]) * scale, (rows[:, 3] - rows[:, 1]) * scale
    out["class_id"] = rows[:, 5].round().astype(np.uint32)
    out["class_confidence"] = rows[:, 4]
    return out


def scale_boxes(boxes: np.ndarray, scale: float) -> np.ndarray:
    """A copy of BBOX_DTYPE ``boxes`` with coordinates and sizes multiplied by ``scale``."""
    out = np.array(boxes, dtype=BBOX_DTYPE, copy=True)
    for name in ("x", "y", "w", "h"):
        out[name] *= scale
    return out


class DetectionEvaluator:
    """Collects, per recording, the labelled ground truth and every detection of a loader's batches.

    Boxes are stored in sensor pixels (network boxes times ``2**downsample``) so that the small / medium / large
    ranges do not depend on the input downsampling. A detection of time bin ``k`` of a batch starting at ``t0`` is
    timestamped at the end of its bin, ``t0 + (k + 1) * delta_t``: the network has then seen the events up to
    that time, and the ground truth of that bin lies in ``(t0 + k * delta_t, t0 + (k + 1) * delta_t]``.

    Args:
        classes: class names (class id 1 is ``classes[0]``).
        time_tol: matching tolerance in us on both sides of a label. None: the label is paired with the detections
            of the time bin that holds it (stamped in ``[t_label, t_label + delta_t)``), the bin trained with it.
        min_box_diag, min_box_side: boxes smaller than this (sensor pixels) are left out of the evaluation.
    """

    def __init__(self, classes: Sequence[str], time_tol: int | None = None, min_box_diag: float = 0,
                 min_box_side: float = 0) -> None:
        self.classes = list(classes)
        self.time_tol = time_tol
        self.min_box_diag = float(min_box_diag)
        self.min_box_side = float(min_box_side)
        self.reset()

    def reset(self) -> None:
        self._gt: dict[str, list[np.ndarray]] = defaultdict(list)
        self._dt: dict[str, list[np.ndarray]] = defaultdict(list)
        self._delta_t: int | None = None
        self._size: tuple[int, int] = (0, 0)

    def update(self, batch: dict[str, Any], boxes: Sequence[Sequence[torch.Tensor]]) -> None:
        """Adds a batch: its ``labels`` of frames with ``frame_is_labeled``, and ``boxes`` (T lists of B (n, 6)
        detections in network pixels, from ``SingleStageDetector.get_boxes``). Padding streams are skipped."""
        labeled = torch.as_tensor(batch["frame_is_labeled"]).cpu().numpy()
        for b, (metadata, start_ts, _) in enumerate(batch["video_infos"]):
            if metadata.is_padding():
                continue
            scale = 2.0 ** metadata.downsample
            delta_t = metadata.delta_t
            self._delta_t = delta_t
            if metadata.height and metadata.width:
                self._size = (int(metadata.height), int(metadata.width))
            for t in range(len(boxes)):
                if labeled[t, b] and batch["labels"][t][b] is not None:
                    self._gt[metadata.path].append(scale_boxes(batch["labels"][t][b], scale))
                self._dt[metadata.path].append(detections_to_bbox(boxes[t][b], start_ts + (t + 1) * delta_t, scale))

    @property
    def num_recordings(self) -> int:
        return len(self._dt)

    def state(self) -> dict[str, Any]:
        """What was added since the last :meth:`reset`, as plain picklable values (to send to other processes)."""
        return {"gt": dict(self._gt), "dt": dict(self._dt), "delta_t": self._delta_t, "size": self._size}

    def merge(self, states: Sequence[dict[str, Any]]) -> None:
        """Adds the :meth:`state` of other evaluators (e.g. every DDP rank's share of the recordings), so that
        :meth:`compute` scores the union. The parts of a recording seen by several evaluators are concatenated."""
        for state in states:
            for key in ("gt", "dt"):
                for path, boxes in state[key].items():
                    getattr(self, f"_{key}")[path].extend(boxes)
            if state["delta_t"] is not None:
                self._delta_t = state["delta_t"]
            if state["size"] != (0, 0):
                self._size = tuple(state["size"])

    def gather(self) -> None:
        """Under ``torch.distributed``, replaces this evaluator's content by the union of every process's (a
        collective call: every rank must make it). Without a process group it does nothing."""
        dist = torch.distributed
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        states: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(states, self.state())
        self.reset()
        self.merge(states)

    def compute(self) -> dict[str, float]:
        """COCO metrics (:data:`METRIC_NAMES`) of everything added since the last :meth:`reset`."""
        paths = sorted(self._dt)
        if not paths:
            return dict.fromkeys(METRIC_NAMES, -1.0)
        empty = np.zeros(0, dtype=BBOX_DTYPE)
        gt = [np.concatenate(self._gt[p]) if self._gt.get(p) else empty for p in paths]
        dt = [np.concatenate(self._dt[p]) if self._dt[p] else empty for p in paths]
        height, width = self._size
        if self.time_tol is None:  # labels in (k dt, (k+1) dt] belong to bin k, whose detections are stamped (k+1) dt
            time_tol, after = 0, max(int(self._delta_t or 1) - 1, 0)
        else:
            time_tol, after = int(self.time_tol), None
        return evaluate_detection(gt, dt, self.classes, height, width, time_tol, self.min_box_diag,
                                  self.min_box_side, time_tol_after=after)


__all__ = ["DetectionEvaluator", "detections_to_bbox", "scale_boxes"]
