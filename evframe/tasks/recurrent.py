"""Base LightningModule for recurrent event models: memory follows the loader's streams.

Every batch of a :class:`~evframe.data.sequential.SequentialDataLoader` continues B streams. Before the forward
pass the state of streams that start a new recording (``mask_keep_memory == 0``) is zeroed, and the state of the
others is detached from the previous batch's graph (truncated back-propagation through time). Switching between
loaders (train -> val -> train) clears all state, since the streams of one loader are unrelated to the other's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch

from evframe.models.temporal import clear_recurrent_states, detach_recurrent_states, reset_recurrent_states


class RecurrentTaskModule(L.LightningModule):
    """Owns the optimizer factory and the memory bookkeeping; tasks implement the steps.

    Args:
        optimizer: a partial optimizer (``torch.optim.AdamW`` with ``_partial_: true`` in config), called with the
            parameters.
        scheduler: optional partial LR scheduler called with the optimizer (stepped every epoch).
    """

    def __init__(self, optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable[..., Any] | None = None) -> None:
        super().__init__()
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler

    def prepare_memory(self, batch: dict[str, Any]) -> None:
        """Zeroes the state of streams starting a recording and detaches the rest (call before forward)."""
        reset_recurrent_states(self, batch["mask_keep_memory"])
        detach_recurrent_states(self)

    @staticmethod
    def active_streams(batch: dict[str, Any]) -> torch.Tensor:
        """``(B,)`` bool: streams playing a recording (False for padding of finished streams, which the loader
        fills with zeros and which must not weigh on losses)."""
        infos = batch.get("video_infos")
        device = batch["inputs"].device
        if not infos:
            return torch.ones(batch["inputs"].shape[1], dtype=torch.bool, device=device)
        return torch.tensor([not info[0].is_padding() for info in infos], dtype=torch.bool, device=device)

    @staticmethod
    def padding_loss(outputs: Any) -> torch.Tensor:
        """The loss of a batch holding only padding: 0, yet computed from every output tensor (a list/tuple/dict of
        tensors or a tensor). Under DDP a rank that ran out of recordings still takes part in the gradient
        all-reduce with zero gradients; skipping the step would leave the other ranks waiting, and the task loss
        of an empty batch is NaN, which the all-reduce would spread to every rank."""
        if isinstance(outputs, dict):
            outputs = list(outputs.values())
        tensors = [t for t in (outputs if isinstance(outputs, (list, tuple)) else [outputs])
                   if isinstance(t, torch.Tensor)]
        if not tensors:
            raise ValueError("padding_loss: no output tensor to build the zero loss from")
        return torch.stack([t.sum() for t in tensors]).sum() * 0.0

    def _clear_memory(self) -> None:
        clear_recurrent_states(self)

    def on_train_epoch_start(self) -> None:
        self._clear_memory()

    def on_validation_epoch_start(self) -> None:
        self._clear_memory()

    def on_validation_epoch_end(self) -> None:
        self._clear_memory()

    def on_test_epoch_start(self) -> None:
        self._clear_memory()

    def on_predict_epoch_start(self) -> None:
        self._clear_memory()

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer),
                                                         "interval": "epoch"}}
