"""The schedule shared by the tasks' video callbacks (flow arrows, detections, reconstructions)."""

from __future__ import annotations

from pathlib import Path

import lightning as L


class PeriodicVideoCallback(L.Callback):
    """Every ``video_result_every_n_epochs`` training epochs (0: never), global rank 0 renders validation data with
    the model through :meth:`write_demo_video` (a file under ``<run dir>/videos/`` and, with a W&B logger, a logged
    video). Not during Lightning's sanity check."""

    def __init__(self, video_result_every_n_epochs: int) -> None:
        self.video_result_every_n_epochs = int(video_result_every_n_epochs)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        n = self.video_result_every_n_epochs
        if n > 0 and (trainer.current_epoch + 1) % n == 0 and trainer.is_global_zero and not trainer.sanity_checking:
            self.write_demo_video(trainer, pl_module)

    def write_demo_video(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Path | None:
        """Renders the video; returns its path (None when there is nothing to render)."""
        raise NotImplementedError


__all__ = ["PeriodicVideoCallback"]
