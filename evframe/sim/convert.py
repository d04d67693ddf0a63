"""Conversion of simulator output to the numpy event layout used everywhere else in evframe."""

from __future__ import annotations

import numpy as np
import torch

from evframe.io.dtypes import EVENT_DTYPE


def events_to_numpy(events: torch.Tensor, b: int = 0) -> np.ndarray:
    """Selects batch element ``b`` of simulator events (N, 5) ``(b, x, y, p, t)``; returns an EVENT_DTYPE array.

    Order is preserved (so the result is sorted by t when the input came from ``EventSimulator.sim``).
    """
    events = torch.as_tensor(events)
    if events.ndim != 2 or events.shape[1] != 5:
        raise ValueError(f"events_to_numpy: events must have shape (N, 5) with columns (b, x, y, p, t), "
                         f"got {tuple(events.shape)}")
    events = events.cpu()
    mask = events[:, 0] == b
    # single-video output (the common case) needs no selection copy
    rows = events.numpy() if bool(mask.all()) else events[mask].numpy()
    out = np.empty(len(rows), dtype=EVENT_DTYPE)
    out["x"], out["y"], out["p"], out["t"] = rows[:, 1], rows[:, 2], rows[:, 3], rows[:, 4]
    return out
