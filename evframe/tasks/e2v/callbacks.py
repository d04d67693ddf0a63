"""EventToVideoCallback: a video of reconstructions beside the ground truth every n epochs."""

from __future__ import annotations

from pathlib import Path

import lightning as L

from evframe.tasks.e2v.video import reconstruction_frames
from evframe.tasks.video_callback import PeriodicVideoCallback
from evframe.utils.video import log_video, write_video


class EventToVideoCallback(PeriodicVideoCallback):
    """As Metavision's EventToVideoCallback.

    Args:
        video_result_every_n_epochs: every n epochs (0: never), validation clips are reconstructed and written as
            ``<run dir>/videos/e2v_epoch<k>.mp4`` (events | reconstruction | ground truth per stream), and logged to
            W&B when a W&B logger is active.
        num_video_batches: validation batches rendered in each video.
        max_streams: streams tiled in each frame.
        fps: frame rate of the video.
    """

    def __init__(self, video_result_every_n_epochs: int = 2, num_video_batches: int = 4, max_streams: int = 4,
                 fps: float = 10.0) -> None:
        super().__init__(video_result_every_n_epochs)
        self.num_video_batches = int(num_video_batches)
        self.max_streams = int(max_streams)
        self.fps = float(fps)

    def write_demo_video(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Path | None:
        """Reconstructs validation clips; returns the video path (None without a data module)."""
        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "clip_loader"):
            return None
        loader = datamodule.clip_loader("val", num_workers=0)
        frames = reconstruction_frames(pl_module, loader, "event_cube", self.num_video_batches, self.max_streams)
        out = Path(trainer.default_root_dir) / "videos" / f"e2v_epoch{trainer.current_epoch:03d}.mp4"
        path = write_video(frames, out, fps=self.fps)
        log_video(trainer.loggers, "val/e2v_video", path)
        return path
