"""EVT 2.0 decoding (Prophesee RAW files, ``% evt 2.0``), compiled with numba.

Each 32-bit little-endian word has its type in bits 28-31:

- ``0x0`` CD_OFF / ``0x1`` CD_ON: an event of polarity 0 / 1; bits 22-27 the 6 low bits of its time, bits 11-21 x,
  bits 0-10 y.
- ``0x8`` EV_TIME_HIGH: bits 0-27 the high part of the time; an event's time is ``(time_high << 6) | low 6 bits``
  (34 bits, wrapping after about 4.8 hours: a backward jump of TIME_HIGH by more than half its range is a wrap).
- ``0xA`` EXT_TRIGGER: bit 0 the edge (polarity), bits 8-12 the trigger channel, bits 22-27 the 6 low time bits.
- ``0xE`` OTHERS and ``0xF`` CONTINUED: vendor data, skipped. Any other type is reserved (counted and skipped).
"""

from __future__ import annotations

import numba
import numpy as np

from evframe.io.raw_state import NO_TIME, OUT_OF_BOUNDS, TIME_BACKWARDS, TIME_UNSORTED, UNKNOWN_TYPE

WORD_BYTES = 4
#: at most one event per word
MAX_EVENTS_PER_WORD = 1
TIME_HIGH_BITS = 28
_TH_RANGE = 1 << TIME_HIGH_BITS
_TH_HALF = _TH_RANGE >> 1

# decoder state (int64 array): the last TIME_HIGH value (-1 before the first one), the number of wraps and the
# latest time of the events written so far (to count events out of order; the reader's duration)
S_TIME_HIGH = 0
S_WRAPS = 1
S_LAST_T = 2
STATE_SIZE = 3


def new_state() -> np.ndarray:
    """The decoder state at the start of a stream."""
    state = np.zeros(STATE_SIZE, dtype=np.int64)
    state[S_TIME_HIGH] = -1
    state[S_LAST_T] = -1
    return state


@numba.njit(cache=True, nogil=True)
def _count(issues, kind, index):
    if issues[kind, 0] == 0:
        issues[kind, 1] = index
    issues[kind, 0] += 1


@numba.njit(cache=True, nogil=True)
def decode(words, base, state, issues, width, height, events, triggers):
    """Decodes the words of one segment.

    Args:
        words: (N,) uint32 stream words. base: index of ``words[0]`` in the whole stream (issues name absolute word
            indices). state: int64 (STATE_SIZE,), updated in place. issues: int64 (NUM_ISSUES, 2) counters, updated
            in place.
        width, height: sensor size; events outside are dropped (2048 when unknown).
        events: (capacity, 2) uint64 view of an EVENT_DTYPE array: each event is written as two little-endian words,
            ``x | y << 16 | p << 32`` and ``t``.
        triggers: (capacity, 3) uint64 view of a TRIGGER_DTYPE array (p, t, id).
    Returns:
        (number of events, number of triggers, number of words decoded): the last is less than N only when an
        output array is full (nothing is ever written past its end), which the caller reports.
    """
    time_high = state[S_TIME_HIGH]
    wraps = state[S_WRAPS]
    last_t = state[S_LAST_T]
    base_t = (wraps << 34) | (time_high << 6)
    n = 0
    m = 0
    n_cap = events.shape[0]
    m_cap = triggers.shape[0]
    done = len(words)
    for j in range(len(words)):
        w = np.int64(words[j])
        kind = w >> 28
        if kind <= 1:
            if time_high < 0:
                _count(issues, NO_TIME, base + j)
                continue
            x = (w >> 11) & 0x7FF
            y = w & 0x7FF
            if x >= width or y >= height:
                _count(issues, OUT_OF_BOUNDS, base + j)
                continue
            if n >= n_cap:
                done = j
                break
            t = base_t | ((w >> 22) & 0x3F)
            if t < last_t:
                _count(issues, TIME_UNSORTED, base + j)
            else:
                last_t = t
            events[n, 0] = np.uint64(x | (y << 16) | (kind << 32))
            events[n, 1] = np.uint64(t)
            n += 1
        elif kind == 0x8:
            value = w & (_TH_RANGE - 1)
            if time_high >= 0 and value < time_high:
                if time_high - value > _TH_HALF:
                    wraps += 1
                    time_high = value
                else:
                    _count(issues, TIME_BACKWARDS, base + j)
            else:
                time_high = value
            base_t = (wraps << 34) | (time_high << 6)
        elif kind == 0xA:
            if time_high < 0:
                _count(issues, NO_TIME, base + j)
                continue
            if m >= m_cap:
                done = j
                break
            triggers[m, 0] = np.uint64(w & 1)
            triggers[m, 1] = np.uint64(base_t | ((w >> 22) & 0x3F))
            triggers[m, 2] = np.uint64((w >> 8) & 0x1F)
            m += 1
        elif kind == 0xE or kind == 0xF:
            pass
        else:
            _count(issues, UNKNOWN_TYPE, base + j)
    state[S_TIME_HIGH] = time_high
    state[S_WRAPS] = wraps
    state[S_LAST_T] = last_t
    return n, m, done
