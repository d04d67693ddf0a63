"""Checks of the arguments every event reader takes (one rule for DAT, RAW and HDF5 readers).

Integers only: Python ints and numpy integers are accepted; bools, floats, strings and arrays are refused, because
silently rounding ``seek_event(1.5)`` or treating ``True`` as 1 hides a bug in the caller. Ranges are closed
intervals; times are microseconds in int64, and negative times are refused (no event file holds them).
"""

from __future__ import annotations

import operator
import os

import numpy as np

#: the largest value of an int64 (microsecond times, event counts)
INT64_MAX = (1 << 63) - 1


def check_int(value: object, name: str, low: int, high: int, where: str | os.PathLike) -> int:
    """Returns ``value`` as a Python int after checking that it is an integer in ``[low, high]``.

    Args:
        value: the argument as the caller passed it.
        name: the argument's name, as in the method's signature (used in the message).
        low, high: inclusive bounds.
        where: the file (or ``"reader(file)"``) that prefixes the message.
    Raises:
        TypeError: ``value`` is not an int / numpy integer (bools, floats and numpy floats included).
        ValueError: ``value`` is outside ``[low, high]``.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        shown = repr(value) if isinstance(value, (str, bytes)) else str(value)
        raise TypeError(f"{os.fspath(where)}: {name} must be an integer (int or numpy integer), got "
                        f"{type(value).__name__} {shown}")
    number = operator.index(value)
    if not low <= number <= high:
        raise ValueError(f"{os.fspath(where)}: {name}={number} is out of range, expected an integer in "
                         f"[{low}, {high}]")
    return number


def clamp_int64(value: int) -> int:
    """``value`` limited to the int64 range, for comparisons in compiled code (Python ints do not overflow)."""
    return min(max(int(value), -INT64_MAX - 1), INT64_MAX)
