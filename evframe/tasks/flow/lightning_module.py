"""Lightning module of the self-supervised flow task (Metavision's FlowModel)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from evframe.tasks.flow.evaluation import labeled_pairs
from evframe.tasks.flow.losses import FlowLoss
from evframe.tasks.flow.metrics import FlowErrorMetric
from evframe.tasks.recurrent import RecurrentTaskModule


class FlowLightningModule(RecurrentTaskModule):
    """Trains a flow feature extractor with the self-supervised :class:`FlowLoss`.

    Args:
        feature_extractor: module mapping inputs ``(T, B, C, H, W)`` to a flow pyramid (list, coarse to fine, of
            ``(T, B, 2, h_s, w_s)`` in pixels per time bin), e.g. ``midinet2``.
        loss: the weighted loss terms.
        optimizer, scheduler: partial factories (see :class:`RecurrentTaskModule`).
        augmentation: optional training-only module ``(inputs (T, B, C, H, W), mask_keep_memory (B,)) -> inputs``
            that keeps its draw along each stream, e.g. :class:`~evframe.data.augment.StreamFlip`. The
            self-supervised losses are computed on the augmented tensor, so labels need no transform.

    Logs ``train/<term>``, ``val/<term>``, and where ground truth exists ``val/aee`` and ``test/aee``,
    ``test/outlier_pct`` beside the zero-flow baseline (``*_zero``) and their ratio ``test/aee_ratio``.
    """

    def __init__(self, feature_extractor: nn.Module, loss: FlowLoss, optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable[..., Any] | None = None, augmentation: nn.Module | None = None) -> None:
        super().__init__(optimizer, scheduler)
        self.feature_extractor = feature_extractor
        self.augmentation = augmentation
        self.loss = loss
        self.val_error = FlowErrorMetric()
        self.test_error = FlowErrorMetric()

    def forward(self, inputs: torch.Tensor) -> list[torch.Tensor]:
        """inputs ``(T, B, C, H, W)`` -> flow pyramid, coarse to fine, each ``(T, B, 2, h, w)``."""
        return self.feature_extractor(inputs)

    def _step(self, batch: dict[str, Any], stage: str) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Loss of a batch (logged under ``stage``) and the flow pyramid of all B streams."""
        self.prepare_memory(batch)
        inputs = batch["inputs"]
        if stage == "train" and self.augmentation is not None:
            inputs = self.augmentation(inputs, batch["mask_keep_memory"])
        flows = self(inputs)  # every stream goes through the network: the recurrent state is per slot
        active = self.active_streams(batch)
        if not bool(active.any()):  # only padding (under DDP a rank may run out of recordings before the others)
            return self.padding_loss(flows), flows
        if bool(active.all()):
            losses = self.loss(inputs, flows)
        else:  # padding slots hold no events: keep them out of the loss
            losses = self.loss(inputs[:, active], [f[:, active] for f in flows])
        batch_size = int(active.sum())
        for name, value in losses.items():
            self.log(f"{stage}/{name}", value.detach(), batch_size=batch_size, prog_bar=name == "loss",
                     on_step=stage == "train", on_epoch=True)
        return losses["loss"], flows

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss, _ = self._step(batch, "train")
        return loss

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        if self.augmentation is not None and hasattr(self.augmentation, "reset"):
            self.augmentation.reset()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        _, flows = self._step(batch, "val")
        pairs = labeled_pairs(batch, flows[-1])
        if pairs is not None:
            self.val_error.update(*pairs)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.prepare_memory(batch)
        flows = self(batch["inputs"])
        pairs = labeled_pairs(batch, flows[-1])
        if pairs is not None:
            self.test_error.update(*pairs)

    def _log_errors(self, metric: FlowErrorMetric, stage: str) -> None:
        values = metric.compute()
        metric.reset()
        if values["n_pixels"] <= 0:
            return
        logged = {f"{stage}/{k}": v.float() for k, v in values.items() if k != "n_pixels"}
        logged[f"{stage}/aee_ratio"] = (values["aee"] / values["aee_zero"].clamp_min(1e-12)).float()
        self.log_dict(logged, sync_dist=False)

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        self._log_errors(self.val_error, "val")

    def on_test_epoch_end(self) -> None:
        self._log_errors(self.test_error, "test")
