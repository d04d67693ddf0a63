"""EVT 3.0 decoding (Prophesee RAW files, ``% evt 3.0``), compiled with numba.

Each 16-bit little-endian word has its type in bits 12-15 and a 12-bit payload. The stream is stateful: a word only
says what changed, so the decoder keeps the time base, the current row and the vector base between words (and
between the chunks it is given):

- ``0x0`` ADDR_Y: bits 0-10 the current y (bit 11: master/slave system type, ignored).
- ``0x2`` ADDR_X: one event at x = bits 0-10, polarity bit 11, on the current row at the current time.
- ``0x3`` VECT_BASE_X: bits 0-10 the base x of the following vectors, bit 11 their polarity.
- ``0x4`` VECT_12 / ``0x5`` VECT_8: bit i of the 12 / 8 low bits set is an event at base x + i; base x then
  advances by 12 / 8.
- ``0x6`` TIME_LOW: the low 12 bits of the 24-bit time. ``0x8`` TIME_HIGH: its high 12 bits.
- ``0xA`` EXT_TRIGGER: bit 0 the edge (polarity), bits 8-11 the trigger channel, at the current time.
- ``0x7`` CONTINUED_4, ``0xE`` OTHERS, ``0xF`` CONTINUED_12: vendor / monitoring data, skipped.

Time wrap-around: the 24-bit time wraps every 16.78 s. Sensors repeat TIME_HIGH words many times with the same
value, so a wrap is recognised as TIME_HIGH going *backwards* by more than half its range (not as TIME_LOW
overflowing, which happens between two TIME_HIGH words without any wrap). When TIME_HIGH moves forward, the low
part restarts at 0 until the next TIME_LOW, so that time never runs backwards.
"""

from __future__ import annotations

import numba
import numpy as np

from evframe.io.raw_state import NO_ADDRESS, NO_TIME, OUT_OF_BOUNDS, TIME_BACKWARDS, TIME_UNSORTED, UNKNOWN_TYPE

WORD_BYTES = 2
#: a VECT_12 word holds up to 12 events
MAX_EVENTS_PER_WORD = 12
_TH_RANGE = 1 << 12
_TH_HALF = _TH_RANGE >> 1

# decoder state (int64 array); -1 means "not seen yet"
S_TIME_HIGH = 0
S_TIME_LOW = 1
S_WRAPS = 2
S_Y = 3
S_BASE_X = 4
S_POLARITY = 5
S_LAST_T = 6  # latest time of the events written so far (to count events out of order; the reader's duration)
STATE_SIZE = 7


def new_state() -> np.ndarray:
    """The decoder state at the start of a stream."""
    state = np.zeros(STATE_SIZE, dtype=np.int64)
    state[S_TIME_HIGH] = -1
    state[S_Y] = -1
    state[S_BASE_X] = -1
    state[S_LAST_T] = -1
    return state


@numba.njit(cache=True, nogil=True)
def _count(issues, kind, index, amount):
    if issues[kind, 0] == 0:
        issues[kind, 1] = index
    issues[kind, 0] += amount


@numba.njit(cache=True, nogil=True)
def _popcount(value):
    count = 0
    while value:
        value &= value - 1
        count += 1
    return count


@numba.njit(cache=True, nogil=True)
def decode(words, base, state, issues, width, height, events, triggers):
    """Decodes the words of one segment.

    Args:
        words: (N,) uint16 stream words. base: index of ``words[0]`` in the whole stream (issues name absolute word
            indices). state: int64 (STATE_SIZE,), updated in place. issues: int64 (NUM_ISSUES, 2) counters, updated
            in place.
        width, height: sensor size; events outside are dropped (2048 when unknown).
        events: (capacity, 2) uint64 view of an EVENT_DTYPE array (12 * N rows always suffice): each event is
            written as two little-endian words, ``x | y << 16 | p << 32`` and ``t`` (two contiguous stores instead
            of four strided).
        triggers: (capacity, 3) uint64 view of a TRIGGER_DTYPE array (p, t, id).
    Returns:
        (number of events, number of triggers, number of words decoded): the last is less than N only when an
        output array is full (nothing is ever written past its end), which the caller reports.
    """
    time_high = state[S_TIME_HIGH]
    time_low = state[S_TIME_LOW]
    wraps = state[S_WRAPS]
    y = state[S_Y]
    base_x = state[S_BASE_X]
    polarity = state[S_POLARITY]
    last_t = state[S_LAST_T]
    t = (wraps << 24) | (time_high << 12) | time_low
    n = 0
    m = 0
    n_cap = events.shape[0]
    m_cap = triggers.shape[0]
    done = len(words)
    for j in range(len(words)):
        w = np.int64(words[j])
        kind = w >> 12
        payload = w & 0xFFF
        # branches in order of frequency in real streams
        if kind == 0x2:
            if time_high < 0:
                _count(issues, NO_TIME, base + j, 1)
            elif y < 0:
                _count(issues, NO_ADDRESS, base + j, 1)
            else:
                x = payload & 0x7FF
                if x >= width or y >= height:
                    _count(issues, OUT_OF_BOUNDS, base + j, 1)
                else:
                    if n >= n_cap:
                        done = j
                        break
                    if t < last_t:
                        _count(issues, TIME_UNSORTED, base + j, 1)
                    else:
                        last_t = t
                    events[n, 0] = np.uint64(x | (y << 16) | ((payload >> 11) << 32))
                    events[n, 1] = np.uint64(t)
                    n += 1
        elif kind == 0x0:
            y = payload & 0x7FF
        elif kind == 0x4 or kind == 0x5:
            size = 12 if kind == 0x4 else 8
            valid = payload & ((1 << size) - 1)
            if time_high < 0:
                _count(issues, NO_TIME, base + j, _popcount(valid))
            elif y < 0 or base_x < 0:
                _count(issues, NO_ADDRESS, base + j, _popcount(valid))
            elif valid:
                high_bits = np.uint64((y << 16) | (polarity << 32))
                first = n
                for b in range(size):
                    if (valid >> b) & 1:
                        x = base_x + b
                        if x >= width or y >= height:
                            _count(issues, OUT_OF_BOUNDS, base + j, 1)
                            continue
                        if n >= n_cap:
                            done = j
                            break
                        events[n, 0] = high_bits | np.uint64(x)
                        events[n, 1] = np.uint64(t)
                        n += 1
                if done < len(words):
                    break
                if n > first:  # last_t: the latest time of the events kept (the reader's duration)
                    if t < last_t:
                        _count(issues, TIME_UNSORTED, base + j, n - first)
                    else:
                        last_t = t
            if base_x >= 0:
                base_x += size
        elif kind == 0x3:
            base_x = payload & 0x7FF
            polarity = payload >> 11
        elif kind == 0x6:
            time_low = payload
            t = (wraps << 24) | (time_high << 12) | time_low
        elif kind == 0x8:
            if time_high < 0:
                time_high = payload
                time_low = 0
            elif payload < time_high:
                if time_high - payload > _TH_HALF:
                    wraps += 1
                    time_high = payload
                    time_low = 0
                else:
                    _count(issues, TIME_BACKWARDS, base + j, 1)
            elif payload > time_high:
                time_high = payload
                time_low = 0
            t = (wraps << 24) | (time_high << 12) | time_low
        elif kind == 0xA:
            if time_high < 0:
                _count(issues, NO_TIME, base + j, 1)
            else:
                if m >= m_cap:
                    done = j
                    break
                triggers[m, 0] = np.uint64(payload & 1)
                triggers[m, 1] = np.uint64(t)
                triggers[m, 2] = np.uint64((payload >> 8) & 0xF)
                m += 1
        elif kind == 0x7 or kind == 0xE or kind == 0xF:
            pass
        else:
            _count(issues, UNKNOWN_TYPE, base + j, 1)
    state[S_TIME_HIGH] = time_high
    state[S_TIME_LOW] = time_low
    state[S_WRAPS] = wraps
    state[S_Y] = y
    state[S_BASE_X] = base_x
    state[S_POLARITY] = polarity
    state[S_LAST_T] = last_t
    return n, m, done
