"""Grayscale frames with timestamps (``*_frames.h5``), e.g. ground truth for event-to-video reconstruction."""

from __future__ import annotations

import os

import numpy as np

from evframe.io._timed_h5 import TimedH5Reader, check_timestamps, write_series

FRAMES = "frames"


def write_frames_h5(path: str | os.PathLike, frames: np.ndarray, timestamps: np.ndarray,
                    compression: str | None = "gzip") -> None:
    """Writes frames atomically.

    Args:
        path: destination ``.h5`` (replaced if it exists).
        frames: (N, H, W) uint8.
        timestamps: (N,) int us, strictly increasing.
        compression: h5py compression filter (gzip suits 8-bit images) or None.
    """
    frames = np.asarray(frames)
    if frames.ndim != 3 or frames.dtype != np.uint8:
        raise ValueError(f"write_frames_h5({path}): frames should be (N, H, W) uint8, got {frames.dtype} "
                         f"{frames.shape}")
    timestamps = check_timestamps(f"write_frames_h5({path})", timestamps, len(frames))
    write_series(path, FRAMES, frames, timestamps, {}, compression)


class FramesReader(TimedH5Reader):
    """Reads ``*_frames.h5`` lazily (picklable): ``timestamps`` (N,) int64 us, ``height``, ``width``, ``len()``,
    ``read(index_or_slice) -> (n, H, W) uint8``, ``indices_in(t0, t1)``."""

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(path, FRAMES, (None, None), np.uint8)
