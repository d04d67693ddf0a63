"""Writing CD events (and external triggers) as Prophesee RAW files, EVT 2.0 or EVT 3.0.

Used to turn DAT recordings or simulated events into RAW files (tests, the streaming loader's end-to-end run) and to
build streams with known content. The encoders follow the formats described in :mod:`evframe.io.raw_evt2` /
:mod:`evframe.io.raw_evt3`; the EVT 3.0 encoder groups events of the same time, row and polarity into vectors
(VECT_BASE_X + VECT_12 / VECT_8) as sensors do. TIME_HIGH words are written whenever the time base moves (and, over
gaps, often enough that a decoder can tell a wrap from a glitch); ``repeat_time_high`` repeats them before every
group of events, as real streams do.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from pathlib import Path

import numba
import numpy as np

from evframe.io._atomic import atomic_path
from evframe.io.dtypes import TRIGGER_DTYPE

# over a gap, consecutive TIME_HIGH words written differ by at most a quarter of the counter range
_EVT3_TH_STEP = 1 << 10
_EVT2_TH_STEP = 1 << 26


@numba.njit(cache=True)
def _encode_evt3(x, y, p, t, is_trigger, trig_id, vectorize, repeat_time_high, out):
    """Writes the words of time-sorted items (events and triggers) into ``out``; returns the word count."""
    n = 0
    high = np.int64(-1)  # t >> 12 of the last TIME_HIGH written (with wraps)
    low = np.int64(-1)
    row = np.int64(-1)
    i = 0
    count = len(t)
    while i < count:
        ti = t[i]
        hi = ti >> 12
        if hi != high or repeat_time_high:
            if high >= 0:
                step = high + _EVT3_TH_STEP
                while step < hi:  # gaps: intermediate TIME_HIGH words so wraps stay detectable
                    out[n] = (0x8 << 12) | (step & 0xFFF)
                    n += 1
                    step += _EVT3_TH_STEP
            out[n] = (0x8 << 12) | (hi & 0xFFF)
            n += 1
            if hi != high:
                low = 0  # a decoder restarts the low part at 0 when TIME_HIGH moves
            high = hi
        if (ti & 0xFFF) != low:
            low = ti & 0xFFF
            out[n] = (0x6 << 12) | low
            n += 1
        if is_trigger[i]:
            out[n] = (0xA << 12) | (trig_id[i] << 8) | p[i]
            n += 1
            i += 1
            continue
        if y[i] != row:
            row = y[i]
            out[n] = row  # ADDR_Y, type 0
            n += 1
        # the run of events sharing this time, row and polarity, with increasing x
        j = i + 1
        while (vectorize and j < count and not is_trigger[j] and t[j] == ti and y[j] == row and p[j] == p[i]
               and x[j] > x[j - 1]):
            j += 1
        if j - i == 1:
            out[n] = (0x2 << 12) | (p[i] << 11) | x[i]
            n += 1
            i += 1
            continue
        base = np.int64(x[i])
        out[n] = (0x3 << 12) | (p[i] << 11) | base
        n += 1
        k = i
        while k < j:
            size = 12 if x[j - 1] - base >= 8 else 8
            mask = 0
            while k < j and x[k] < base + size:
                mask |= 1 << (x[k] - base)
                k += 1
            out[n] = ((0x4 if size == 12 else 0x5) << 12) | mask
            n += 1
            base += size
            if k < j and x[k] >= base + 12:  # a hole: start a new base
                base = np.int64(x[k])
                out[n] = (0x3 << 12) | (p[i] << 11) | base
                n += 1
        i = j
    return n


@numba.njit(cache=True)
def _encode_evt2(x, y, p, t, is_trigger, trig_id, repeat_time_high, out):
    n = 0
    high = np.int64(-1)
    for i in range(len(t)):
        hi = t[i] >> 6
        if hi != high or repeat_time_high:
            if high >= 0:
                step = high + _EVT2_TH_STEP
                while step < hi:
                    out[n] = (0x8 << 28) | (step & 0x0FFFFFFF)
                    n += 1
                    step += _EVT2_TH_STEP
            out[n] = (0x8 << 28) | (hi & 0x0FFFFFFF)
            n += 1
            high = hi
        low = t[i] & 0x3F
        if is_trigger[i]:
            out[n] = (0xA << 28) | (low << 22) | (trig_id[i] << 8) | p[i]
        else:
            out[n] = (p[i] << 28) | (low << 22) | (x[i] << 11) | y[i]
        n += 1
    return n


def _merged(events: np.ndarray, triggers: np.ndarray | None) -> tuple[np.ndarray, ...]:
    """Events and triggers as time-sorted columns (x, y, p, t, is_trigger, id); a trigger comes after events of the
    same time."""
    triggers = np.zeros(0, dtype=TRIGGER_DTYPE) if triggers is None else np.asarray(triggers)
    n, m = len(events), len(triggers)
    t = np.concatenate([events["t"].astype(np.int64), triggers["t"].astype(np.int64)])
    is_trigger = np.concatenate([np.zeros(n, dtype=np.bool_), np.ones(m, dtype=np.bool_)])
    order = np.lexsort((is_trigger, t))  # stable: the events' own order is kept within a time
    columns = (np.concatenate([events["x"].astype(np.int64), np.zeros(m, np.int64)]),
               np.concatenate([events["y"].astype(np.int64), np.zeros(m, np.int64)]),
               np.concatenate([events["p"].astype(np.int64), triggers["p"].astype(np.int64)]), t, is_trigger,
               np.concatenate([np.zeros(n, np.int64), triggers["id"].astype(np.int64)]))
    return tuple(np.ascontiguousarray(c[order]) for c in columns)


def _check(path: Path, events: np.ndarray, triggers: np.ndarray | None, height: int, width: int) -> None:
    for name, size in (("height", height), ("width", width)):
        if not isinstance(size, (int, np.integer)) or not 0 < size <= 2048:
            raise ValueError(f"write_raw({path}): {name}={size!r}, expected an int in [1, 2048]")
    for field, low, high in (("x", 0, width - 1), ("y", 0, height - 1), ("p", 0, 1), ("t", 0, 2**62)):
        values = events[field]
        if len(values) and (values.min() < low or values.max() > high):
            i = int(np.argmax((values < low) | (values > high)))
            raise ValueError(f"write_raw({path}): event {i} has {field}={values[i]}, expected [{low}, {high}]")
    if len(events) and np.any(np.diff(events["t"].astype(np.int64)) < 0):
        raise ValueError(f"write_raw({path}): events must be sorted by t")
    if triggers is not None and len(triggers):
        if triggers["id"].min() < 0 or triggers["id"].max() > 15 or not np.isin(triggers["p"], (0, 1)).all():
            raise ValueError(f"write_raw({path}): trigger ids must be in [0, 15] and p in {{0, 1}}")


def encode_events(events: np.ndarray, encoding: str = "evt3", triggers: np.ndarray | None = None,
                  vectorize: bool = True, repeat_time_high: bool = False) -> np.ndarray:
    """Encodes time-sorted CD events (and triggers) as EVT words.

    Args:
        events: (N,) structured array with integer fields x, y, p, t (EVENT_DTYPE), sorted by t.
        encoding: "evt3" (16-bit words) or "evt2" (32-bit words).
        triggers: optional (M,) TRIGGER_DTYPE array (any order; merged by time).
        vectorize: EVT 3.0 only: group events of one time, row and polarity into vectors.
        repeat_time_high: write TIME_HIGH before every event (EVT 2.0) / group (EVT 3.0), as sensors do.
    Returns:
        (W,) uint16 (EVT 3.0) or uint32 (EVT 2.0) words.
    """
    columns = _merged(np.asarray(events), triggers)
    t = columns[3]
    span = int(t.max() - t.min()) if len(t) else 0
    # at most 5 words per item (TIME_HIGH, TIME_LOW, ADDR_Y, VECT_BASE_X, VECT / ADDR_X), plus the gap words
    if encoding == "evt3":
        out = np.empty(5 * len(t) + (span >> 12) // _EVT3_TH_STEP + 16, dtype=np.int64)
        n = _encode_evt3(*columns, bool(vectorize), bool(repeat_time_high), out)
        return out[:n].astype("<u2")
    if encoding == "evt2":
        out = np.empty(2 * len(t) + (span >> 6) // _EVT2_TH_STEP + 16, dtype=np.int64)
        n = _encode_evt2(*columns, bool(repeat_time_high), out)
        return out[:n].astype("<u4")
    raise ValueError(f"encoding must be 'evt2' or 'evt3', got {encoding!r}")


def raw_header(encoding: str, height: int, width: int, extra_header: Mapping[str, object] | None = None) -> bytes:
    """The ``%`` header lines of a RAW file of this encoding and sensor size (ending with ``% end``)."""
    extra = dict(extra_header or {})
    version = {"evt2": "2.0", "evt3": "3.0"}[encoding]
    lines = {"date": extra.pop("date", datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")), "evt": version,
             "format": f"{encoding.upper()};height={height};width={width}", "geometry": f"{width}x{height}",
             "integrator_name": "evframe"}
    lines.update(extra)
    for key, value in lines.items():
        text = f"{key} {value}"
        if not (text.isascii() and text.isprintable()):
            raise ValueError(f"RAW header line {text!r} must be single-line ASCII")
    return "".join(f"% {k} {v}\n" for k, v in lines.items()).encode("ascii") + b"% end\n"


def write_raw(path: str | os.PathLike, events: np.ndarray, height: int, width: int, encoding: str = "evt3",
              triggers: np.ndarray | None = None, vectorize: bool = True, repeat_time_high: bool = False,
              extra_header: Mapping[str, object] | None = None) -> None:
    """Writes CD events (and external triggers) as a RAW file, atomically.

    Args:
        path: destination (replaced if it exists).
        events: (N,) structured array with integer fields x, y, p, t, sorted by t, 0 <= x < width, 0 <= y < height,
            p in {0, 1}, t >= 0 (us).
        height, width: sensor size (at most 2048), written as ``% format`` and ``% geometry`` lines.
        encoding, triggers, vectorize, repeat_time_high: see :func:`encode_events`.
        extra_header: more ``% key value`` lines (a ``date`` entry replaces the current date).
    """
    path = Path(path)
    events = np.asarray(events)
    if encoding not in ("evt2", "evt3"):
        raise ValueError(f"write_raw({path}): encoding must be 'evt2' or 'evt3', got {encoding!r}")
    _check(path, events, triggers, height, width)
    words = encode_events(events, encoding, triggers, vectorize, repeat_time_high)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(raw_header(encoding, int(height), int(width), extra_header))
        words.tofile(f)
