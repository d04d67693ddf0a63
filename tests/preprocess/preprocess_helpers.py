"""Hand-built events and a slow numpy reference shared by the preprocess tests."""

from __future__ import annotations

import numpy as np

from evframe.io.dtypes import EVENT_DTYPE

# A 3 x 4 (height x width) sensor, 2 bins of 100 us.
HEIGHT, WIDTH, DELTA_T, NUM_TBINS = 3, 4, 100, 2


def make_events(rows: list[tuple[int, int, int, int]]) -> np.ndarray:
    """(x, y, p, t) tuples -> EVENT_DTYPE array."""
    events = np.zeros(len(rows), dtype=EVENT_DTYPE)
    for i, (x, y, p, t) in enumerate(rows):
        events[i] = (x, y, p, t)
    return events


def random_events(n: int, height: int, width: int, t_max: int, seed: int = 0, t_min: int = 0) -> np.ndarray:
    """n uniformly random events, sorted by t in [t_min, t_max)."""
    rng = np.random.default_rng(seed)
    events = np.zeros(n, dtype=EVENT_DTYPE)
    events["x"] = rng.integers(0, width, n)
    events["y"] = rng.integers(0, height, n)
    events["p"] = rng.integers(0, 2, n)
    events["t"] = np.sort(rng.integers(t_min, t_max, n))
    return events
