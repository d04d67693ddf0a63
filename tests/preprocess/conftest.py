"""Fixtures of the preprocess tests (hand-built events)."""

from __future__ import annotations

import numpy as np
import pytest
from preprocess_helpers import make_events


@pytest.fixture
def scene() -> np.ndarray:
    """Six events on the 3 x 4 sensor, sorted by t; bin 0 = [0, 100), bin 1 = [100, 200)."""
    return make_events([
        (0, 0, 1, 0),    # bin 0, ON  at (y=0, x=0), tau 0
        (1, 0, 1, 10),   # bin 0, ON  at (0, 1), tau 10
        (1, 2, 0, 60),   # bin 0, OFF at (2, 1), tau 60
        (1, 0, 1, 99),   # bin 0, ON  at (0, 1), tau 99 (second event of that pixel)
        (3, 1, 1, 150),  # bin 1, ON  at (1, 3), tau 50
        (2, 2, 0, 199),  # bin 1, OFF at (2, 2), tau 99
    ])
