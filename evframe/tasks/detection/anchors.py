"""Anchor grids of a feature pyramid, and the encoding / decoding of boxes against them (Metavision's
``detection.anchors``).

Level ``l`` of the pyramid has anchors of base size ``base_size * 2**l``, one set of ``len(anchor_list)`` shapes per
feature-map cell. Each ``(ratio, scale)`` pair gives an anchor of width ``size * scale / sqrt(ratio)`` and height
``size * scale * sqrt(ratio)`` (``ratio`` = height / width, area ``(size * scale)**2``). Cell ``(i, j)`` of an
``h x w`` map computed from an ``H x W`` input is centred at ``((j + 0.5) * W / w, (i + 0.5) * H / h)``: each map's
vertical and horizontal strides come from its own height and width, so anchors cover the whole input even when
``H`` or ``W`` are not multiples of the nominal stride.

Anchors are ordered level by level, then row, column and shape: the order in which :class:`BoxHead` flattens
its predictions. The grids are cached and rebuilt only when a feature-map or input size changes.
"""

import math
from collections.abc import Sequence
from typing import Any

import torch
import torchvision
from torch import nn

from evframe.tasks.detection.box_ops import (
    VARIANCES,
    batch_box_iou,
    bbox_to_deltas,
    box_clamp,
    deltas_to_bbox,
    pack_boxes_list,
    xywh2xyxy,
)

#: The six (ratio, scale) anchor shapes of Metavision's detectors at every pyramid level.
PSEE_ANCHORS: list[tuple[float, float]] = [(1.0 / 3, 1.0), (0.5, 1.0), (1.0, 1.0), (1.0, 1.5), (2.0, 1.0),
                                           (3.0, 1.0)]
ANCHOR_LISTS: dict[str, list[tuple[float, float]]] = {"PSEE_ANCHORS": PSEE_ANCHORS}


def get_anchor_list(anchor_list: str | Sequence[Sequence[float]]) -> list[tuple[float, float]]:
    """A named anchor list (``"PSEE_ANCHORS"``) or an explicit list of ``(ratio, scale)`` pairs, checked."""
    if isinstance(anchor_list, str):
        if anchor_list not in ANCHOR_LISTS:
            raise ValueError(f"anchor_list={anchor_list!r} is not one of {sorted(ANCHOR_LISTS)} (or give a list of "
                             f"(ratio, scale) pairs)")
        return list(ANCHOR_LISTS[anchor_list])
    pairs = [tuple(float(v) for v in pair) for pair in anchor_list]
    if not pairs or any(len(p) != 2 or p[0] <= 0 or p[1] <= 0 for p in pairs):
        raise ValueError(f"anchor_list must be a non-empty list of positive (ratio, scale) pairs, got {anchor_list}")
    return pairs  # type: ignore[return-value]


class AnchorLayer(nn.Module):
    """The anchor grid of one pyramid level.

    Args:
        box_size: base anchor size of this level in input pixels.
        anchor_list: ``(ratio, scale)`` pairs (see the module docstring).

    ``forward([h, w], [stride_y, stride_x])`` returns the ``(h * w * num_anchors, 4)`` anchors in (cx, cy, w, h),
    cached until the size or strides change.
    """

    cached_key: list[float]

    def __init__(self, box_size: float = 32, anchor_list: str | Sequence[Sequence[float]] = "PSEE_ANCHORS") -> None:
        super().__init__()
        pairs = get_anchor_list(anchor_list)
        self.box_size = float(box_size)
        self.num_anchors = len(pairs)
        self.register_buffer("anchor_sizes", self.generate_anchors(self.box_size, pairs), persistent=False)
        self.register_buffer("grid", torch.zeros(0, 4), persistent=False)
        self.cached_key = []

    @staticmethod
    def generate_anchors(box_size: float, ratio_scale_list: Sequence[Sequence[float]]) -> torch.Tensor:
        """(num_anchors, 2) anchor (width, height) for the ``(ratio, scale)`` pairs at base size ``box_size``."""
        sizes = [(box_size * scale / math.sqrt(ratio), box_size * scale * math.sqrt(ratio))
                 for ratio, scale in ratio_scale_list]
        return torch.tensor(sizes, dtype=torch.float32)

    def make_grid(self, height: int, width: int, stride_y: float, stride_x: float) -> torch.Tensor:
        """(height, width, num_anchors, 4) anchors (cx, cy, w, h) of an ``height x width`` feature map."""
        device = self.anchor_sizes.device
        cy = (torch.arange(height, dtype=torch.float32, device=device) + 0.5) * stride_y
        cx = (torch.arange(width, dtype=torch.float32, device=device) + 0.5) * stride_x
        grid_y, grid_x = torch.meshgrid(cy, cx, indexing="ij")
        centers = torch.stack([grid_x, grid_y], dim=-1)[:, :, None, :].expand(height, width, self.num_anchors, 2)
        sizes = self.anchor_sizes[None, None].expand(height, width, self.num_anchors, 2)
        return torch.cat([centers, sizes], dim=-1)

    def forward(self, shape: list[int], stride: list[float]) -> torch.Tensor:
        key = [float(shape[0]), float(shape[1]), float(stride[0]), float(stride[1])]
        if key != self.cached_key or self.grid.device != self.anchor_sizes.device:
            self.grid = self.make_grid(shape[0], shape[1], stride[0], stride[1]).reshape(-1, 4)
            self.cached_key = key
        return self.grid


class Anchors(nn.Module):
    """Pyramid of anchor grids; encodes ground truth into per-anchor targets and decodes predictions into boxes.

    Args:
        num_levels: pyramid levels (feature maps) the detector predicts from.
        base_size: anchor size of the first (finest) level; level ``l`` uses ``base_size * 2**l``.
        anchor_list: ``"PSEE_ANCHORS"`` or a list of ``(ratio, scale)`` pairs, the same at every level.
        fg_iou_threshold, bg_iou_threshold: an anchor is a positive when its best IoU with a ground-truth box is at
            least ``fg``, background below ``bg``, ignored in between.
        allow_low_quality_matches: every ground-truth box also gets the anchor that overlaps it most.
        variances: SSD variances of the regression targets.
        max_decode: decode only the best class of each anchor (else every class above the score threshold).

    ``forward(features, x)`` returns all anchors ``(num_anchors_total, 4)`` in (cx, cy, w, h) for feature maps
    ``features`` (each ``(..., h_l, w_l)``) computed from the input ``x`` (``(..., H, W)``).
    """

    feature_key: list[int]
    #: elements of the IoU tensor computed at once when encoding (about 1 MB of float32)
    IOU_CHUNK_ELEMENTS = 1 << 18

    def __init__(self, num_levels: int = 4, base_size: float = 32,
                 anchor_list: str | Sequence[Sequence[float]] = "PSEE_ANCHORS", fg_iou_threshold: float = 0.5,
                 bg_iou_threshold: float = 0.3, allow_low_quality_matches: bool = True,
                 variances: Sequence[float] = VARIANCES, max_decode: bool = False) -> None:
        super().__init__()
        if num_levels < 1:
            raise ValueError(f"Anchors: num_levels must be >= 1, got {num_levels}")
        if not 0 <= bg_iou_threshold <= fg_iou_threshold <= 1:
            raise ValueError(f"Anchors: expected 0 <= bg_iou_threshold <= fg_iou_threshold <= 1, got "
                             f"{bg_iou_threshold}, {fg_iou_threshold}")
        self.num_levels = int(num_levels)
        self.base_size = float(base_size)
        self.layers = nn.ModuleList(AnchorLayer(base_size * 2 ** i, anchor_list) for i in range(num_levels))
        self.num_anchors = self.layers[0].num_anchors
        self.fg_iou_threshold = float(fg_iou_threshold)
        self.bg_iou_threshold = float(bg_iou_threshold)
        self.allow_low_quality_matches = bool(allow_low_quality_matches)
        self.variances = [float(v) for v in variances]
        self.max_decode = bool(max_decode)
        self.register_buffer("anchors", torch.zeros(0, 4), persistent=False)
        self.register_buffer("anchors_xyxy", torch.zeros(0, 4), persistent=False)
        self.feature_key = []

    @staticmethod
    def _key(xs: list[torch.Tensor], x: torch.Tensor) -> list[int]:
        key = [x.shape[-2], x.shape[-1]]
        for feature in xs:
            key += [feature.shape[-2], feature.shape[-1]]
        return key

    def has_changed(self, xs: list[torch.Tensor], x: torch.Tensor) -> bool:
        """True when the input or a feature-map size (or the device) differs from the cached anchors'."""
        return self._key(xs, x) != self.feature_key or self.anchors.device != x.device

    def forward(self, xs: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        if len(xs) != self.num_levels:
            raise ValueError("Anchors: the number of feature maps differs from num_levels")
        if self.has_changed(xs, x):
            height, width = x.shape[-2], x.shape[-1]
            grids: list[torch.Tensor] = []
            for i, layer in enumerate(self.layers):
                h, w = xs[i].shape[-2], xs[i].shape[-1]
                grids.append(layer([h, w], [height / h, width / w]))
            self.anchors = torch.cat(grids, dim=0).to(x.device)
            self.anchors_xyxy = xywh2xyxy(self.anchors)
            self.feature_key = self._key(xs, x)
        return self.anchors

    # ------------------------------------------------------------------------------------------------ encoding
    def encode(self, features: list[torch.Tensor], x: torch.Tensor,
               targets: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Regression and classification targets of N images at once.

        Args:
            features: the detector's feature maps (their sizes define the anchors).
            x: the network input (its size gives the strides).
            targets: N per-image boxes: (n_i, >=5) ``[x1, y1, x2, y2, class_id]`` tensors (class ids 1..C) or
                ``BBOX_DTYPE`` arrays.
        Returns:
            loc (N, A, 4) float SSD deltas, cls (N, A) int64 (0 background, -1 ignored, 1..C classes).
        """
        anchors = self(features, x)
        packed, sizes = pack_boxes_list(targets, device=anchors.device)
        return self.encode_anchors(anchors, self.anchors_xyxy, packed, sizes)

    def encode_anchors(self, anchors: torch.Tensor, anchors_xyxy: torch.Tensor, targets: torch.Tensor,
                       sizes: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Encodes packed targets (N, M, 5) (see :func:`pack_boxes_list`; padding has label -1) against anchors
        (A, 4) given as (cx, cy, w, h) and as corners. Returns loc (N, A, 4), cls (N, A) as :meth:`encode`."""
        n, m = targets.shape[:2]
        num_anchors = anchors.shape[0]
        if m == 0:
            return anchors.new_zeros((n, num_anchors, 4)), torch.zeros((n, num_anchors), dtype=torch.long,
                                                                       device=anchors.device)
        gt_boxes, gt_labels = targets[..., :4], targets[..., 4].long()
        best_iou = anchors.new_empty((n, num_anchors))
        best_gt = torch.empty((n, num_anchors), dtype=torch.long, device=anchors.device)
        # frames are matched in groups whose (frames, A, M) IoU tensor stays cache-sized: one huge tensor for the
        # whole batch is memory-bound and slower on CPU, however vectorised
        chunk = max(1, self.IOU_CHUNK_ELEMENTS // max(1, num_anchors * m))
        for start in range(0, n, chunk):
            end = min(n, start + chunk)
            ious = batch_box_iou(anchors_xyxy, gt_boxes[start:end])  # (frames, A, M)
            ious.masked_fill_((gt_labels[start:end] < 0)[:, None, :], -1.0)  # padding never matches
            torch.max(ious, dim=2, out=(best_iou[start:end], best_gt[start:end]))
            if self.allow_low_quality_matches:
                self.set_low_quality_matches(ious, best_gt[start:end], best_iou[start:end])
        cls = gt_labels.gather(1, best_gt)
        cls[best_iou < self.fg_iou_threshold] = -1
        cls[best_iou < self.bg_iou_threshold] = 0
        boxes = gt_boxes.gather(1, best_gt[..., None].expand(n, num_anchors, 4))
        loc = bbox_to_deltas(boxes, anchors[None], self.variances)
        return loc, cls

    @staticmethod
    def set_low_quality_matches(ious: torch.Tensor, batch_best_target_per_prior_indices: torch.Tensor,
                                batch_best_target_per_prior: torch.Tensor, sizes: Sequence[int] | None = None) -> None:
        """Makes every ground-truth box the target of the anchor that overlaps it most (in place).

        Args:
            ious: (N, A, M) IoU of anchors and targets (padding columns negative).
            batch_best_target_per_prior_indices: (N, A) index of each anchor's target, updated.
            batch_best_target_per_prior: (N, A) IoU of each anchor with its target; set to 2 (above any threshold)
                for the forced matches.
            sizes: number of real (non-padding) boxes per image (padding is already recognised by its IoU).
        """
        best_per_gt, best_anchor = ious.max(dim=1)  # (N, M)
        image, gt = torch.nonzero(best_per_gt > 0, as_tuple=True)
        anchor = best_anchor[image, gt]
        batch_best_target_per_prior_indices[image, anchor] = gt
        batch_best_target_per_prior[image, anchor] = 2.0

    # ------------------------------------------------------------------------------------------------ decoding
    def decode(self, features: list[torch.Tensor], x: torch.Tensor, loc_preds: torch.Tensor, scores: torch.Tensor,
               batch_size: int, score_thresh: float = 0.5, nms_thresh: float = 0.6,
               max_boxes_per_input: int = 500) -> list[list[torch.Tensor]]:
        """Decodes the predictions of T*B images (time-major) into boxes.

        Args:
            features, x: as in :meth:`forward` (x is ``(T, B, C, H, W)`` or ``(N, C, H, W)``).
            loc_preds: (N, A, 4) regression deltas; scores: (N, A, C) class probabilities without background.
            batch_size: B (N = T * B).
            score_thresh, nms_thresh: score threshold before NMS, IoU threshold of NMS.
            max_boxes_per_input: most anchors considered per image (top scores) and so most boxes returned.
        Returns:
            T lists of B tensors (n, 6) ``[x1, y1, x2, y2, score, class_id]`` (class ids 1..C), sorted by score,
            clipped to the input frame.
        """
        anchors = self(features, x)
        boxes = deltas_to_bbox(loc_preds, anchors[None], self.variances)
        boxes = box_clamp(boxes, 0, 0, float(x.shape[-1]), float(x.shape[-2]))
        flat = self.batched_decode(boxes, scores, score_thresh, nms_thresh, max_boxes_per_input)
        return [flat[i:i + batch_size] for i in range(0, len(flat), batch_size)]

    def batched_decode(self, boxes: torch.Tensor, scores: torch.Tensor, score_thresh: float, nms_thresh: float,
                       topk: int = 100) -> list[torch.Tensor]:
        """Filters decoded boxes (N, A, 4) xyxy with scores (N, A, C) of N images (batch and time flattened) at
        once: score threshold, top-k per image, then one batched NMS over images and classes.

        Returns:
            N tensors (n, 6) ``[x1, y1, x2, y2, score, class_id]`` sorted by decreasing score.
        """
        return decode_boxes(boxes, scores, score_thresh, nms_thresh, topk, self.max_decode)


def decode_boxes(boxes: torch.Tensor, scores: torch.Tensor, score_thresh: float, nms_thresh: float, topk: int,
                 max_decode: bool = False) -> list[torch.Tensor]:
    """See :meth:`Anchors.batched_decode` (a plain function so that the exported model can script it)."""
    n, num_anchors, num_classes = scores.shape
    if max_decode:
        best, best_class = scores.max(dim=2)
        flat = best
        class_of = best_class
        k = min(topk, num_anchors)
        top_scores, top_index = flat.topk(k, dim=1)
        anchor_index = top_index
        class_index = class_of.gather(1, top_index)
    else:
        flat = scores.reshape(n, num_anchors * num_classes)
        k = min(topk, num_anchors * num_classes)
        top_scores, top_index = flat.topk(k, dim=1)
        anchor_index = torch.div(top_index, num_classes, rounding_mode="floor")
        class_index = top_index % num_classes
    keep = top_scores > score_thresh
    image = torch.arange(n, device=scores.device)[:, None].expand(n, k)[keep]
    anchor_index = anchor_index[keep]
    class_index = class_index[keep]
    selected_scores = top_scores[keep]
    selected_boxes = boxes[image, anchor_index]
    kept = torchvision.ops.batched_nms(selected_boxes, selected_scores, image * num_classes + class_index, nms_thresh)
    # batched_nms returns indices by decreasing score; a stable sort by image keeps that order within each image
    kept = kept[torch.sort(image[kept], stable=True)[1]]
    rows = torch.cat([selected_boxes[kept], selected_scores[kept, None], (class_index[kept, None] + 1).float()], 1)
    counts: list[int] = torch.bincount(image[kept], minlength=n).tolist()
    return list(torch.split(rows, counts))


__all__ = ["PSEE_ANCHORS", "ANCHOR_LISTS", "get_anchor_list", "AnchorLayer", "Anchors", "decode_boxes"]
