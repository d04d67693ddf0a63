"""Lightning module of the self-supervised flow task (Metavision's FlowModel)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from evframe.tasks.flow.evaluation import labeled_pairs
from evframe.tasks.flow.losses import FlowLoss, resize_inputs
from evframe.tasks.flow.metrics import FlowErrorMetric, FlowWarpLossMetric, WeightedMeans
from evframe.tasks.recurrent import RecurrentTaskModule

log = logging.getLogger(__name__)

#: metrics logged as ``<stage>/<name>`` only from recordings with flow labels (``<name>_flow.h5``)
LABEL_METRICS = ("aee", "outlier_pct", "aee_zero", "outlier_pct_zero", "aee_ratio")


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

    Logs, per epoch (``train`` also per step): ``train/<term>``, ``val/<term>``, ``test/<term>`` (each weighted loss
    term of :class:`FlowLoss`) and their sum ``<stage>/loss``; on every validation and test recording the label-free
    flow warp loss ``val/fwl``, ``test/fwl`` (:func:`~evframe.tasks.flow.metrics.flow_warp_loss` of the finest flow,
    mean over the bins with events); and from the recordings with ground truth (:data:`LABEL_METRICS`) ``val/aee``,
    ``test/aee``, ``<stage>/outlier_pct`` beside the zero-flow baseline (``*_zero``) and their ratio
    ``<stage>/aee_ratio``. When a split has labelled recordings but an epoch reached no labelled bin (few batches),
    those are logged as NaN, so a checkpoint monitoring them still finds them.
    """

    def __init__(self, feature_extractor: nn.Module, loss: FlowLoss, optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable[..., Any] | None = None, augmentation: nn.Module | None = None) -> None:
        super().__init__(optimizer, scheduler)
        self.feature_extractor = feature_extractor
        self.augmentation = augmentation
        self.loss = loss
        self.val_error = FlowErrorMetric()
        self.test_error = FlowErrorMetric()
        micro = int(getattr(loss, "channels_per_micro_bin", 2))
        self.val_fwl = FlowWarpLossMetric(micro)
        self.test_fwl = FlowWarpLossMetric(micro)
        # the terms FlowLoss returns: those of non-zero weight, and their sum
        terms = [name for name, weight in getattr(loss, "weights", {}).items() if weight != 0] + ["loss"]
        self.val_terms = WeightedMeans(terms)
        self.test_terms = WeightedMeans(terms)
        self._unreached_label_warned: set[str] = set()

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
        if stage == "train":
            for name, value in losses.items():
                self.log(f"train/{name}", value.detach(), batch_size=batch_size, prog_bar=name == "loss",
                         on_step=True, on_epoch=True)
        else:  # summed over every process at the end of the epoch
            (self.val_terms if stage == "val" else self.test_terms).update(losses, batch_size)
        if stage != "train":
            fine = flows[-1] if bool(active.all()) else flows[-1][:, active]
            events = inputs if bool(active.all()) else inputs[:, active]
            fwl = self.val_fwl if stage == "val" else self.test_fwl
            fwl.update(resize_inputs(events, tuple(fine.shape[-2:])), fine)
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
        _, flows = self._step(batch, "test")
        pairs = labeled_pairs(batch, flows[-1])
        if pairs is not None:
            self.test_error.update(*pairs)

    def _split_has_labels(self, stage: str) -> bool:
        """Whether the data module found flow labels beside any recording of the split of ``stage``."""
        trainer = self._trainer
        datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
        files = getattr(datamodule, "flow_label_files", None)
        return bool(files is not None and files(stage)[0])

    def _log_epoch_metrics(self, stage: str) -> None:
        """Logs ``<stage>/fwl`` (NaN when no bin had events) and the label metrics of the epoch, then resets them."""
        fwl_metric = self.val_fwl if stage == "val" else self.test_fwl
        error_metric = self.val_error if stage == "val" else self.test_error
        with warnings.catch_warnings():
            # every process computes (torchmetrics sums the states of all of them), also one that saw only padding or
            # no labelled bin and so never updated: its zero sums are right, the warning about it is not
            warnings.filterwarnings("ignore", message=".*was called before the ``update`` method.*")
            fwl = fwl_metric.compute()["fwl"]
            values = error_metric.compute()
            terms_metric = self.val_terms if stage == "val" else self.test_terms
            terms = terms_metric.compute()
        fwl_metric.reset()
        error_metric.reset()
        terms_metric.reset()
        # already summed over processes by torchmetrics
        self.log_dict({f"{stage}/{name}": value.float() for name, value in terms.items()}, sync_dist=False)
        self.log(f"{stage}/fwl", fwl.float(), sync_dist=False)
        if values["n_pixels"] <= 0:
            if not self._split_has_labels(stage):
                return
            if stage not in self._unreached_label_warned:
                self._unreached_label_warned.add(stage)
                log.warning("%s: the recordings have flow labels but no labelled bin was evaluated in this epoch "
                            "(too few batches?): %s/aee and the other label metrics are NaN", stage, stage)
        logged = {f"{stage}/{k}": v.float() for k, v in values.items() if k != "n_pixels"}
        logged[f"{stage}/aee_ratio"] = (values["aee"] / values["aee_zero"].clamp_min(1e-12)).float()
        self.log_dict(logged, sync_dist=False)

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        self._log_epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch_metrics("test")
