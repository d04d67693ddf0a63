"""Prophesee RAW files (EVT 2.0 / EVT 3.0): a streaming reader with the DatReader interface.

The file is read into one reused buffer (no memory map) and decoded in *segments* of a fixed number of words by the
numba kernels of :mod:`evframe.io.raw_evt2` / :mod:`evframe.io.raw_evt3`. The decoder state (time base, wraps, current
row, vector base, ...) at the start of every segment is kept as a checkpoint the first time the decoder gets there,
so that

- reading forward never decodes a word twice, and memory stays bounded (one segment of events at a time);
- seeking goes back to the checkpoint before the wanted time or event and decodes one segment, and seeking forward
  past what was decoded scans ahead (decoding, keeping only the checkpoints);
- ``event_count`` / ``duration`` scan the whole file once (the format has no index).

Bad data is decoded as far as it is valid: dropped or skipped words are counted in ``reader.issues`` and reported
with a warning naming the file, the byte offset of the first occurrence and the count (see
:mod:`evframe.io.raw_state`); :meth:`RawReader.validate` turns them into an :class:`EventFileError` instead.
A file truncated or rewritten while a reader has it open raises EventFileError (see :mod:`evframe.io._stable_file`):
the decoders never write past the end of their output, and reads never touch pages that no longer exist.
"""

from __future__ import annotations

import bisect
import os
import warnings
from dataclasses import dataclass

import numpy as np

from evframe.io import raw_evt2, raw_evt3
from evframe.io._args import INT64_MAX, check_int, clamp_int64
from evframe.io._blocks import reader_path
from evframe.io._stable_file import StableFile
from evframe.io.dat import _pick_size
from evframe.io.dtypes import EVENT_DTYPE, TRIGGER_DTYPE, concatenate
from evframe.io.errors import EventFileError
from evframe.io.raw_header import parse_raw_header
from evframe.io.raw_state import ISSUE_TEXT, NUM_ISSUES, TIME_UNSORTED, first_at_or_after, new_issues

#: words decoded per kernel call: 256K words are 1 MiB of EVT 2.0 / 512 KiB of EVT 3.0 input (larger segments
#: amortise the per-call overhead: 130 -> 170 Mev/s from 64K to 256K words on EVT 2.0)
SEGMENT_WORDS = 1 << 18
#: sensors are at most 2048 pixels wide / high (11-bit addresses): the bound used when the size is unknown
MAX_SIZE = 2048
#: segments whose problems are reported one by one; later ones are summed up when the end of the file is reached
_WARNED_SEGMENTS = 3
_CODECS = {"evt2": raw_evt2, "evt3": raw_evt3}


@dataclass(frozen=True)
class _Checkpoint:
    """Decoder state at the start of a segment, and what came before it."""

    state: np.ndarray
    events_before: int
    triggers_before: int
    t_max_before: int  # latest event or trigger time before the segment, -1 if none


class RawReader:
    """Random-access reader of a Prophesee RAW file (EVT 2.0 or 3.0), streaming it in segments.

    Same interface as :class:`evframe.io.DatReader`: a cursor (``current_time`` in us and an event position) moves
    with :meth:`load_delta_t` / :meth:`load_n_events`; :meth:`seek_time` / :meth:`seek_event` / :meth:`reset` move it.
    Events are (N,) :data:`EVENT_DTYPE` arrays with the times of the stream (us since the camera started, so the
    first event may be far from 0; see ``start_time``). External triggers are not mixed with CD events:
    :meth:`get_ext_trigger_events` returns those passed by the cursor (Metavision's RawReader names),
    :meth:`load_all_triggers` all of them. The reader is picklable (checkpoints are kept, the map is reopened).

    Attributes:
        path: the file. header: {key: value} of the ``%`` lines. encoding: "evt2" or "evt3".
        height, width: sensor size from the header (else the user's, else None).
        word_count: complete words after the header. dangling_bytes: bytes of a truncated last word (ignored).
        issues: int64 (NUM_ISSUES, 2): per problem kind (:mod:`evframe.io.raw_state`), the count and the word index
            of the first occurrence, over the part of the file decoded so far.
    """

    def __init__(self, path: str | os.PathLike, height: int | None = None, width: int | None = None,
                 segment_words: int = SEGMENT_WORDS) -> None:
        self.path = reader_path(path)
        self._file = StableFile(self.path)  # the size and times that later reads are checked against
        info = parse_raw_header(self.path)
        self.header = info.fields
        self.encoding = info.encoding
        self._body_offset = info.body_offset
        word_bytes = self._codec.WORD_BYTES
        self.word_count, self.dangling_bytes = divmod(self._file.size - info.body_offset, word_bytes)
        if self.dangling_bytes:
            warnings.warn(f"{self.path}: truncated last {word_bytes}-byte word, ignoring its {self.dangling_bytes} "
                          f"dangling bytes (at byte {self._byte(self.word_count)})", stacklevel=2)
        if self.word_count == 0:
            warnings.warn(f"{self.path}: no event data after the RAW header (at byte {info.body_offset})",
                          stacklevel=2)
        self.height = _pick_size(self.path, "Height", info.height, height)
        self.width = _pick_size(self.path, "Width", info.width, width)
        self._segment_words = check_int(segment_words, "segment_words", 1, 1 << 30, self.path)
        self._num_segments = -(-self.word_count // self._segment_words)
        self.issues = new_issues()
        self._warned_segments = 0
        self._unreported = new_issues()
        self._checkpoints = [_Checkpoint(self._codec.new_state(), 0, 0, -1)]
        # the checkpoints' events_before and t_max_before (both non-decreasing), for bisection
        self._cp_events = [0]
        self._cp_t_max = [-1]
        self._t_max_events = -1
        self._word_buffer: np.ndarray | None = None
        self._scratch: tuple[np.ndarray, np.ndarray] | None = None
        self.reset()

    # ------------------------------------------------------------------------------------------- file and buffers
    @property
    def _codec(self):
        """The decoder module of the encoding (a property: modules do not pickle)."""
        return _CODECS[self.encoding]

    def _byte(self, word_index: int) -> int:
        return self._body_offset + int(word_index) * self._codec.WORD_BYTES

    def _segment(self, k: int) -> np.ndarray:
        """The words of segment ``k``, read into the reader's word buffer (valid until the next read)."""
        if self._word_buffer is None:
            self._word_buffer = np.empty(self._segment_words, dtype="<u4" if self._codec.WORD_BYTES == 4 else "<u2")
        start = k * self._segment_words
        count = max(0, min(self._segment_words, self.word_count - start))
        self._file.check()
        return self._file.read_into(self._byte(start), self._word_buffer[:count])

    def _buffers(self) -> tuple[np.ndarray, np.ndarray]:
        """One segment's worth of output (allocated once; pages are only touched as events are written)."""
        if self._scratch is None:
            self._scratch = (np.empty(self._segment_words * self._codec.MAX_EVENTS_PER_WORD, dtype=EVENT_DTYPE),
                             np.empty(self._segment_words, dtype=TRIGGER_DTYPE))
        return self._scratch

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_word_buffer"] = None
        state["_scratch"] = None
        state["_seg_events"] = None  # re-decoded on demand
        return state

    def close(self) -> None:
        """Closes the file and releases the buffers (reopened if the reader is used again)."""
        self._file.close()
        self._word_buffer = None
        self._scratch = None
        self._seg_events = None

    def __enter__(self) -> RawReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"RawReader('{self.path}', {self.encoding}, words={self.word_count}, height={self.height}, "
                f"width={self.width}, current_time={self.current_time})")

    # ---------------------------------------------------------------------------------------------- decoding
    def _decode(self, k: int, out: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
        """Decodes segment ``k`` (its checkpoint must exist) into the reader's buffers, or into ``out`` (events,
        triggers) arrays large enough for the segment's output.

        Returns views (events, triggers) — of the buffers, valid until the next decode — and whether the events are
        sorted by t. The first decode of a segment records the next checkpoint and counts the segment's problems.
        """
        cp = self._checkpoints[k]
        frontier = k == len(self._checkpoints) - 1
        issues = self.issues if frontier else new_issues()
        before = issues.copy()
        state = cp.state.copy()
        events, triggers = self._buffers() if out is None else out
        start = k * self._segment_words
        words = self._segment(k)
        n, m, done = self._codec.decode(words, start, state, issues, self.width or MAX_SIZE, self.height or MAX_SIZE,
                                        _packed(events, 2), _packed(triggers, 3))
        if done < len(words):  # only an output sized by an earlier pass can fill up: the data differ from then
            raise EventFileError(self.path, f"segment {k} decodes to more events than when it was first read: the "
                                            "file changed while a reader had it open", self._byte(start + done))
        events, triggers = events[:n], triggers[:m]
        is_sorted = issues[TIME_UNSORTED, 0] == before[TIME_UNSORTED, 0]
        if frontier:
            t_max = cp.t_max_before
            if n:
                # the decoder's running maximum of event times (no pass over the events)
                self._t_max_events = max(self._t_max_events, int(state[self._codec.S_LAST_T]))
                t_max = max(t_max, self._t_max_events)
            if m:
                t_max = max(t_max, int(triggers["t"].max()))
            self._checkpoints.append(_Checkpoint(state, cp.events_before + n, cp.triggers_before + m, t_max))
            self._cp_events.append(cp.events_before + n)
            self._cp_t_max.append(t_max)
            self._report(before, k)
        return events, triggers, is_sorted

    def _report(self, before: np.ndarray, k: int) -> None:
        """Warns about the problems segment ``k`` added (the first few segments), or sums them up at the end."""
        new = self.issues[:, 0] - before[:, 0]
        if new.any():
            if self._warned_segments < _WARNED_SEGMENTS:
                self._warned_segments += 1
                parts = []
                for kind in np.flatnonzero(new):
                    first = self.issues[kind, 1] if before[kind, 0] == 0 else -1
                    where = f" (first at byte {self._byte(first)})" if first >= 0 else ""
                    what, done = ISSUE_TEXT[int(kind)]
                    parts.append(f"{int(new[kind])} {what} {done}{where}")
                more = " (problems further on are summed up at the end of the file)" \
                    if self._warned_segments == _WARNED_SEGMENTS else ""
                warnings.warn(f"{self.path}: " + "; ".join(parts) + more, stacklevel=4)
            else:
                self._unreported[:, 0] += new
        if k == self._num_segments - 1 and self._unreported[:, 0].any():
            totals = [f"{int(self.issues[kind, 0])} {ISSUE_TEXT[kind][0]} {ISSUE_TEXT[kind][1]}"
                      for kind in range(NUM_ISSUES) if self.issues[kind, 0]]
            warnings.warn(f"{self.path}: in the whole file: " + "; ".join(totals), stacklevel=4)
            self._unreported[:] = 0

    def _scan_until(self, done) -> None:
        """Decodes new segments (keeping only their checkpoints) until ``done(last checkpoint)`` or the end."""
        scanned = False
        while len(self._checkpoints) <= self._num_segments and not done(self._checkpoints[-1]):
            self._decode(len(self._checkpoints) - 1)
            scanned = True
        if scanned:
            self._seg_events = None  # the buffers were reused: the current segment is decoded again when needed

    @property
    def _end(self) -> _Checkpoint:
        self._scan_until(lambda cp: False)
        return self._checkpoints[-1]

    # ------------------------------------------------------------------------------------------------ summary
    @property
    def event_count(self) -> int:
        """Number of CD events in the file (scans the whole file the first time)."""
        return self._end.events_before

    @property
    def trigger_count(self) -> int:
        """Number of external trigger events in the file (scans the whole file the first time)."""
        return self._end.triggers_before

    @property
    def duration(self) -> int:
        """Latest event timestamp (us) in the file; 0 without events (scans the whole file the first time)."""
        self._scan_until(lambda cp: False)
        return max(self._t_max_events, 0)

    @property
    def start_time(self) -> int:
        """Timestamp (us) of the first event (0 without events); cameras often start far from 0."""
        self._scan_until(lambda cp: cp.events_before > 0)
        if self._cp_events[-1] == 0:
            return 0
        k = bisect.bisect_right(self._cp_events, 0) - 1  # the segment holding the first event
        events, _, _ = self._decode(k)
        self._seg_events = None
        return int(events["t"][0])

    # -------------------------------------------------------------------------------------------------- cursor
    @property
    def done(self) -> bool:
        """True once every event has been loaded."""
        return self._remaining() is None

    @property
    def current_position(self) -> int:
        """Index of the next event to be loaded."""
        return self._pos

    def reset(self) -> None:
        """Moves the cursor back to the first event and time 0."""
        self._seg = -1
        self._seg_events = None
        self._seg_sorted = True
        self._seg_off = 0
        self._pos = 0
        self.current_time = 0
        self._trig_from = -1
        self._triggers_pending: list[np.ndarray] = []
        self._triggers_passed: list[np.ndarray] = []

    def _load_segment(self, k: int) -> None:
        events, triggers, is_sorted = self._decode(k)
        self._seg = k
        self._seg_events, self._seg_sorted = events, is_sorted
        self._triggers_pending.append(triggers[triggers["t"] >= self._trig_from].copy())

    def _remaining(self) -> np.ndarray | None:
        """Events of the current segment not loaded yet, moving on to the next segment(s); None at the end."""
        while True:
            if self._seg >= self._num_segments:  # positioned at the end (seek_event(event_count))
                return None
            if self._seg >= 0 and self._seg_events is None:  # decoded again after a scan reused the buffers
                events, _, self._seg_sorted = self._decode(self._seg)
                self._seg_events = events
            if self._seg >= 0 and self._seg_off < len(self._seg_events):
                return self._seg_events[self._seg_off:]
            if self._seg + 1 >= self._num_segments:
                return None
            self._load_segment(self._seg + 1)
            self._seg_off = 0

    def _first_at_or_after(self, events: np.ndarray, t_us: int, is_sorted: bool) -> int:
        t = events["t"]
        t_us = clamp_int64(t_us)  # current_time + delta_t may pass the int64 range; no event time does
        if is_sorted:
            return int(first_at_or_after(t, t_us))
        later = t >= t_us
        return int(np.argmax(later)) if later.any() else len(t)

    def _take(self, k: int) -> np.ndarray:
        piece = self._seg_events[self._seg_off:self._seg_off + k]
        self._seg_off += k
        self._pos += k
        return piece

    def seek_time(self, t_us: int) -> None:
        """Moves to the first event in stream order with t >= ``t_us`` (an int in [0, 2**63 - 1]; negative times
        are refused), decoding from the checkpoint before it; current_time = t_us."""
        t_us = check_int(t_us, "t_us", 0, INT64_MAX, self.path)
        self._scan_until(lambda cp: cp.t_max_before >= t_us)
        # the last segment whose preceding events are all earlier than t_us
        k = max(bisect.bisect_left(self._cp_t_max, t_us) - 1, 0)
        self._jump(k, t_us)
        if self._seg < self._num_segments:
            skip = self._first_at_or_after(self._seg_events, t_us, self._seg_sorted)
            self._seg_off = skip
            self._pos = self._checkpoints[k].events_before + skip
        self.current_time = t_us

    def seek_event(self, n: int) -> None:
        """Moves to event index ``n`` (an int in [0, event_count]); current_time becomes that event's timestamp
        (last timestamp + 1 at the end)."""
        count = self.event_count
        n = check_int(n, "n", 0, count, self.path)
        if n == count:
            self._jump(self._num_segments, 0)
            self._pos = n
            self.current_time = self.duration + 1 if count else 0
            return
        k = bisect.bisect_right(self._cp_events, n) - 1  # the segment holding event n
        self._jump(k, -1)
        self._seg_off = n - self._checkpoints[k].events_before
        self._pos = n
        self.current_time = int(self._seg_events["t"][self._seg_off])
        pending = self._triggers_pending[0]
        self._triggers_pending = [pending[pending["t"] >= self.current_time]]

    def _jump(self, k: int, trig_from: int) -> None:
        """Positions the cursor at the start of segment ``k`` (decoded), triggers counted from ``trig_from`` us."""
        self.reset()
        self._trig_from = trig_from
        if k < self._num_segments:
            self._load_segment(k)
        else:
            self._seg = self._num_segments
        self._pos = self._checkpoints[k].events_before

    def load_delta_t(self, delta_t: int) -> np.ndarray:
        """Returns the events from the cursor with t < current_time + delta_t (an int in [1, 2**63 - 1]), then
        current_time += delta_t."""
        delta_t = check_int(delta_t, "delta_t", 1, INT64_MAX, self.path)
        end_time = self.current_time + delta_t
        pieces = []
        while (rest := self._remaining()) is not None:
            k = self._first_at_or_after(rest, end_time, self._seg_sorted)
            if k < len(rest):  # the window ends in this segment
                pieces.append(self._take(k))
                break
            pieces.append(self._take(k).copy())  # the next segment reuses the buffers
        self.current_time = end_time
        return _owned(pieces)

    def load_n_events(self, n: int) -> np.ndarray:
        """Returns the next ``n`` events (an int in [0, 2**63 - 1]; fewer at the end of the file).

        current_time becomes min(last t + 1, t of the next event), so events with t < current_time are all loaded.
        """
        pieces, wanted = [], check_int(n, "n", 0, INT64_MAX, self.path)
        while wanted > 0 and (rest := self._remaining()) is not None:
            take = min(wanted, len(rest))
            piece = self._take(take)
            pieces.append(piece if take < len(rest) else piece.copy())  # copied if the buffers are reused next
            wanted -= take
        events = _owned(pieces)
        if len(events):
            self.current_time = max(self.current_time, int(events["t"][-1]) + 1)
            rest = self._remaining()
            if rest is not None:
                self.current_time = min(self.current_time, int(rest["t"][0]))
        return events

    def load_all(self) -> np.ndarray:
        """Returns every CD event of the file; the cursor does not move."""
        return self._load_everything()[0]

    def load_all_triggers(self) -> np.ndarray:
        """Returns every external trigger event (:data:`TRIGGER_DTYPE`) of the file; the cursor does not move."""
        return self._load_everything()[1]

    def _load_everything(self) -> tuple[np.ndarray, np.ndarray]:
        """Every event and trigger, decoded straight into the returned arrays (no per-segment copies)."""
        if len(self._checkpoints) > self._num_segments:  # scanned before: the exact sizes are known
            end = self._checkpoints[-1]
            events = np.empty(end.events_before, dtype=EVENT_DTYPE)
            triggers = np.empty(end.triggers_before, dtype=TRIGGER_DTYPE)
            for k in range(self._num_segments):
                cp, nxt = self._checkpoints[k], self._checkpoints[k + 1]
                expected = (nxt.events_before - cp.events_before, nxt.triggers_before - cp.triggers_before)
                ev, tr, _ = self._decode(k, (events[cp.events_before:nxt.events_before],
                                             triggers[cp.triggers_before:nxt.triggers_before]))
                if (len(ev), len(tr)) != expected:  # the exact-size output was not filled: the data differ
                    raise EventFileError(self.path, f"segment {k} decodes to {len(ev)} events and {len(tr)} triggers, "
                                                    f"{expected[0]} and {expected[1]} when first read: the file "
                                                    "changed while a reader had it open",
                                         self._byte(k * self._segment_words))
            return events, triggers
        # one pass (recording the checkpoints as it goes) into arrays sized for one event per word, grown if a
        # segment could overflow them; np.empty pages never written cost no memory
        room = self._segment_words * self._codec.MAX_EVENTS_PER_WORD
        events = np.empty(self.word_count + room, dtype=EVENT_DTYPE)
        triggers = np.empty(self._segment_words, dtype=TRIGGER_DTYPE)
        n = m = 0
        for k in range(self._num_segments):
            events = _room_for(events, n, room)
            triggers = _room_for(triggers, m, self._segment_words)
            ev, tr, _ = self._decode(k, (events[n:], triggers[m:]))
            n, m = n + len(ev), m + len(tr)
        return events[:n], triggers[:m]

    def get_ext_trigger_events(self) -> np.ndarray:
        """External triggers with t < current_time decoded since the last seek / reset / clear, in order."""
        pending = _concatenate(self._triggers_pending, TRIGGER_DTYPE)
        passed = pending["t"] < self.current_time
        self._triggers_passed.append(pending[passed])
        self._triggers_pending = [pending[~passed]]
        return _concatenate(self._triggers_passed, TRIGGER_DTYPE)

    def clear_ext_trigger_events(self) -> None:
        """Forgets the triggers returned by :meth:`get_ext_trigger_events` so far."""
        self.get_ext_trigger_events()
        self._triggers_passed = []

    def validate(self) -> None:
        """Decodes the whole file; raises EventFileError naming the first problem's kind and byte offset."""
        self._scan_until(lambda cp: False)
        found = [(int(self.issues[kind, 1]), kind) for kind in range(NUM_ISSUES) if self.issues[kind, 0]]
        if found:
            first, kind = min(found)
            what, _ = ISSUE_TEXT[kind]
            raise EventFileError(self.path, f"{int(self.issues[kind, 0])} {what}", self._byte(first))

    @property
    def issue_counts(self) -> dict[str, int]:
        """{problem: count} over the part of the file decoded so far (empty when all is well)."""
        return {ISSUE_TEXT[kind][0]: int(self.issues[kind, 0]) for kind in range(NUM_ISSUES) if self.issues[kind, 0]}


def _room_for(array: np.ndarray, used: int, needed: int) -> np.ndarray:
    """``array`` if it has ``needed`` free items after the first ``used``, else a larger copy of those."""
    if len(array) - used >= needed:
        return array
    grown = np.empty(max(2 * len(array), used + needed), dtype=array.dtype)
    grown[:used] = array[:used]
    return grown


def _packed(records: np.ndarray, words: int) -> np.ndarray:
    """A contiguous record array seen as (N, words) uint64: the decoders write whole little-endian records."""
    return records.view(np.uint64).reshape(-1, words)


def _owned(pieces: list[np.ndarray]) -> np.ndarray:
    """One new array holding ``pieces`` (the last may be a view of the reader's buffers)."""
    if len(pieces) == 1:
        return pieces[0].copy()
    return _concatenate(pieces)


def _concatenate(pieces: list[np.ndarray], dtype: np.dtype = EVENT_DTYPE) -> np.ndarray:
    """Joins arrays the caller owns into one of exactly ``dtype`` (a single one is returned as is)."""
    pieces = [p for p in pieces if len(p)]
    if not pieces:
        return np.zeros(0, dtype=dtype)
    return pieces[0] if len(pieces) == 1 else concatenate(pieces, dtype)
