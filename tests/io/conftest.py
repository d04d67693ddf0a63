"""Shared helpers of the evframe.io tests."""

from pathlib import Path

import numpy as np
import pytest

from evframe.io import EVENT_DTYPE

REALDATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "realdata"


def _random_events(n: int, height: int = 48, width: int = 64, t_max: int = 100_000, seed: int = 0) -> np.ndarray:
    """(n,) EVENT_DTYPE sorted by t, with many equal timestamps (t_max small relative to n)."""
    rng = np.random.default_rng(seed)
    events = np.zeros(n, dtype=EVENT_DTYPE)
    events["x"] = rng.integers(0, width, n)
    events["y"] = rng.integers(0, height, n)
    events["p"] = rng.integers(0, 2, n)
    events["t"] = np.sort(rng.integers(0, t_max, n))
    return events


@pytest.fixture
def realdata() -> Path:
    folder = REALDATA / "prophesee_dat"
    if not folder.is_dir():
        pytest.skip(f"real recordings absent ({folder})")
    return folder


@pytest.fixture
def random_events():
    """The :func:`_random_events` factory (a fixture, so test modules need not import this conftest)."""
    return _random_events
