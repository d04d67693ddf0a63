"""Box utilities against hand-computed IoUs, encodings and assignments."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from evframe.io.dtypes import BBOX_DTYPE
from evframe.tasks.detection.box_ops import (
    assign_priors,
    batch_box_iou,
    bbox_to_deltas,
    box_clamp,
    box_iou,
    box_nms,
    box_select,
    deltas_to_bbox,
    pack_boxes_list,
    xywh2xyxy,
    xyxy2xywh,
)


def test_box_iou_known_values() -> None:
    a = torch.tensor([[0.0, 0, 10, 10]])
    b = torch.tensor([[5.0, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10], [2, 2, 4, 7]])
    # half overlap: 50 / 150; disjoint; identical; contained: 10 / 100
    assert box_iou(a, b)[0].tolist() == pytest.approx([1 / 3, 0.0, 1.0, 0.1])


def test_batch_box_iou_matches_box_iou_per_set_and_padding_gives_zero() -> None:
    anchors = torch.tensor([[0.0, 0, 10, 10], [5, 5, 25, 15], [0, 0, 0, 0]])
    sets = torch.tensor([[[5.0, 0, 15, 10], [0, 0, 0, 0]], [[0, 0, 10, 10], [5, 5, 25, 15]]])
    ious = batch_box_iou(anchors, sets)
    assert ious.shape == (2, 3, 2)
    for b in range(2):
        expected = box_iou(anchors, sets[b]).nan_to_num(0.0)
        assert torch.allclose(ious[b], expected)
    assert ious[0, :, 1].tolist() == [0.0, 0.0, 0.0]  # a zero padding box matches nothing
    assert ious[0, 2, 1].item() == 0.0 and not torch.isnan(ious).any()  # empty vs empty: 0, not NaN


def test_xywh_xyxy_conversions() -> None:
    xywh = torch.tensor([[5.0, 5, 10, 4], [0, 0, 2, 2]])
    xyxy = xywh2xyxy(xywh)
    assert xyxy.tolist() == [[0, 3, 10, 7], [-1, -1, 1, 1]]
    assert torch.equal(xyxy2xywh(xyxy), xywh)


def test_bbox_to_deltas_hand_computed_and_inverse() -> None:
    anchors = torch.tensor([[10.0, 10, 20, 10], [10, 10, 20, 10]])
    boxes = torch.tensor([[2.0, 6, 22, 16], [-10, 5, 30, 15]])  # centres (12, 11) and (10, 10); widths 20 and 40
    deltas = bbox_to_deltas(boxes, anchors)
    # dx = (12 - 10) / (0.1 * 20) = 1, dy = (11 - 10) / (0.1 * 10) = 1; log(40 / 20) / 0.2 = 3.4657
    assert deltas[0].tolist() == pytest.approx([1.0, 1.0, 0.0, 0.0])
    assert deltas[1].tolist() == pytest.approx([0.0, 0.0, math.log(2) / 0.2, 0.0])
    assert torch.allclose(deltas_to_bbox(deltas, anchors), boxes, atol=1e-5)


def test_deltas_of_empty_boxes_stay_finite_and_huge_deltas_do_not_overflow() -> None:
    anchors = torch.tensor([[10.0, 10, 20, 10]])
    assert torch.isfinite(bbox_to_deltas(torch.zeros(1, 4), anchors)).all()
    assert torch.isfinite(deltas_to_bbox(torch.tensor([[0.0, 0, 1e4, 1e4]]), anchors)).all()


def test_box_clamp_and_select() -> None:
    boxes = torch.tensor([[-5.0, 2, 8, 30], [1, 1, 9, 9]])
    assert box_clamp(boxes, 0, 0, 10, 20).tolist() == [[0, 2, 8, 20], [1, 1, 9, 9]]
    assert boxes[0, 0] == -5  # not modified in place
    kept, mask = box_select(boxes, 0, 0, 10, 20)
    assert mask.tolist() == [False, True] and kept.tolist() == [[1, 1, 9, 9]]


def test_box_nms_keeps_best_of_overlapping_boxes() -> None:
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30]])  # IoU(0, 1) = 90 / 110
    scores = torch.tensor([0.5, 0.9, 0.3])
    assert box_nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert box_nms(boxes, scores, 0.85).tolist() == [1, 0, 2]


def test_assign_priors_thresholds_and_low_quality_match() -> None:
    gt = torch.tensor([[0.0, 0, 10, 10], [200, 200, 230, 230]])
    labels = torch.tensor([2, 1])
    priors = torch.tensor([
        [0.0, 0, 10, 10],      # IoU 1 with gt 0 -> class 2
        [0, 0, 10, 25],        # IoU 100 / 250 = 0.4 -> ignored
        [0, 0, 10, 50],        # IoU 0.2 -> background
        [100, 100, 110, 110],  # no overlap -> background
        [200, 200, 210, 210],  # IoU 100 / 900 with gt 1: background unless low-quality matches are allowed
    ])
    boxes, cls = assign_priors(gt, labels, priors, 0.5, 0.3, allow_low_quality_matches=False)
    assert cls.tolist() == [2, -1, 0, 0, 0]
    boxes, cls = assign_priors(gt, labels, priors, 0.5, 0.3, allow_low_quality_matches=True)
    assert cls.tolist() == [2, -1, 0, 0, 1]
    assert boxes[0].tolist() == [0, 0, 10, 10] and boxes[4].tolist() == [200, 200, 230, 230]


def test_assign_priors_without_ground_truth_is_all_background() -> None:
    boxes, cls = assign_priors(torch.zeros(0, 4), torch.zeros(0), torch.tensor([[0.0, 0, 5, 5]]), 0.5, 0.3)
    assert cls.tolist() == [0] and boxes.shape == (1, 4)


def test_pack_boxes_list_pads_with_label_minus_one_and_reads_bbox_arrays() -> None:
    arr = np.zeros(2, dtype=BBOX_DTYPE)
    arr["x"], arr["y"], arr["w"], arr["h"], arr["class_id"] = [1, 5], [2, 6], [3, 4], [4, 5], [1, 3]
    packed, sizes = pack_boxes_list([arr, None, torch.tensor([[0.0, 0, 1, 1, 2, 7]])])
    assert sizes == [2, 0, 1] and packed.shape == (3, 2, 5)
    assert packed[0].tolist() == [[1, 2, 4, 6, 1], [5, 6, 9, 11, 3]]
    assert packed[1, :, 4].tolist() == [-1, -1]
    assert packed[2].tolist() == [[0, 0, 1, 1, 2], [0, 0, 0, 0, -1]]
    with pytest.raises(ValueError, match="x1, y1, x2, y2, label"):
        pack_boxes_list([torch.zeros(3, 4)])
