"""What the tasks' video callbacks share (flow arrows, detections, reconstructions): their schedule and the loop
running a recurrent module over batches."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch

from evframe.models.temporal import clear_recurrent_states
from evframe.utils.weight_averaging import evaluated_weights


class PeriodicVideoCallback(L.Callback):
    """Every ``video_result_every_n_epochs`` training epochs (0: never), global rank 0 renders validation data with
    the model through :meth:`write_demo_video` (a file under ``<run dir>/videos/`` and, with a W&B logger, a logged
    video). Not during Lightning's sanity check. The video shows what validation evaluates: with a weight-averaging
    callback (``callbacks.weight_averaging``), the averaged weights."""

    def __init__(self, video_result_every_n_epochs: int) -> None:
        self.video_result_every_n_epochs = int(video_result_every_n_epochs)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        n = self.video_result_every_n_epochs
        if n > 0 and (trainer.current_epoch + 1) % n == 0 and trainer.is_global_zero and not trainer.sanity_checking:
            with evaluated_weights(trainer, pl_module):
                self.write_demo_video(trainer, pl_module)

    def write_demo_video(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Path | None:
        """Renders the video; returns its path (None when there is nothing to render)."""
        raise NotImplementedError


@torch.no_grad()
def model_batches(module: torch.nn.Module, batches: Iterable[dict[str, Any]],
                  max_batches: int) -> Iterator[tuple[dict[str, Any], torch.Tensor]]:
    """``(batch, inputs)`` for at most ``max_batches`` of ``batches``, ``inputs`` ``(T, B, C, H, W)`` on the module's
    device, with the module in eval mode and its recurrent memory reset by each batch's ``mask_keep_memory``: what a
    video of a recurrent module's outputs needs. The memory is cleared before and after, and the train/eval mode
    restored afterwards (also when the consumer stops early)."""
    was_training = module.training
    module.eval()
    clear_recurrent_states(module)
    device = next(module.parameters()).device
    try:
        for i, batch in enumerate(batches):
            if i >= max_batches:
                break
            inputs = batch["inputs"].to(device)
            module.prepare_memory({"mask_keep_memory": batch["mask_keep_memory"].to(device)})
            yield batch, inputs
    finally:
        clear_recurrent_states(module)
        module.train(was_training)


__all__ = ["PeriodicVideoCallback", "model_batches"]
