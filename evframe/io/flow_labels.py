"""Dense optical-flow labels (``*_flow.h5``).

Convention: channel 0 = x, channel 1 = y displacement speed in pixels per second; a pixel at (x, y) at time t is
at (x + fx * dt, y + fy * dt) at time t + dt (forward flow).
"""

from __future__ import annotations

import os

import numpy as np

from evframe.io._timed_h5 import TIMESTAMPS, TimedH5Reader, check_timestamps, write_series
from evframe.io.errors import EventFileError

FLOW = "flow"
UNIT = "px/s"


def write_flow_h5(path: str | os.PathLike, flow: np.ndarray, timestamps: np.ndarray,
                  compression: str | None = None) -> None:
    """Writes dense flow labels atomically.

    Args:
        path: destination ``.h5`` (replaced if it exists).
        flow: (N, 2, H, W) float, pixels per second (stored float32).
        timestamps: (N,) int us, strictly increasing.
        compression: h5py compression filter (e.g. "gzip", "lzf") or None.
    """
    flow = np.asarray(flow)
    if flow.ndim != 4 or flow.shape[1] != 2 or flow.dtype.kind != "f":
        raise ValueError(f"write_flow_h5({path}): flow should be (N, 2, H, W) float in px/s, got {flow.dtype} "
                         f"{flow.shape}")
    timestamps = check_timestamps(f"write_flow_h5({path})", timestamps, len(flow))
    write_series(path, FLOW, flow.astype(np.float32, copy=False), timestamps, {"unit": UNIT}, compression)


class FlowLabelsReader(TimedH5Reader):
    """Reads ``*_flow.h5`` lazily (picklable): ``timestamps`` (N,) int64 us, ``height``, ``width``, ``len()``,
    ``read(index_or_slice) -> (n, 2, H, W) float32`` px/s, ``indices_in(t0, t1)``.

    Raises:
        FileNotFoundError: no file at ``path``.
        EventFileError: not a readable HDF5 file, datasets missing or of the wrong shape / dtype, or timestamps not
            strictly increasing (as :func:`write_flow_h5` writes them: a repeated or earlier time would make the
            flow of a time bin ambiguous); the message names the file, the dataset and the index.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(path, FLOW, (2, None, None), np.float32)
        ts = self.timestamps
        # Compared, not differenced: np.diff could overflow int64 between extreme times.
        bad = np.flatnonzero(ts[1:] <= ts[:-1])
        if len(bad):
            i = int(bad[0]) + 1
            how = "repeats" if ts[i] == ts[i - 1] else "comes before"
            raise EventFileError(self.path, f"dataset '{TIMESTAMPS}' at index {i}: {ts[i]} us {how} "
                                            f"{ts[i - 1]} us at index {i - 1}; expected strictly increasing times")
