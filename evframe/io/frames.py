"""Grayscale frames with timestamps (``*_frames.h5``), e.g. ground truth for event-to-video reconstruction."""

from __future__ import annotations

import os

import numpy as np

from evframe.io._timed_h5 import TIMESTAMPS, TimedH5Reader, check_timestamps, write_series
from evframe.io.errors import EventFileError

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
    ``read(index_or_slice) -> (n, H, W) uint8``, ``indices_in(t0, t1)``.

    Raises:
        FileNotFoundError: no file at ``path``. EventFileError: not a readable / a damaged HDF5 file, datasets
            missing or of the wrong shape / dtype, timestamps not strictly increasing (naming file, dataset, index).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(path, FRAMES, (None, None), np.uint8)
        ts = self.timestamps
        # indices_in() bisects the times: a repeated or earlier time would silently pick the wrong frames
        bad = np.flatnonzero(ts[1:] <= ts[:-1])
        if len(bad):
            i = int(bad[0]) + 1
            raise EventFileError(self.path, f"dataset '{TIMESTAMPS}' at index {i}: {ts[i]} us after {ts[i - 1]} us "
                                            f"at index {i - 1}; expected strictly increasing times")
