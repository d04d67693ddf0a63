"""Anchor grids (sizes, strides, caching) and the batched encoding / decoding against hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from evframe.tasks.detection.anchors import PSEE_ANCHORS, AnchorLayer, Anchors, get_anchor_list
from evframe.tasks.detection.box_ops import assign_priors, bbox_to_deltas, box_iou


def features(*sizes: tuple[int, int]) -> list[torch.Tensor]:
    return [torch.zeros(1, 3, h, w) for h, w in sizes]


def test_generate_anchors_ratio_is_height_over_width_and_area_follows_scale() -> None:
    sizes = AnchorLayer.generate_anchors(32, PSEE_ANCHORS)
    w, h = sizes[:, 0], sizes[:, 1]
    assert sizes.shape == (6, 2)
    assert (h / w).tolist() == pytest.approx([1 / 3, 0.5, 1, 1, 2, 3], rel=1e-5)
    assert (w * h).tolist() == pytest.approx([1024, 1024, 1024, 48 * 48, 1024, 1024], rel=1e-5)
    assert sizes[5].tolist() == pytest.approx([32 / math.sqrt(3), 32 * math.sqrt(3)], rel=1e-5)


def test_strides_come_from_each_map_height_and_width() -> None:
    anchors = Anchors(num_levels=2, base_size=32)
    x = torch.zeros(1, 2, 240, 304)
    grid = anchors(features((15, 19), (8, 10)), x)
    assert grid.shape == ((15 * 19 + 8 * 10) * 6, 4)
    level1 = grid[15 * 19 * 6:].view(8, 10, 6, 4)
    # level 1: 8 rows over 240 px -> stride 30, 10 columns over 304 px -> stride 30.4 (not 30.4 for both axes)
    assert level1[0, 0, 0, :2].tolist() == pytest.approx([15.2, 15.0])
    assert level1[7, 9, 0, :2].tolist() == pytest.approx([9.5 * 30.4, 7.5 * 30.0])
    assert level1[0, 0, 2, 2:].tolist() == pytest.approx([64, 64])  # base size doubles per level
    level0 = grid[: 15 * 19 * 6].view(15, 19, 6, 4)
    assert level0[14, 18, 2].tolist() == pytest.approx([18.5 * 16, 14.5 * 16, 32, 32])


def test_anchors_are_cached_and_rebuilt_when_a_size_changes() -> None:
    anchors = Anchors(num_levels=2)
    x = torch.zeros(1, 2, 64, 64)
    first = anchors(features((8, 8), (4, 4)), x)
    assert anchors(features((8, 8), (4, 4)), x) is first
    assert not anchors.has_changed(features((8, 8), (4, 4)), x)
    assert anchors.has_changed(features((8, 8), (4, 4)), torch.zeros(1, 2, 64, 80))
    second = anchors(features((8, 10), (4, 5)), torch.zeros(1, 2, 64, 80))
    assert second is not first and second.shape[0] == (80 + 20) * 6
    with pytest.raises(ValueError, match="num_levels"):
        anchors(features((8, 8)), x)


def test_anchor_list_validation() -> None:
    assert get_anchor_list([[1, 2]]) == [(1.0, 2.0)]
    with pytest.raises(ValueError, match="PSEE_ANCHORS"):
        get_anchor_list("NOPE")
    with pytest.raises(ValueError, match="positive"):
        get_anchor_list([(0, 1)])


def _separated_targets(n_images: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Images with 0-3 boxes in separate quadrants of a 128x128 input (no two boxes share a best anchor)."""
    out = []
    corners = [(4, 4), (68, 4), (4, 68), (68, 68)]
    for i in range(n_images):
        rows = []
        for k in range(i % 4):
            x0, y0 = corners[k]
            w, h = (torch.rand(2, generator=generator) * 40 + 10).tolist()
            rows.append([x0, y0, x0 + w, y0 + h, 1 + (i + k) % 3])
        out.append(torch.tensor(rows, dtype=torch.float32).reshape(-1, 5))
    return out


def test_batched_encode_equals_per_image_assign_priors() -> None:
    anchors = Anchors(num_levels=3, base_size=16)
    x = torch.zeros(1, 2, 128, 128)
    feats = features((16, 16), (8, 8), (4, 4))
    targets = _separated_targets(7, torch.Generator().manual_seed(0))
    loc, cls = anchors.encode(feats, x, targets)
    grid = anchors(feats, x)
    assert loc.shape == (7, grid.shape[0], 4) and cls.shape == (7, grid.shape[0])
    for i, t in enumerate(targets):
        boxes, labels = assign_priors(t[:, :4], t[:, 4], anchors.anchors_xyxy, 0.5, 0.3, True)
        assert torch.equal(cls[i], labels)
        positive = labels > 0
        assert torch.allclose(loc[i][positive], bbox_to_deltas(boxes, grid)[positive], atol=1e-5)
    assert cls[0].eq(0).all()  # the image without boxes is all background


def test_every_ground_truth_gets_an_anchor_even_a_tiny_one() -> None:
    anchors = Anchors(num_levels=2, base_size=32)
    x = torch.zeros(1, 2, 64, 64)
    feats = features((8, 8), (4, 4))
    tiny = torch.tensor([[30.0, 30, 34, 33, 2]])  # IoU with the smallest anchor ~ 12 / 1024, far below 0.3
    _, cls = anchors.encode(feats, x, [tiny])
    assert (cls[0] == 2).sum() == 1
    no_low = Anchors(num_levels=2, base_size=32, allow_low_quality_matches=False)
    _, cls = no_low.encode(feats, x, [tiny])
    assert (cls[0] > 0).sum() == 0


def test_encode_of_a_batch_without_any_box() -> None:
    anchors = Anchors(num_levels=1)
    loc, cls = anchors.encode(features((4, 4)), torch.zeros(1, 1, 32, 32), [None, torch.zeros(0, 5)])
    assert loc.shape == (2, 96, 4) and cls.eq(0).all() and loc.eq(0).all()


def test_encode_then_decode_gives_back_the_ground_truth() -> None:
    anchors = Anchors(num_levels=3, base_size=16)
    x = torch.zeros(2, 3, 2, 128, 128)  # T=2, B=3 -> 6 images, time-major
    feats = features((16, 16), (8, 8), (4, 4))
    targets = _separated_targets(6, torch.Generator().manual_seed(1))
    loc, cls = anchors.encode(feats, x, targets)
    scores = torch.zeros(6, cls.shape[1], 3)
    positive = cls > 0
    scores[positive, cls[positive] - 1] = 0.9  # every positive anchor votes for its box with its class
    decoded = anchors.decode(feats, x, loc, scores, batch_size=3, score_thresh=0.5, nms_thresh=0.5)
    assert len(decoded) == 2 and all(len(row) == 3 for row in decoded)
    for i, t in enumerate(targets):
        boxes = decoded[i // 3][i % 3]
        assert boxes.shape == (len(t), 6)  # NMS merged the anchors of each box into one
        if len(t):
            order = torch.argsort(boxes[:, 0] * 1000 + boxes[:, 1])
            expected = t[torch.argsort(t[:, 0] * 1000 + t[:, 1])]
            assert torch.allclose(boxes[order, :4], expected[:, :4], atol=1e-3)
            assert boxes[order, 5].tolist() == expected[:, 4].tolist()
            assert boxes[:, 4].eq(0.9).all()


def test_batched_decode_threshold_nms_per_class_and_per_image_and_topk() -> None:
    anchors = Anchors(num_levels=1)
    boxes = torch.tensor([[[0.0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]]]).repeat(2, 1, 1)
    scores = torch.zeros(2, 3, 2)
    scores[0, 0, 0], scores[0, 1, 0], scores[0, 1, 1], scores[0, 2, 0] = 0.8, 0.9, 0.7, 0.2
    scores[1, 0, 0] = 0.6  # another image: never suppressed by image 0's boxes
    out = anchors.batched_decode(boxes, scores, score_thresh=0.3, nms_thresh=0.5, topk=10)
    assert len(out) == 2
    # image 0: box 0 (class 1) suppressed by box 1 (class 1, IoU 0.82); box 1 of class 2 is kept; box 2 under 0.3
    assert out[0][:, 4].tolist() == pytest.approx([0.9, 0.7])
    assert out[0][:, 5].tolist() == [1, 2]
    assert out[1].tolist() == [pytest.approx([0, 0, 10, 10, 0.6, 1])]
    top1 = anchors.batched_decode(boxes, scores, score_thresh=0.3, nms_thresh=0.5, topk=1)
    assert [len(o) for o in top1] == [1, 1]
    best_only = Anchors(num_levels=1, max_decode=True).batched_decode(boxes, scores, 0.3, 0.5, 10)
    assert best_only[0][:, 5].tolist() == [1]  # anchor 1's class 2 is not its best class


def test_decoded_boxes_are_clipped_to_the_input() -> None:
    anchors = Anchors(num_levels=1)
    feats, x = features((2, 2)), torch.zeros(1, 1, 16, 16)
    grid = anchors(feats, x)
    scores = torch.zeros(1, grid.shape[0], 1)
    scores[0, 2, 0] = 1.0
    (boxes,), = anchors.decode(feats, x, torch.zeros(1, grid.shape[0], 4), scores, 1, 0.5, 0.5)
    # decoded boxes are clipped to the 16x16 input
    assert box_iou(boxes[:, :4], torch.tensor([[0.0, 0, 16, 16]])).item() == pytest.approx(256 / 256)
