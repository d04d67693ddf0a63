"""DetectionCallback: a video of predictions beside the ground truth on validation recordings every n epochs."""

from __future__ import annotations

from pathlib import Path

import lightning as L

from evframe.tasks.detection.viz import detection_video_frames
from evframe.tasks.video_callback import PeriodicVideoCallback
from evframe.utils.video import log_video, write_video


class DetectionCallback(PeriodicVideoCallback):
    """Writes ``<run dir>/videos/detection_epoch<k>.mp4`` (and logs it to W&B) every n epochs.

    Args:
        video_result_every_n_epochs: period in epochs (0 disables the videos).
        num_video_batches: validation batches rendered.
        score_thresh: detections drawn above this score.
        batch_size: streams tiled in the video.
    """

    def __init__(self, video_result_every_n_epochs: int = 5, num_video_batches: int = 20, score_thresh: float = 0.4,
                 batch_size: int = 4) -> None:
        super().__init__(video_result_every_n_epochs)
        self.num_video_batches = int(num_video_batches)
        self.score_thresh = float(score_thresh)
        self.batch_size = int(batch_size)

    def write_demo_video(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Path | None:
        """Renders validation recordings with predicted and true boxes; returns the video (None without data)."""
        datamodule = trainer.datamodule
        if datamodule is None:
            return None
        batch_size = min(self.batch_size, int(datamodule.dataset_cfg["batch_size"]))
        loader = datamodule.make_loader("val", batch_size=batch_size, shuffle=False, num_workers=0)
        frames = detection_video_frames(pl_module, loader, str(datamodule.preprocess_cfg["name"]),
                                        self.num_video_batches, self.score_thresh, pl_module.nms_thresh)
        path = write_video(frames, Path(trainer.default_root_dir) / "videos" /
                           f"detection_epoch{trainer.current_epoch:03d}.mp4")
        log_video(trainer.loggers, "val/detection_video", path)
        return path


__all__ = ["DetectionCallback"]
