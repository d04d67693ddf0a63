"""COCO metrics of timestamped boxes with pycocotools, as used for event-camera detection datasets.

Ground truth and detections are per-recording ``BBOX_DTYPE`` arrays (time ``t`` in us, top-left ``x, y``, ``w, h``,
``class_id`` in 1..C, and for detections the score in ``class_confidence``). Event recordings have no frames, so
each distinct ground-truth timestamp ``ts`` of a recording becomes one COCO image: its ground truth is the boxes
labelled at ``ts``, its detections are those timestamped within ``[ts - time_tol, ts + time_tol]`` (or an
asymmetric window, see :func:`match_times`). pycocotools then
computes the usual metrics: mAP (IoU 0.50:0.95), mAP@50, mAP@75 and mAP of small (< 32^2 px), medium and large
(> 96^2 px) objects. Metrics of an area range without ground truth are -1 (pycocotools' convention).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np

from evframe.io.dtypes import BBOX_DTYPE

#: names of the pycocotools summary values returned, in the order of ``COCOeval.stats``
METRIC_NAMES = ("mAP", "mAP_50", "mAP_75", "mAP_small", "mAP_medium", "mAP_large")


def filter_boxes(boxes: np.ndarray, min_box_diag: float = 0, min_box_side: float = 0) -> np.ndarray:
    """Boxes whose diagonal is at least ``min_box_diag`` and both sides at least ``min_box_side`` pixels."""
    if min_box_diag <= 0 and min_box_side <= 0:
        return boxes
    keep = (np.hypot(boxes["w"], boxes["h"]) >= min_box_diag) & (np.minimum(boxes["w"], boxes["h"]) >= min_box_side)
    return boxes[keep]


def match_times(gt: np.ndarray, dt: np.ndarray, time_tol: int,
                time_tol_after: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """One (ground truth, detections) pair per distinct ground-truth timestamp of one recording (see module doc).

    Args:
        gt, dt: BBOX_DTYPE arrays (any order).
        time_tol: tolerance in us before the label (inclusive), and after it unless ``time_tol_after`` is given.
        time_tol_after: tolerance after the label (inclusive), e.g. ``delta_t - 1`` with ``time_tol=0`` to pair a
            label with the time bin that holds it when detections are stamped at bin ends.
    """
    after = time_tol if time_tol_after is None else time_tol_after
    gt = gt[np.argsort(gt["t"], kind="stable")]
    dt = dt[np.argsort(dt["t"], kind="stable")]
    times = np.unique(gt["t"])
    gt_lo = np.searchsorted(gt["t"], times, side="left")
    gt_hi = np.searchsorted(gt["t"], times, side="right")
    dt_lo = np.searchsorted(dt["t"], times - time_tol, side="left")
    dt_hi = np.searchsorted(dt["t"], times + after, side="right")
    return [(gt[a:b], dt[c:d]) for a, b, c, d in zip(gt_lo, gt_hi, dt_lo, dt_hi, strict=True)]


def _xywh(boxes: np.ndarray) -> list[list[float]]:
    return np.stack([boxes["x"], boxes["y"], boxes["w"], boxes["h"]], axis=1).astype(float).tolist()


def to_coco(frames: Sequence[tuple[np.ndarray, np.ndarray]], classes: Sequence[str], height: int,
            width: int) -> tuple[dict, list[dict]]:
    """COCO ground-truth dataset and detection results of frames (``(gt, dt)`` pairs, image ids 1..n)."""
    images, annotations, results = [], [], []
    for image_id, (gt, dt) in enumerate(frames, start=1):
        images.append({"id": image_id, "height": int(height), "width": int(width)})
        for bbox, cls in zip(_xywh(gt), gt["class_id"].tolist(), strict=True):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "bbox": bbox,
                                "area": bbox[2] * bbox[3], "category_id": int(cls), "iscrowd": 0})
        for bbox, cls, score in zip(_xywh(dt), dt["class_id"].tolist(), dt["class_confidence"].tolist(),
                                    strict=True):
            results.append({"image_id": image_id, "bbox": bbox, "category_id": int(cls), "score": float(score)})
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(classes)]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def coco_eval(dataset: dict, results: list[dict]) -> dict[str, float]:
    """Runs pycocotools' bbox evaluation; returns :data:`METRIC_NAMES` -> value (silences its printing)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = dataset
        coco_gt.createIndex()
        if results:
            coco_dt = coco_gt.loadRes(results)
        else:  # loadRes cannot take an empty list: an index without annotations gives AP 0
            coco_dt = COCO()
            coco_dt.dataset = {"images": dataset["images"], "categories": dataset["categories"], "annotations": []}
            coco_dt.createIndex()
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.params.imgIds = [image["id"] for image in dataset["images"]]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(value) for name, value in zip(METRIC_NAMES, evaluator.stats, strict=False)}


def evaluate_detection(gt_boxes_list: Sequence[np.ndarray], dt_boxes_list: Sequence[np.ndarray],
                       classes: Sequence[str], height: int, width: int, time_tol: int = 25000,
                       min_box_diag: float = 0, min_box_side: float = 0,
                       time_tol_after: int | None = None) -> dict[str, float]:
    """COCO metrics of detections against ground truth over whole recordings.

    Args:
        gt_boxes_list, dt_boxes_list: one BBOX_DTYPE array per recording (same order); ``class_id`` 1..C indexes
            ``classes``; detections carry their score in ``class_confidence``.
        classes: class names (``class_id`` 1 is ``classes[0]``).
        height, width: image size the boxes are expressed in (it sets nothing but the COCO image records).
        time_tol: detections within this many us of a ground-truth timestamp are matched to it (before it, and after
            it unless ``time_tol_after`` is given; see :func:`match_times`).
        min_box_diag, min_box_side: ground truth and detections smaller than this (pixels) are ignored.
    Returns:
        :data:`METRIC_NAMES` -> value; all -1 when there is no ground truth at all.
    """
    if len(gt_boxes_list) != len(dt_boxes_list):
        raise ValueError(f"evaluate_detection: {len(gt_boxes_list)} ground-truth and {len(dt_boxes_list)} detection "
                         "recordings")
    frames: list[tuple[np.ndarray, np.ndarray]] = []
    for gt, dt in zip(gt_boxes_list, dt_boxes_list, strict=True):
        gt = filter_boxes(np.asarray(gt, dtype=BBOX_DTYPE), min_box_diag, min_box_side)
        dt = filter_boxes(np.asarray(dt, dtype=BBOX_DTYPE), min_box_diag, min_box_side)
        frames += match_times(gt, dt, int(time_tol), None if time_tol_after is None else int(time_tol_after))
    if not frames:
        return dict.fromkeys(METRIC_NAMES, -1.0)
    dataset, results = to_coco(frames, classes, height, width)
    return coco_eval(dataset, results)


__all__ = ["METRIC_NAMES", "coco_eval", "evaluate_detection", "filter_boxes", "match_times", "to_coco"]
