"""Lightning module of the detection task (Metavision's ``LightningDetectionModel``)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch

from evframe.tasks.detection.augment import hflip_batch
from evframe.tasks.detection.evaluation import DetectionEvaluator
from evframe.tasks.detection.labels import resolve_classes
from evframe.tasks.detection.losses import DetectionLoss
from evframe.tasks.detection.single_stage_detector import SingleStageDetector
from evframe.tasks.detection.targets import flatten_targets, labeled_mask
from evframe.tasks.recurrent import RecurrentTaskModule

log = logging.getLogger(__name__)


class DetectionLightningModule(RecurrentTaskModule):
    """Trains a :class:`SingleStageDetector` on box labels and scores it with COCO metrics over whole recordings.

    Args:
        model: partial detector constructor (``model/vanilla.yaml``); called with ``num_classes`` and ``loss``.
        loss: the :class:`DetectionLoss`.
        optimizer, scheduler: partial factories (see :class:`RecurrentTaskModule`).
        label_map: ``label_map_dictionary.json`` of the dataset; wanted_classes: names trained on (empty: all but
            ``"empty"``); synthetic_preset: preset whose classes to use while a synthetic dataset is not generated.
        score_thresh, nms_thresh: decoding of the boxes evaluated (a low score threshold, as COCO ranks by score).
        max_boxes_per_input: boxes kept per frame for the evaluation.
        time_tol: matching tolerance of the evaluation in us (None: the detections of the time bin holding the
            label).
        min_box_diag_eval: boxes with a smaller diagonal (sensor pixels) are left out of the evaluation.
        pretrained: checkpoint of a detector to fine-tune from (its classes are remapped, see :meth:`load_pretrained`).
        hflip: mirror half of the training recordings left-right, drawn anew each epoch (a whole recording at once,
            so the recurrent memory always sees one side); seed: the run's seed, which the draws follow.

    Logs ``train/loss``, ``train/loc_loss``, ``train/cls_loss``, ``val/`` the same, and at the end of validation and
    test ``val/mAP``, ``val/mAP_50``, ``val/mAP_75``, ``val/mAP_small``, ``val/mAP_medium``, ``val/mAP_large``
    (``test/...``).
    """

    def __init__(self, model: Callable[..., SingleStageDetector], loss: DetectionLoss,
                 optimizer: Callable[..., torch.optim.Optimizer], scheduler: Callable[..., Any] | None = None,
                 label_map: str = "", wanted_classes: Sequence[str] = (), synthetic_preset: str | None = None,
                 score_thresh: float = 0.05, nms_thresh: float = 0.5, max_boxes_per_input: int = 100,
                 time_tol: int | None = None, min_box_diag_eval: float = 0, pretrained: str | None = None,
                 hflip: bool = False, seed: int = 0) -> None:
        super().__init__(optimizer, scheduler)
        self.classes = resolve_classes(label_map, list(wanted_classes or []), synthetic_preset)
        self.model_factory = model
        self.model = model(num_classes=len(self.classes), loss=loss)
        self.score_thresh = float(score_thresh)
        self.nms_thresh = float(nms_thresh)
        self.max_boxes_per_input = int(max_boxes_per_input)
        self.hflip = bool(hflip)
        self.seed = int(seed)
        self.model.max_boxes_per_input = self.max_boxes_per_input
        self.evaluators = {stage: DetectionEvaluator(self.classes, time_tol, min_box_diag_eval)
                           for stage in ("val", "test")}
        if pretrained:
            self.load_pretrained(pretrained)

    def forward(self, inputs: torch.Tensor) -> Any:
        """inputs ``(T, B, C, H, W)`` -> the detector's outputs (feature maps, loc, cls) of the T*B frames."""
        return self.model(inputs)

    # ------------------------------------------------------------------------------------------------- steps
    def _loss(self, batch: dict[str, Any], outputs: Any, stage: str) -> torch.Tensor:
        active = self.active_streams(batch)
        labeled = labeled_mask(batch, active)
        losses = self.model.loss_from_outputs(outputs, batch["inputs"], flatten_targets(batch["labels"]), labeled)
        for name, value in losses.items():
            self.log(f"{stage}/{name}", value.detach(), batch_size=max(1, int(labeled.sum())),
                     prog_bar=name == "loss", on_step=stage == "train", on_epoch=True)
        return losses["loss"]

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        if self.hflip:
            batch = hflip_batch(batch, self.current_epoch, self.seed)
        self.prepare_memory(batch)
        return self._loss(batch, self(batch["inputs"]), "train")

    def _inference_step(self, batch: dict[str, Any], stage: str) -> None:
        self.prepare_memory(batch)
        outputs = self(batch["inputs"])
        if stage == "val":
            self._loss(batch, outputs, stage)
        boxes = self.model.boxes_from_outputs(outputs, batch["inputs"], self.score_thresh, self.nms_thresh)
        self.evaluators[stage].update(batch, boxes)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._inference_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._inference_step(batch, "test")

    def _log_metrics(self, stage: str) -> None:
        evaluator = self.evaluators[stage]
        # under DDP each rank holds the detections of its own recordings: COCO scores the union of all ranks
        # (every rank computes it, so the logged values and the checkpoint choice agree everywhere)
        evaluator.gather()
        if evaluator.num_recordings == 0:
            return
        metrics = evaluator.compute()
        evaluator.reset()
        self.log_dict({f"{stage}/{name}": float(value) for name, value in metrics.items()}, sync_dist=False)

    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        self.evaluators["val"].reset()

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        self._log_metrics("val")

    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        self.evaluators["test"].reset()

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    # ------------------------------------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # plain strings: the checkpoint still loads with weights_only=True
        checkpoint["detection_classes"] = list(self.classes)

    def load_pretrained(self, checkpoint_path: str) -> list[str]:
        """Starts from the weights of a detector trained (possibly on other classes) with the same architecture.

        Every weight is copied except the last classification layer, whose rows are remapped for the classes both
        detectors know (and the background) by :meth:`SingleStageDetector.map_cls_weights`; other classes keep
        their initialisation. Returns the names of the classes whose weights were transferred.
        """
        checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        state = checkpoint.get("state_dict", checkpoint)
        old_classes = list(checkpoint.get("detection_classes") or self.classes)
        source = self.model_factory(num_classes=len(old_classes))
        prefix = "model."
        source.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
        cls_layer = {f"rpn.cls_head.{len(self.model.rpn.cls_head) - 1}.{p}" for p in ("weight", "bias")}
        own = {k: v for k, v in source.state_dict().items() if k not in cls_layer}
        self.model.load_state_dict(own, strict=False)
        copied = self.model.map_cls_weights(source, old_classes, self.classes)
        log.info("fine-tuning from %s: classes %s transferred, %s new", checkpoint_path, copied,
                 [c for c in self.classes if c not in copied])
        return copied


__all__ = ["DetectionLightningModule"]
