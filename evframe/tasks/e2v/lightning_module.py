"""Lightning module of the event-to-video task (Metavision's EventToVideoLightningModel)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from evframe.tasks.e2v.losses import E2VLoss
from evframe.tasks.e2v.metrics import EventIntegrator, ReconstructionMetrics
from evframe.tasks.recurrent import RecurrentTaskModule


def frame_targets(batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Target frames ``(T, B, 1, H, W)`` and their validity ``(T, B)`` from a clip batch (``images``) or a
    sequential-loader batch (``labels`` of ``(1, H, W)`` frames or None, ``frame_is_labeled``)."""
    if "images" in batch:
        return batch["images"], batch["image_valid"].bool()
    inputs = batch["inputs"]
    t, b, _, h, w = inputs.shape
    images = inputs.new_zeros((t, b, 1, h, w))
    valid = torch.zeros((t, b), dtype=torch.bool, device=inputs.device)
    labeled = batch["frame_is_labeled"]
    for ti, row in enumerate(batch["labels"]):
        for bi, frame in enumerate(row):
            if frame is not None and bool(labeled[ti, bi]):
                images[ti, bi] = torch.as_tensor(frame, device=inputs.device, dtype=inputs.dtype).view(1, h, w)
                valid[ti, bi] = True
    return images, valid


class EventToVideoLightningModel(RecurrentTaskModule):
    """Trains an :class:`~evframe.tasks.e2v.network.EventToVideo` network on simulated clips.

    Args:
        model: maps inputs ``(T, B, C, H, W)`` to frames ``(T, B, 1, H, W)`` in [0, 1].
        loss: the weighted reconstruction terms.
        optimizer, scheduler: partial factories (see :class:`RecurrentTaskModule`).
        baseline: options of the :class:`EventIntegrator` baseline (preprocess name and kwargs, delta_t, ...).

    Logs ``train/<term>``; for every evaluation source (``clips``, ``synthetic``, ``frames_<folder>``: see
    :meth:`EventToVideoDataModule.source_names`) ``<stage>/<source>/{loss, mse, ssim, mse_baseline,
    ssim_baseline}``; the first source's values are also logged without the source (``val/ssim``, ``test/mse``...).
    """

    def __init__(self, model: nn.Module, loss: E2VLoss, optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable[..., Any] | None = None, baseline: Mapping | None = None) -> None:
        super().__init__(optimizer, scheduler)
        self.model = model
        self.loss = loss
        self.baseline = EventIntegrator(**dict(baseline or {}))
        # per (stage, source); kept out of the state dict so checkpoints hold weights only
        self._metrics: dict[tuple[str, str], ReconstructionMetrics] = {}

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """inputs ``(T, B, C, H, W)`` -> frames ``(T, B, 1, H, W)``."""
        return self.model(inputs)

    def prepare_memory(self, batch: dict[str, Any]) -> None:
        super().prepare_memory(batch)
        self.baseline.reset(batch["mask_keep_memory"])

    def _clear_memory(self) -> None:
        super()._clear_memory()
        self.baseline.clear()

    def _losses(self, batch: dict[str, Any], pred: torch.Tensor, target: torch.Tensor,
                valid: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.loss(pred, target, valid, batch.get("flow"), batch.get("flow_mask"), batch.get("flow_valid"))

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        self.prepare_memory(batch)
        pred = self(batch["inputs"])
        target, valid = frame_targets(batch)
        losses = self._losses(batch, pred, target, valid)
        batch_size = int(batch["inputs"].shape[1])
        for name, value in losses.items():
            self.log(f"train/{name}", value.detach(), batch_size=batch_size, prog_bar=name == "loss", on_step=True,
                     on_epoch=True)
        return losses["loss"]

    # ------------------------------------------------------------------------------------------------ evaluation
    def source_name(self, stage: str, dataloader_idx: int) -> str:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        names = datamodule.source_names(stage) if hasattr(datamodule, "source_names") else []
        return names[dataloader_idx] if dataloader_idx < len(names) else f"source{dataloader_idx}"

    def _metric(self, stage: str, source: str) -> ReconstructionMetrics:
        key = (stage, source)
        if key not in self._metrics:
            self._metrics[key] = ReconstructionMetrics()
        return self._metrics[key].to(self.device)

    def _evaluate(self, batch: dict[str, Any], stage: str, dataloader_idx: int) -> torch.Tensor:
        self.prepare_memory(batch)
        pred = self(batch["inputs"])
        baseline = self.baseline(batch["inputs"])
        target, valid = frame_targets(batch)
        source = self.source_name(stage, dataloader_idx)
        self._metric(stage, source).update(pred, baseline, target, valid)
        if stage == "val" and bool(valid.any()):
            loss = self._losses(batch, pred, target, valid)["loss"]
            n = int(valid.sum())
            self.log(f"val/{source}/loss", loss, batch_size=n, add_dataloader_idx=False)
            if dataloader_idx == 0:
                self.log("val/loss", loss, batch_size=n, add_dataloader_idx=False, prog_bar=True)
        return pred

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, "val", dataloader_idx)

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, "test", dataloader_idx)

    def _log_metrics(self, stage: str) -> None:
        keys = sorted(k for k in self._metrics if k[0] == stage)
        first = self.source_name(stage, 0)
        logged: dict[str, torch.Tensor] = {}
        for key in keys:
            values = self._metrics[key].compute()
            self._metrics[key].reset()
            if float(values.pop("num_frames")) <= 0:
                continue
            for name, value in values.items():
                logged[f"{stage}/{key[1]}/{name}"] = value.float()
                if key[1] == first:
                    logged[f"{stage}/{name}"] = value.float()
        if logged:
            self.log_dict(logged, sync_dist=False, add_dataloader_idx=False)

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")
