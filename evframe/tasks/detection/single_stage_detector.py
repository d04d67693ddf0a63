"""Single-stage recurrent detector: feature pyramid + shared box head + anchors (Metavision's
``SingleStageDetector``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from evframe.models.temporal import detach_recurrent_states, reset_recurrent_states, time_to_batch
from evframe.tasks.detection.anchors import Anchors
from evframe.tasks.detection.feature_extractors import FEATURE_EXTRACTORS
from evframe.tasks.detection.losses import DetectionLoss
from evframe.tasks.detection.rpn import BoxHead

#: (feature maps flattened over time (T*B, C, h, w), loc (T*B, A, 4), cls logits (T*B, A, C + 1))
Outputs = tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]


class Detector(nn.Module):
    """Interface of networks that predict boxes: the trainer calls :meth:`compute_loss` and :meth:`get_boxes`."""

    def compute_loss(self, x: torch.Tensor, targets: Sequence[Any],
                     labeled: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def get_boxes(self, x: torch.Tensor, score_thresh: float = 0.4) -> list[list[torch.Tensor]]:
        raise NotImplementedError


class SingleStageDetector(Detector):
    """A recurrent feature pyramid, a :class:`BoxHead` shared across levels and an :class:`Anchors` pyramid.

    Args:
        feature_extractor: name in :data:`FEATURE_EXTRACTORS` (``Vanilla``, ``Vanilla_VGG``, ``Vanilla_VGGRU``).
        in_channels: channels of the input tensor (derived from the preprocess in config).
        num_classes: object classes (background excluded).
        feature_base: width factor of the feature extractor's stem.
        feature_channels_out: channels of every pyramid level.
        anchor_list: ``"PSEE_ANCHORS"`` or ``(ratio, scale)`` pairs.
        nlayers: hidden conv layers of each head branch.
        max_boxes_per_input: anchors considered per image when decoding (and so most boxes returned).
        num_levels: pyramid levels.
        base_size: anchor size of the finest level in input pixels (doubles per level).
        stem_depth: stride-2 blocks of the stem (the finest level has stride ``2**stem_depth``).
        separable: depthwise-separable convolutions in the recurrent levels.
        fg_iou_threshold, bg_iou_threshold, allow_low_quality_matches: anchor matching (see :class:`Anchors`).
        nms_thresh: IoU threshold of the non-maximum suppression in :meth:`get_boxes`.
        loss: the :class:`DetectionLoss` (default settings when None).

    ``forward(x (T, B, C, H, W))`` returns the :data:`Outputs` of all ``T * B`` images (time-major).
    """

    def __init__(self, feature_extractor: str, in_channels: int, num_classes: int, feature_base: int = 16,
                 feature_channels_out: int = 128, anchor_list: str | Sequence[Sequence[float]] = "PSEE_ANCHORS",
                 nlayers: int = 0, max_boxes_per_input: int = 500, num_levels: int = 4, base_size: float = 32,
                 stem_depth: int = 4, separable: bool = False, fg_iou_threshold: float = 0.5,
                 bg_iou_threshold: float = 0.3, allow_low_quality_matches: bool = True, nms_thresh: float = 0.5,
                 loss: DetectionLoss | None = None) -> None:
        super().__init__()
        if feature_extractor not in FEATURE_EXTRACTORS:
            raise ValueError(f"SingleStageDetector: feature_extractor={feature_extractor!r} is not one of "
                             f"{sorted(FEATURE_EXTRACTORS)}")
        if int(num_classes) < 1:
            raise ValueError(f"SingleStageDetector: num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.in_channels = int(in_channels)
        self.max_boxes_per_input = int(max_boxes_per_input)
        self.nms_thresh = float(nms_thresh)
        self.feature_extractor = FEATURE_EXTRACTORS[feature_extractor](
            in_channels, feature_base, feature_channels_out, num_levels, stem_depth, separable)
        self.anchor_generator = Anchors(num_levels, base_size, anchor_list, fg_iou_threshold, bg_iou_threshold,
                                        allow_low_quality_matches)
        self.rpn = BoxHead(feature_channels_out, self.anchor_generator.num_anchors, self.num_classes + 1, nlayers)
        self.criterion = loss if loss is not None else DetectionLoss()

    def forward(self, x: torch.Tensor) -> Outputs:
        if x.ndim != 5 or x.shape[2] != self.in_channels:
            raise ValueError(f"SingleStageDetector: expected input (T, B, {self.in_channels}, H, W), got shape "
                             f"{tuple(x.shape)}")
        features = [time_to_batch(f)[0] for f in self.feature_extractor(x)]
        loc_preds, cls_preds = self.rpn(features)
        return features, loc_preds, cls_preds

    def reset(self, mask_keep_memory: torch.Tensor) -> None:
        """Zeroes the memory of the streams whose ``mask_keep_memory`` (B,) is 0 and detaches the others' from the
        previous batch's graph (truncated back-propagation through time), as before every batch of a loader."""
        reset_recurrent_states(self, mask_keep_memory)
        detach_recurrent_states(self)

    # ----------------------------------------------------------------------------------------------------- loss
    def loss_from_outputs(self, outputs: Outputs, x: torch.Tensor, targets: Sequence[Any],
                          labeled: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The loss of the frames marked in ``labeled`` (T*B bool, time-major; all when None).

        ``targets`` are T*B per-frame boxes (n, 5) ``[x1, y1, x2, y2, class_id]`` (class ids 1..C). Frames without
        ground truth contribute nothing; without any labeled frame the loss is a zero that keeps the graph.
        """
        features, loc_preds, cls_preds = outputs
        if len(targets) != loc_preds.shape[0]:
            raise ValueError(f"SingleStageDetector: {len(targets)} targets for {loc_preds.shape[0]} frames (T*B)")
        index = torch.arange(loc_preds.shape[0], device=loc_preds.device)
        if labeled is not None:
            index = index[labeled.to(loc_preds.device).reshape(-1)]
        if index.numel() == 0:
            zero = loc_preds.sum() * 0 + cls_preds.sum() * 0
            return {"loss": zero, "loc_loss": zero.detach(), "cls_loss": zero.detach()}
        selected = [targets[i] for i in index.tolist()]
        loc_targets, cls_targets = self.anchor_generator.encode(features, x, selected)
        return self.criterion(loc_preds[index], loc_targets, cls_preds[index], cls_targets)

    def compute_loss(self, x: torch.Tensor, targets: Sequence[Any],
                     labeled: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Runs the network on ``x`` (T, B, C, H, W) and returns the loss dict (see :meth:`loss_from_outputs`)."""
        return self.loss_from_outputs(self(x), x, targets, labeled)

    # ---------------------------------------------------------------------------------------------------- boxes
    def boxes_from_outputs(self, outputs: Outputs, x: torch.Tensor, score_thresh: float = 0.4,
                           nms_thresh: float | None = None) -> list[list[torch.Tensor]]:
        """T lists of B tensors (n, 6) ``[x1, y1, x2, y2, score, class_id]`` (input pixels, class ids 1..C)."""
        features, loc_preds, cls_preds = outputs
        scores = cls_preds.detach().softmax(dim=-1)[..., 1:]
        return self.anchor_generator.decode(features, x, loc_preds.detach(), scores, x.shape[1], score_thresh,
                                            self.nms_thresh if nms_thresh is None else nms_thresh,
                                            self.max_boxes_per_input)

    def get_boxes(self, x: torch.Tensor, score_thresh: float = 0.4,
                  nms_thresh: float | None = None) -> list[list[torch.Tensor]]:
        """Runs the network on ``x`` (T, B, C, H, W) and decodes its boxes (see :meth:`boxes_from_outputs`)."""
        return self.boxes_from_outputs(self(x), x, score_thresh, nms_thresh)

    # --------------------------------------------------------------------------------------------- fine-tuning
    def map_cls_weights(self, module_src: SingleStageDetector, old_classes: Sequence[str],
                        new_classes: Sequence[str]) -> list[str]:
        """Copies the classification weights of the classes ``module_src`` (trained on ``old_classes``) shares
        with this detector (``new_classes``), and of the background; other classes keep their initialisation.

        Returns:
            the names of the classes whose weights were copied.
        """
        if len(old_classes) != module_src.num_classes or len(new_classes) != self.num_classes:
            raise ValueError(f"map_cls_weights: {len(old_classes)} old / {len(new_classes)} new class names for "
                             f"detectors of {module_src.num_classes} / {self.num_classes} classes")
        src, dst = module_src.rpn.cls_head[-1], self.rpn.cls_head[-1]
        if src.weight.shape[1:] != dst.weight.shape[1:] or module_src.rpn.num_anchors != self.rpn.num_anchors:
            raise ValueError("map_cls_weights: the two detectors' heads differ in width or anchors")
        k_old, k_new = module_src.num_classes + 1, self.num_classes + 1
        pairs = [(0, 0)] + [(old_classes.index(name) + 1, j + 1) for j, name in enumerate(new_classes)
                            if name in old_classes]
        with torch.no_grad():
            for a in range(self.rpn.num_anchors):
                for i_old, i_new in pairs:
                    dst.weight[a * k_new + i_new] = src.weight[a * k_old + i_old]
                    dst.bias[a * k_new + i_new] = src.bias[a * k_old + i_old]
        return [name for name in new_classes if name in old_classes]


__all__ = ["Detector", "Outputs", "SingleStageDetector"]
