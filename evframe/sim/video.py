"""One-call simulation of a whole grayscale video."""

from __future__ import annotations

import numpy as np
import torch

from evframe.sim.convert import events_to_numpy
from evframe.sim.simulator import EventSimulator


def simulate_video(frames: np.ndarray | torch.Tensor, timestamps: np.ndarray | torch.Tensor,
                   **sim_kwargs) -> np.ndarray:
    """Simulates the events of a video.

    Args:
        frames: (N, H, W) float in [0, 1] or uint8.
        timestamps: (N,) int64 microseconds, strictly increasing.
        **sim_kwargs: forwarded to :class:`EventSimulator` (thresholds, noise, seed, device...).

    Returns:
        EVENT_DTYPE array sorted by t; the first frame only initialises the simulator, so every event has
        ``timestamps[0] < t <= timestamps[-1]``.
    """
    frames = torch.as_tensor(frames)
    timestamps = torch.as_tensor(np.asarray(timestamps, dtype=np.int64))
    if frames.ndim != 3:
        raise ValueError(f"simulate_video: frames must have shape (N, H, W), got {tuple(frames.shape)}")
    if timestamps.shape != (frames.shape[0],):
        raise ValueError(f"simulate_video: timestamps must have shape (N,) = ({frames.shape[0]},), "
                         f"got {tuple(timestamps.shape)}")
    simulator = EventSimulator(frames.shape[1], frames.shape[2], batch_size=1, **sim_kwargs)
    chunks = [simulator.sim(frames[i:i + 1], timestamps[i:i + 1]) for i in range(len(frames))]
    # concatenated as tensors: np.concatenate would drop the padding of EVENT_DTYPE
    events = torch.cat(chunks) if chunks else torch.zeros((0, 5), dtype=torch.int64)
    return events_to_numpy(events, 0)
