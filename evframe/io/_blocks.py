"""The cursor shared by the DAT and HDF5 event readers: events read in blocks, every returned slice checked.

A subclass says how to read one block of :data:`BLOCK` events (raw DAT records, or an HDF5 slice converted to
:data:`EVENT_DTYPE`); this class keeps one block in memory and implements the reader interface on top:
``seek_time``, ``seek_event``, ``load_delta_t``, ``load_n_events``, ``load_all``, ``validate``, ``duration``,
``start_time``, ``current_time``, ``current_position``, ``done``, ``reset``.

Time order: every returned slice is checked (timestamps not going backwards, also against the event before it), and
so are the coordinates (inside the sensor when its size is known), polarities (0 or 1) and times (>= 0). Searching
by time assumes sorted timestamps, so ``seek_time`` relies only on blocks known to be sorted: the blocks from the
start of the file up to the target are checked once per reader (as they are read, for a reader going forward), and
a backward timestamp before the event sought raises :class:`EventFileError` instead of landing on a wrong event
(a bisection over unsorted times can skip events silently).
"""

from __future__ import annotations

import bisect
import os
from pathlib import Path

import numpy as np

from evframe.io._args import INT64_MAX, check_int, clamp_int64
from evframe.io.dtypes import EVENT_DTYPE, concatenate
from evframe.io.errors import EventFileError
from evframe.io.raw_state import first_at_or_after, first_backwards

#: events per block: reads, checks and caching work on whole blocks (64K events: 512 KiB of DAT records)
BLOCK = 1 << 16
_NO_TIME = -(1 << 63)  # "no event before": smaller than any timestamp


class BlockEventReader:
    """Base of :class:`evframe.io.DatReader` and :class:`evframe.io.Hdf5EventsReader`.

    A subclass sets ``path``, ``event_count``, ``height`` and ``width``, calls :meth:`_init_blocks`, and implements
    ``_fetch``, ``_times``, ``_decode``, ``_read_t``, ``_error`` and ``_begin``.
    """

    path: Path
    event_count: int
    height: int | None
    width: int | None

    # --- what a subclass provides ---
    def _fetch(self, b: int):
        """Reads block ``b`` (events ``[b * BLOCK, min((b + 1) * BLOCK, event_count))``) from the file."""
        raise NotImplementedError

    def _times(self, payload) -> np.ndarray:
        """The (k,) integer timestamps of a block read by :meth:`_fetch` (a view)."""
        raise NotImplementedError

    def _decode(self, payload, start: int, stop: int, out: np.ndarray) -> None:
        """Writes events ``[start, stop)`` of a block (local indices) into the EVENT_DTYPE array ``out``."""
        raise NotImplementedError

    def _read_t(self, index: int) -> int:
        """Timestamp of event ``index`` read directly (without replacing the cached block)."""
        raise NotImplementedError

    def _error(self, index: int, message: str) -> EventFileError:
        """The error for event ``index`` (naming the file and where the event is)."""
        raise NotImplementedError

    def _begin(self) -> None:
        """Called before each operation that reads the file (e.g. to check that it did not change)."""

    # --- blocks ---
    def _init_blocks(self) -> None:
        self._num_blocks = -(-self.event_count // BLOCK)
        self._cached_b = -1
        self._cached = None
        # last timestamp of each of the first blocks, for as long as blocks (and the seams between them) are sorted
        self._sorted_last_t: list[int] = []
        self._unsorted_block = -1
        self.reset()

    def _forget_blocks(self) -> None:
        self._cached_b = -1
        self._cached = None

    def _block(self, b: int):
        if b != self._cached_b:
            self._forget_blocks()  # release the old block before reading the next (and forget it if that fails)
            self._cached = self._fetch(b)
            self._cached_b = b
        if b == len(self._sorted_last_t) and b != self._unsorted_block:
            self._mark_sorted(b, self._times(self._cached))
        return self._cached

    def _mark_sorted(self, b: int, t: np.ndarray) -> None:
        """Extends the known-sorted prefix by block ``b`` (timestamps ``t``) when it is sorted and continues it."""
        before = self._sorted_last_t[-1] if b else _NO_TIME
        if len(t) and first_backwards(t, before) < 0:
            self._sorted_last_t.append(int(t[-1]))
        else:
            self._unsorted_block = b

    def _t(self, index: int) -> int:
        b = index // BLOCK
        if b == self._cached_b:
            return int(self._times(self._cached)[index - b * BLOCK])
        return int(self._read_t(index))

    # --- checks ---
    def _check(self, events: np.ndarray, start: int) -> None:
        """Validates ``events`` = events [start, start + len) of the file, also t against event start - 1."""
        before = self._t(start - 1) if start > 0 and len(events) else None
        for offset in range(0, len(events), BLOCK):
            piece = events[offset:offset + BLOCK]
            self._check_piece(piece, start + offset, before)
            before = int(piece["t"][-1])

    def _check_piece(self, events: np.ndarray, start: int, before: int | None) -> None:
        t = events["t"]
        i = int(first_backwards(t, _NO_TIME if before is None else before))
        if i >= 0:
            previous = t[i - 1] if i else before
            raise self._error(start + i, f"timestamps going backwards (t={t[i]} after t={previous})")
        if t[0] < 0:  # sorted: the first is the smallest
            raise self._error(start, f"t={t[0]} out of range, expected >= 0 (us)")
        for field, limit in (("x", self.width), ("y", self.height)):  # uint16: never negative
            if limit is not None and events[field].max() >= limit:
                i = int(np.argmax(events[field] >= limit))
                raise self._error(start + i, f"{field}={events[field][i]} out of range, expected < "
                                             f"{'Width' if field == 'x' else 'Height'} {limit}")
        p = events["p"]
        if np.bitwise_or.reduce(p) & ~1:  # one pass: some p has a bit other than bit 0 set (negatives included)
            i = int(np.argmax((p != 0) & (p != 1)))
            raise self._error(start + i, f"p={p[i]} out of range, expected 0 or 1")

    def _search_unsorted_block(self, b: int, t_us: int) -> int:
        """Seeking into block ``b``, the first that goes backwards (inside, or at its seam with block b - 1): the
        answer when it lies before the backward timestamp, else EventFileError naming that timestamp."""
        t = self._times(self._block(b))
        before = self._sorted_last_t[b - 1] if b else _NO_TIME
        i = int(first_backwards(t, before))
        if i > 0 and t[i - 1] >= t_us:  # t[:i] is sorted and continues the sorted blocks before it
            return b * BLOCK + int(first_at_or_after(t[:i], t_us))
        previous = t[i - 1] if i else before
        raise self._error(b * BLOCK + i, f"timestamps going backwards (t={t[i]} after t={previous})")

    # --- reading ---
    def _collect(self, stop: int | None, end_time: int | None) -> np.ndarray:
        """Events from the cursor up to index ``stop``, or up to the first with t >= ``end_time``; checked, cursor
        moved past them."""
        start = pos = self._pos
        limit = self.event_count if stop is None else stop
        key = None if end_time is None else clamp_int64(end_time)
        pieces = []
        while pos < limit:
            b = pos // BLOCK
            payload = self._block(b)
            t = self._times(payload)
            first, last = pos - b * BLOCK, min(len(t), limit - b * BLOCK)
            cut = last if key is None else first + int(first_at_or_after(t[first:last], key))
            out = np.empty(cut - first, dtype=EVENT_DTYPE)
            self._decode(payload, first, cut, out)
            pieces.append(out)
            pos = b * BLOCK + cut
            if cut < len(t):  # the slice ends inside this block
                break
        events = pieces[0] if len(pieces) == 1 else concatenate(pieces, EVENT_DTYPE)
        self._check(events, start)
        self._pos = pos
        return events

    def _sorted_search(self, t_us: int) -> int:
        """Index of the first event with t >= ``t_us``, searching only blocks known to be sorted from the start."""
        while True:
            known = self._sorted_last_t
            k = bisect.bisect_left(known, t_us)  # the first sorted block whose last event is at or after t_us
            if k < len(known):
                return k * BLOCK + int(first_at_or_after(self._times(self._block(k)), t_us))
            b = len(known)
            if b >= self._num_blocks:
                return self.event_count
            self._block(b)  # checks block b and its seam with block b - 1
            if len(self._sorted_last_t) == b:
                return self._search_unsorted_block(b, t_us)

    # --- cursor ---
    @property
    def duration(self) -> int:
        """Timestamp (us) of the last event; 0 for an empty file."""
        if not self.event_count:
            return 0
        self._begin()
        return self._t(self.event_count - 1)

    @property
    def start_time(self) -> int:
        """Timestamp (us) of the first event; 0 for an empty file."""
        if not self.event_count:
            return 0
        self._begin()
        return self._t(0)

    @property
    def done(self) -> bool:
        """True once every event has been loaded."""
        return self._pos >= self.event_count

    @property
    def current_position(self) -> int:
        """Index of the next event to be loaded."""
        return self._pos

    def reset(self) -> None:
        """Moves the cursor back to the first event and time 0."""
        self._pos = 0
        self.current_time = 0

    def _end_time(self) -> int:
        return self.duration + 1 if self.event_count else 0

    def seek_event(self, n: int) -> None:
        """Moves to event index ``n`` (an int in [0, event_count]); current_time becomes that event's timestamp
        (last timestamp + 1 at the end)."""
        n = check_int(n, "n", 0, self.event_count, self.path)
        self._begin()
        self.current_time = self._t(n) if n < self.event_count else self._end_time()
        self._pos = n

    def seek_time(self, t_us: int) -> None:
        """Moves to the first event with t >= ``t_us`` (an int in [0, 2**63 - 1]; negative times are refused);
        current_time = t_us.

        The timestamps from the start of the file to the target are checked once per reader (for a reader moving
        forward, they already are): a backward timestamp there raises EventFileError naming the event.
        """
        t_us = check_int(t_us, "t_us", 0, INT64_MAX, self.path)
        self._begin()
        self._pos = self._sorted_search(t_us)
        self.current_time = t_us

    def load_delta_t(self, delta_t: int) -> np.ndarray:
        """Returns the events from the cursor with t < current_time + delta_t (an int in [1, 2**63 - 1]), then
        current_time += delta_t."""
        delta_t = check_int(delta_t, "delta_t", 1, INT64_MAX, self.path)
        self._begin()
        end_time = self.current_time + delta_t
        events = self._collect(None, end_time)
        self.current_time = end_time
        return events

    def load_n_events(self, n: int) -> np.ndarray:
        """Returns the next ``n`` events (an int in [0, 2**63 - 1]; fewer at the end of the file).

        current_time becomes min(last t + 1, t of the next event), so events with t < current_time are all loaded.
        """
        n = check_int(n, "n", 0, INT64_MAX, self.path)
        self._begin()
        stop = min(self._pos + n, self.event_count)
        events = self._collect(stop, None)
        if len(events):
            self.current_time = max(self.current_time, int(events["t"][-1]) + 1)
            if stop < self.event_count:
                self.current_time = min(self.current_time, self._t(stop))
        return events

    def load_all(self) -> np.ndarray:
        """Returns every event after checking the whole file; the cursor does not move."""
        self._begin()
        events = np.empty(self.event_count, dtype=EVENT_DTYPE)
        for b in range(self._num_blocks):
            self._forget_blocks()
            payload = self._fetch(b)
            count = len(self._times(payload))
            self._decode(payload, 0, count, events[b * BLOCK:b * BLOCK + count])
        self._forget_blocks()
        self._check(events, 0)
        # the whole file is sorted now: later seeks need no more checks
        self._sorted_last_t = [int(t) for t in events["t"][BLOCK - 1::BLOCK]]
        if len(self._sorted_last_t) < self._num_blocks:
            self._sorted_last_t.append(int(events["t"][-1]))
        return events

    def validate(self) -> None:
        """Checks the whole file block by block (bounded memory); raises EventFileError at the first bad event."""
        self._begin()
        before = None
        for b in range(self._num_blocks):
            payload = self._block(b)
            count = len(self._times(payload))
            events = np.empty(count, dtype=EVENT_DTYPE)
            self._decode(payload, 0, count, events)
            self._check_piece(events, b * BLOCK, before)
            before = int(events["t"][-1])


def reader_path(path: str | os.PathLike) -> Path:
    """``path`` as a Path, after checking that it is an existing file (FileNotFoundError otherwise)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such event file")
    return path
