"""What the RAW decoders share: the problem counters and the sizes of their output buffers.

A decoder kernel reads a range of words, updates a small int64 ``state`` array (time base, current address, ...)
so that the next range continues exactly where this one stopped, and counts the problems it meets in ``issues``
(an int64 array ``(NUM_ISSUES, 2)``: column 0 the count, column 1 the word index of the first occurrence, -1 if
none), so that the caller can warn once with counts and a byte offset instead of failing.
"""

from __future__ import annotations

import numba
import numpy as np

#: a word whose type the encoding reserves (skipped)
UNKNOWN_TYPE = 0
#: an event or trigger before the first TIME_HIGH word: its time is unknown (dropped)
NO_TIME = 1
#: an event outside the sensor geometry (dropped): the header gives the wrong size, or the data is garbled
OUT_OF_BOUNDS = 2
#: an EVT 3.0 event before any ADDR_Y / VECT_BASE_X word: its address is unknown (dropped)
NO_ADDRESS = 3
#: a TIME_HIGH word going back by less than half the counter range: not a wrap, a glitch (ignored)
TIME_BACKWARDS = 4
#: an event earlier than one decoded before it (kept, in stream order)
TIME_UNSORTED = 5
NUM_ISSUES = 6

#: what each counter means, for warnings: (what is counted, what was done)
ISSUE_TEXT = {
    UNKNOWN_TYPE: ("words of a reserved/unknown event type", "skipped"),
    NO_TIME: ("events before the first TIME_HIGH word (no valid time)", "dropped"),
    OUT_OF_BOUNDS: ("events outside the sensor geometry", "dropped"),
    NO_ADDRESS: ("events before any ADDR_Y / VECT_BASE_X word (no valid address)", "dropped"),
    TIME_BACKWARDS: ("TIME_HIGH words going backwards by less than half the counter range (not a wrap)", "ignored"),
    TIME_UNSORTED: ("events earlier than an event before them", "kept in stream order"),
}


def new_issues() -> np.ndarray:
    """A zeroed ``(NUM_ISSUES, 2)`` int64 counter array (first-occurrence column set to -1)."""
    issues = np.zeros((NUM_ISSUES, 2), dtype=np.int64)
    issues[:, 1] = -1
    return issues


@numba.njit(cache=True, nogil=True)
def first_at_or_after(t, value):
    """Index of the first item >= ``value`` in sorted ``t`` (a strided field view: np.searchsorted would copy it)."""
    lo, hi = 0, len(t)
    while lo < hi:
        mid = (lo + hi) >> 1
        if t[mid] < value:
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(cache=True, nogil=True)
def first_backwards(t, before):
    """Index of the first item of ``t`` smaller than the one before it (``before`` for item 0: the previous
    timestamp, or a value <= every timestamp when there is none), -1 when ``t`` does not go backwards."""
    previous = before
    for i in range(len(t)):
        if t[i] < previous:
            return i
        previous = t[i]
    return -1
