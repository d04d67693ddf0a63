"""Writing RGB frames to video files and logging them to W&B when a W&B logger is active."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import cv2
import numpy as np


def write_video(frames: Iterable[np.ndarray], path: str | Path, fps: float = 10.0) -> Path:
    """Writes RGB uint8 frames ``(H, W, 3)`` (all the same size) to an MP4 file; returns the path.

    Raises:
        ValueError: no frame, or frames of different sizes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = None
    size = None
    count = 0
    try:
        for frame in frames:
            frame = np.ascontiguousarray(frame)
            if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                raise ValueError(f"{path}: frames must be (H, W, 3) uint8, got {frame.shape} {frame.dtype}")
            if writer is None:
                size = (frame.shape[1], frame.shape[0])
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
                if not writer.isOpened():
                    raise OSError(f"{path}: OpenCV could not open a video writer")
            elif (frame.shape[1], frame.shape[0]) != size:
                raise ValueError(f"{path}: frame {count} is {frame.shape[:2]}, expected {size[::-1]}")
            writer.write(frame[..., ::-1])  # OpenCV writes BGR
            count += 1
    finally:
        if writer is not None:
            writer.release()
    if count == 0:
        raise ValueError(f"{path}: no frame to write")
    return path


def log_video(loggers: Iterable[Any], key: str, path: str | Path, step: int | None = None) -> None:
    """Logs a video file to every W&B logger among ``loggers`` (others keep just the file)."""
    for logger in loggers:
        if type(logger).__name__ == "WandbLogger":
            import wandb

            logger.experiment.log({key: wandb.Video(str(path), format="mp4")}, step=step)
