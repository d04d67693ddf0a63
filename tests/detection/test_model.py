"""Feature extractors, box head, loss and the single-stage detector: shapes, known values, memory, fine-tuning."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from evframe.models.temporal import recurrent_modules
from evframe.tasks.detection.feature_extractors import FEATURE_EXTRACTORS
from evframe.tasks.detection.losses import DetectionLoss, softmax_focal_loss
from evframe.tasks.detection.rpn import BoxHead, softmax_init
from evframe.tasks.detection.single_stage_detector import SingleStageDetector


def tiny_detector(num_classes: int = 2, name: str = "Vanilla", **kwargs) -> SingleStageDetector:
    options = dict(feature_base=4, feature_channels_out=8, num_levels=2, base_size=8, stem_depth=2)
    options.update(kwargs)
    return SingleStageDetector(name, 2, num_classes, **options)


@pytest.mark.parametrize("name,cell", [("Vanilla", "lstm"), ("Vanilla_VGG", "lstm"), ("Vanilla_VGGRU", "gru")])
def test_feature_extractor_pyramid_shapes_and_cells(name: str, cell: str) -> None:
    net = FEATURE_EXTRACTORS[name](cin=2, base=4, cout=8, num_levels=3, stem_depth=2)
    outs = net(torch.rand(2, 3, 2, 64, 80))
    assert [tuple(o.shape) for o in outs] == [(2, 3, 8, 16, 20), (2, 3, 8, 8, 10), (2, 3, 8, 4, 5)]
    rnns = recurrent_modules(net)
    assert len(rnns) == 3 and {r.cell for r in rnns} == {cell}


def test_box_head_background_prior_and_anchor_major_layout() -> None:
    head = BoxHead(in_channels=8, num_anchors=3, num_logits=4, n_layers=1)
    xs = [torch.zeros(2, 8, 4, 5), torch.zeros(2, 8, 2, 3)]
    loc, cls = head(xs)
    assert loc.shape == (2, (20 + 6) * 3, 4) and cls.shape == (2, (20 + 6) * 3, 4)
    # zero features: the logits are the biases, background probability 0.99 for every anchor
    assert torch.allclose(cls.softmax(-1)[..., 0], torch.full((2, 78), 0.99))
    assert head.cls_head[-1].bias[0].item() == pytest.approx(math.log(0.99 * 3 / 0.01))
    with torch.no_grad():
        head.loc_head[-1].bias.copy_(torch.arange(12.0))
    loc, _ = head(xs)
    per_cell = loc[0, :60].view(4, 5, 3, 4)
    assert per_cell[3, 4, 2].tolist() == [8, 9, 10, 11]  # anchor 2 of any cell reads channels 8..11


def test_softmax_init_needs_a_foreground_class() -> None:
    with pytest.raises(ValueError, match="num_logits"):
        softmax_init(torch.nn.Conv2d(2, 2, 1), 2, 1)


def test_detection_loss_hand_computed() -> None:
    loss = DetectionLoss()
    cls_preds = torch.zeros(1, 3, 2)  # p = 0.5 for both logits
    cls_targets = torch.tensor([[1, -1, 0]])
    loc_preds = torch.zeros(1, 3, 4)
    loc_targets = torch.tensor([[[0.05, 0.0, 0.0, 1.0], [9, 9, 9, 9], [9, 9, 9, 9]]])
    out = loss(loc_preds, loc_targets, cls_preds, cls_targets)
    focal = 0.25 * math.log(2)  # -(1 - 0.5)^2 log(0.5), for the positive and the background anchor
    assert out["cls_loss"].item() == pytest.approx(2 * focal)
    # smooth L1 with beta 0.11: 0.5 * 0.05^2 / 0.11 + (1 - 0.055); only the positive anchor regresses
    assert out["loc_loss"].item() == pytest.approx(0.5 * 0.05 ** 2 / 0.11 + 0.945)
    assert out["loss"].item() == pytest.approx(out["cls_loss"].item() + out["loc_loss"].item())
    cls_preds[0, 1] = torch.tensor([5.0, -5.0])  # the ignored anchor's logits do not matter
    assert loss(loc_preds, loc_targets, cls_preds, cls_targets)["cls_loss"].item() == pytest.approx(2 * focal)


def test_focal_loss_with_gamma_zero_is_cross_entropy_and_no_positive_stays_finite() -> None:
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 6, 4, generator=g), torch.tensor([[0, 1, 2, 3, -1, 0], [-1, -1, 1, 0, 0, 0]])
    expected = F.cross_entropy(pred.view(-1, 4), target.view(-1), ignore_index=-1, reduction="sum")
    assert softmax_focal_loss(pred, target, "sum", gamma=0.0).item() == pytest.approx(expected.item(), rel=1e-5)
    out = DetectionLoss()(torch.randn(2, 6, 4), torch.randn(2, 6, 4), pred, torch.full((2, 6), -1))
    assert all(torch.isfinite(v) and v.item() == 0 for v in out.values())
    with pytest.raises(ValueError, match="cls_loss_func"):
        DetectionLoss("hinge")


def test_unlabeled_frames_contribute_no_loss() -> None:
    torch.manual_seed(0)
    det = tiny_detector()
    x = torch.rand(2, 2, 2, 32, 32)  # T=2, B=2 -> frames 0..3 time-major
    box = torch.tensor([[4.0, 4, 20, 20, 1]])
    labeled = torch.tensor([True, False, False, True])
    losses = []
    for other in (box, torch.tensor([[0.0, 0, 30, 10, 2]])):  # frames 1 and 2 change, but are unlabeled
        det.reset(torch.zeros(2))
        losses.append(det.compute_loss(x, [box, other, other, box], labeled)["loss"])
    assert losses[0].item() == pytest.approx(losses[1].item())
    det.reset(torch.zeros(2))
    none = det.compute_loss(x, [box] * 4, torch.zeros(4, dtype=torch.bool))
    none["loss"].backward()
    assert none["loss"].item() == 0.0
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in det.parameters())


def test_memory_is_reset_by_mask_keep_memory() -> None:
    torch.manual_seed(0)
    det = tiny_detector().eval()
    x = torch.rand(1, 2, 2, 32, 32)
    with torch.no_grad():
        _, first, _ = det(x)
        _, second, _ = det(x)
        assert not torch.allclose(first, second)  # the memory changed the output
        det.reset(torch.tensor([0.0, 1.0]))
        _, third, _ = det(x)
    assert torch.allclose(third[0], first[0])  # stream 0 starts afresh
    assert not torch.allclose(third[1], first[1])


def test_get_boxes_layout() -> None:
    det = tiny_detector(num_classes=3)
    with torch.no_grad():
        det.rpn.cls_head[-1].bias.zero_()  # uniform probabilities 0.25: every anchor above 0.2
        boxes = det.get_boxes(torch.rand(3, 2, 2, 32, 32), score_thresh=0.2, nms_thresh=0.5)
    assert len(boxes) == 3 and all(len(row) == 2 for row in boxes)
    b = boxes[0][0]
    assert b.shape[1] == 6 and len(b) > 0
    assert set(b[:, 5].tolist()) <= {1.0, 2.0, 3.0}
    assert (b[:, :4] >= 0).all() and (b[:, [0, 2]] <= 32).all() and (b[:, 4] >= 0.2).all()


def test_map_cls_weights_copies_shared_classes_and_background() -> None:
    src, dst = tiny_detector(num_classes=2), tiny_detector(num_classes=2)
    with torch.no_grad():
        src.rpn.cls_head[-1].weight.normal_()
        src.rpn.cls_head[-1].bias.normal_()
    before = dst.rpn.cls_head[-1].bias.clone()
    copied = dst.map_cls_weights(src, ["car", "pedestrian"], ["pedestrian", "bus"])
    assert copied == ["pedestrian"]
    s, d = src.rpn.cls_head[-1], dst.rpn.cls_head[-1]
    for a in range(6):
        assert torch.equal(d.weight[a * 3 + 1], s.weight[a * 3 + 2])  # pedestrian: old id 2 -> new id 1
        assert d.bias[a * 3 + 0] == s.bias[a * 3 + 0]  # background
        assert d.bias[a * 3 + 2] == before[a * 3 + 2]  # bus keeps its initialisation
    with pytest.raises(ValueError, match="class names"):
        dst.map_cls_weights(src, ["car"], ["pedestrian", "bus"])


def test_detector_learns_a_moving_square() -> None:
    torch.manual_seed(0)
    det = tiny_detector(num_classes=1, feature_base=8, feature_channels_out=16, nlayers=1)
    x = torch.zeros(2, 1, 2, 32, 32)
    targets = []
    for t in range(2):
        x[t, 0, 1, 8:20, 4 + 4 * t:16 + 4 * t] = 1.0
        targets.append(torch.tensor([[4.0 + 4 * t, 8, 16 + 4 * t, 20, 1]]))
    opt = torch.optim.Adam(det.parameters(), lr=3e-3)
    first = None
    for _ in range(40):
        det.reset(torch.zeros(1))
        loss = det.compute_loss(x, targets)["loss"]
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.3 * first
    det.reset(torch.zeros(1))
    with torch.no_grad():
        boxes = det.get_boxes(x, score_thresh=0.3)
    from evframe.tasks.detection.box_ops import box_iou

    assert box_iou(boxes[1][0][:1, :4], targets[1][:, :4]).item() > 0.5
