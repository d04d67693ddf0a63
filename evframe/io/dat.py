"""Prophesee DAT files of CD events: reader (random access by time, reading only what is asked) and writer.

Layout: ASCII header lines starting with ``%`` (``% Height 480``, ``% Width 640``, ``% Date ...``, ``% Version 2``),
ending at the first byte that is not ``%``; then one byte event type (0x00 ``Event2D`` or 0x0C ``EventCD``) and one
byte event size (8); then little-endian records ``uint32 t`` (us), ``uint32 packed`` with x in bits 0-13, y in bits
14-27 and p in bits 28-31.
"""

from __future__ import annotations

import datetime
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import numba
import numpy as np

from evframe.io._args import check_int
from evframe.io._atomic import atomic_path
from evframe.io._blocks import BLOCK, BlockEventReader, reader_path
from evframe.io._stable_file import StableFile
from evframe.io.dtypes import EVENT_DTYPE
from evframe.io.errors import EventFileError

EVENT_TYPES = {0x00: "Event2D", 0x0C: "EventCD"}
RECORD_SIZE = 8
X_BITS = 14  # x and y each take 14 bits, so sensors up to 16384 pixels wide/high
_COORD_MASK = (1 << X_BITS) - 1
_Y_SHIFT = X_BITS
_P_SHIFT = 2 * X_BITS
_MAX_HEADER_LINE = 1 << 16
#: event coordinates are uint16, so no sensor is larger than this (pixels)
MAX_SENSOR_SIZE = 1 << 16
# Events per numpy pass when packing records for writing: temporaries stay in the CPU cache instead of fresh memory
# pages (measured ~1.7x faster than whole-array passes on 10M events).
_BLOCK = 1 << 16


def has_evt_header(head: bytes) -> bool:
    """True when ``head`` starts with a RAW header (``% evt 2.0`` / ``% format EVT3;...``), which is not a DAT."""
    lines = [line.strip().lower() for line in head.split(b"\n") if line.startswith(b"%")]
    return head.startswith(b"%") and any(line.startswith((b"% evt ", b"% format evt")) for line in lines)


def looks_like_dat(head: bytes) -> bool:
    """True when ``head`` (the first bytes of a file) starts like a DAT file.

    A ``%`` header claims the file unless it is a RAW header; a file without header is claimed only if its first
    two bytes are a valid (event type, event size) pair.
    """
    if head.startswith(b"%"):
        return not has_evt_header(head)
    return len(head) >= 2 and head[0] in EVENT_TYPES and head[1] == RECORD_SIZE


@numba.njit(cache=True, nogil=True)
def _unpack(raw, out):
    """Writes record i of ``raw`` ((N, 2) uint32: t, packed) as the two little-endian words of an EVENT_DTYPE event
    in ``out`` ((N, 2) uint64): ``x | y << 16 | p << 32`` and ``t`` (one pass instead of four numpy passes)."""
    for i in range(raw.shape[0]):
        word = np.uint64(raw[i, 1])
        out[i, 0] = (word & _COORD_MASK) | (((word >> _Y_SHIFT) & _COORD_MASK) << 16) | ((word >> _P_SHIFT) << 32)
        out[i, 1] = np.uint64(raw[i, 0])


def decode_records(raw: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Unpacks DAT records.

    Args:
        raw: (N, 2) uint32, columns (t, packed word).
        out: optional contiguous (N,) EVENT_DTYPE array to fill (a new one otherwise).
    Returns:
        (N,) EVENT_DTYPE array (``out`` when given).
    """
    events = np.empty(len(raw), dtype=EVENT_DTYPE) if out is None else out
    if len(raw):
        _unpack(raw, events.view(np.uint64).reshape(-1, 2))
    return events


def _parse_header(path: Path, f) -> tuple[dict[str, str], int]:
    """Reads the ``%`` lines from the current position; returns ({key: value}, offset of the first non-% byte)."""
    header: dict[str, str] = {}
    while True:
        start = f.tell()
        if f.read(1) != b"%":
            f.seek(start)
            return header, start
        line = f.readline(_MAX_HEADER_LINE)
        if not line.endswith(b"\n"):
            raise EventFileError(path, "garbled DAT header: a '%' line is not newline-terminated "
                                       f"within {_MAX_HEADER_LINE} bytes", start)
        try:
            text = line.decode("ascii").strip()
        except UnicodeDecodeError:
            raise EventFileError(path, f"garbled DAT header: non-ASCII bytes in header line {line[:60]!r}",
                                 start) from None
        if not text.isprintable():
            raise EventFileError(path, f"garbled DAT header: control characters in header line {text[:60]!r}", start)
        if text:
            key, _, value = text.partition(" ")
            header[key] = value.strip()


def _header_int(path: Path, header: dict[str, str], key: str) -> int | None:
    """Positive integer value of header ``key`` (case-insensitive), None when the header has no such line."""
    for k, value in header.items():
        if k.lower() == key.lower():
            try:
                number = int(value)
            except ValueError:
                number = 0
            if number <= 0:
                raise EventFileError(path, f"garbled DAT header: '% {k} {value}' should be a positive integer")
            return number
    return None


def _pick_size(path: Path, name: str, from_header: int | None, from_user: int | None) -> int | None:
    """The header's sensor size wins over the user's (with a warning when they disagree).

    Raises:
        TypeError / ValueError: ``from_user`` is not None nor an int in [1, 65536] (coordinates are uint16).
    """
    if from_user is not None:
        from_user = check_int(from_user, name.lower(), 1, MAX_SENSOR_SIZE, path)
    if from_header is not None and from_user is not None and from_header != from_user:
        warnings.warn(f"{path}: header says {name} {from_header} but {from_user} was given; using the header's",
                      stacklevel=3)
    return from_header if from_header is not None else from_user


class DatReader(BlockEventReader):
    """Random-access reader of a DAT file of CD events, reading only what each call returns.

    A cursor (``current_time`` in us and an event position) moves with :meth:`load_delta_t` /
    :meth:`load_n_events`; :meth:`seek_time` / :meth:`seek_event` / :meth:`reset` move it directly. Returned
    arrays have :data:`EVENT_DTYPE` (x, y, p, t int64 us). Every loaded slice is checked (timestamps not going
    backwards, also across the previous record; x/y inside the sensor when its size is known; p in {0, 1});
    :meth:`validate` / :meth:`load_all` check the whole file, and :meth:`seek_time` the records before its target
    (see :mod:`evframe.io._blocks`). Records are read with positional reads (no memory map), so a file truncated or
    rewritten while the reader is open raises EventFileError instead of crashing the process. The reader is
    picklable (the file is reopened, and must not have changed).

    Attributes:
        path: the file. height, width: sensor size from the header, else the user's, else None.
        header: {key: value} of the ``%`` lines. event_count: complete records. dangling_bytes: bytes of a
        truncated last record that are ignored (a warning is issued).
    """

    def __init__(self, path: str | os.PathLike, height: int | None = None, width: int | None = None) -> None:
        self.path = reader_path(path)
        self._file = StableFile(self.path)
        file_size = self._file.size
        if file_size == 0:
            raise EventFileError(self.path, "empty file, expected a DAT header or event type/size bytes")
        with open(self.path, "rb") as f:
            self.header, type_offset = _parse_header(self.path, f)
            type_size = f.read(2)
        self._check_type_size(type_size, type_offset)
        self.event_type = EVENT_TYPES[type_size[0]]
        self._body_offset = type_offset + 2
        self.event_count, self.dangling_bytes = divmod(file_size - self._body_offset, RECORD_SIZE)
        if self.dangling_bytes:
            warnings.warn(f"{self.path}: truncated last record, ignoring its {self.dangling_bytes} dangling bytes",
                          stacklevel=2)
        self.height = _pick_size(self.path, "Height", _header_int(self.path, self.header, "Height"), height)
        self.width = _pick_size(self.path, "Width", _header_int(self.path, self.header, "Width"), width)
        self._init_blocks()

    def _check_type_size(self, type_size: bytes, offset: int) -> None:
        known = ", ".join(f"0x{k:02X} {v}" for k, v in EVENT_TYPES.items())
        if len(type_size) < 2:
            raise EventFileError(self.path, "file ends before the event type and size bytes", offset)
        ev_type, ev_size = type_size
        if not self.header and (ev_type not in EVENT_TYPES or ev_size != RECORD_SIZE):
            raise EventFileError(self.path, f"not a DAT file: no '%' header and the first bytes 0x{ev_type:02X} "
                                            f"0x{ev_size:02X} are not an event type ({known}) and size "
                                            f"({RECORD_SIZE})", offset)
        if ev_type not in EVENT_TYPES:
            raise EventFileError(self.path, f"event type byte 0x{ev_type:02X} after the header, expected one of "
                                            f"{known}", offset)
        if ev_size != RECORD_SIZE:
            raise EventFileError(self.path, f"event size {ev_size} bytes, expected {RECORD_SIZE}", offset + 1)

    # --- blocks of records (see BlockEventReader) ---
    def _offset(self, index: int) -> int:
        return self._body_offset + RECORD_SIZE * index

    def _fetch(self, b: int) -> np.ndarray:
        """(k, 2) uint32 records (t, packed) of block ``b``."""
        start = b * BLOCK
        count = min(BLOCK, self.event_count - start)
        return self._file.read(self._offset(start), 2 * count, "<u4").reshape(count, 2)

    def _times(self, payload: np.ndarray) -> np.ndarray:
        return payload[:, 0]

    def _decode(self, payload: np.ndarray, start: int, stop: int, out: np.ndarray) -> None:
        decode_records(payload[start:stop], out)

    def _read_t(self, index: int) -> int:
        return int(self._file.read(self._offset(index), 1, "<u4")[0])

    def _error(self, index: int, message: str) -> EventFileError:
        return EventFileError(self.path, f"record {index}: {message}", self._offset(index))

    def _begin(self) -> None:
        self._file.check()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_cached"] = None
        state["_cached_b"] = -1
        return state

    def close(self) -> None:
        """Closes the file (it is reopened if the reader is used again)."""
        self._forget_blocks()
        self._file.close()

    def __enter__(self) -> DatReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"DatReader('{self.path}', {self.event_type}, events={self.event_count}, height={self.height}, "
                f"width={self.width}, current_time={self.current_time})")


def _check_for_writing(path: Path, events: np.ndarray, height: int, width: int) -> None:
    """Checks the fields and sensor size (the values are checked block by block while writing)."""
    names = events.dtype.names or ()
    missing = [f for f in ("x", "y", "p", "t") if f not in names]
    if missing or events.ndim != 1:
        raise ValueError(f"write_dat({path}): events should be a 1-D array with integer fields x, y, p, t; got "
                         f"dtype {events.dtype} shape {events.shape} (missing {missing})")
    for f in ("x", "y", "p", "t"):
        if events.dtype[f].kind not in "iu":
            raise ValueError(f"write_dat({path}): field {f} has dtype {events.dtype[f]}, expected an integer type")
    for name, size in (("height", height), ("width", width)):
        if not isinstance(size, (int, np.integer)) or not 0 < size <= 1 << X_BITS:
            raise ValueError(f"write_dat({path}): {name}={size!r}, expected an int in [1, {1 << X_BITS}]")


def _pack_block(path: Path, block: np.ndarray, start: int, previous_t: int, height: int, width: int) -> np.ndarray:
    """Checks events [start, start + len) (values in range, t sorted, also after ``previous_t``); returns (n, 2)
    uint32 records."""
    for field, low, high in (("x", 0, width - 1), ("y", 0, height - 1), ("p", 0, 1), ("t", 0, 2**32 - 1)):
        values = block[field]
        if values.min() < low or values.max() > high:
            i = int(np.argmax((values < low) | (values > high)))
            raise ValueError(f"write_dat({path}): event {start + i} has {field}={values[i]}, expected "
                             f"[{low}, {high}]")
    t = block["t"]
    backwards = np.flatnonzero(np.diff(t, prepend=previous_t) < 0)
    if len(backwards):
        i = int(backwards[0])
        before = t[i - 1] if i else previous_t
        raise ValueError(f"write_dat({path}): events not sorted by t (event {start + i}: t={t[i]} after t={before})")
    records = np.empty((len(block), 2), dtype="<u4")
    records[:, 0] = t
    records[:, 1] = (block["x"].astype("<u4") | (block["y"].astype("<u4") << _Y_SHIFT)
                     | (block["p"].astype("<u4") << _P_SHIFT))
    return records


def write_dat(path: str | os.PathLike, events: np.ndarray, height: int, width: int,
              extra_header: Mapping[str, object] | None = None) -> None:
    """Writes CD events as a DAT file (Event2D, Version 2), atomically.

    Args:
        path: destination (replaced if it exists).
        events: (N,) structured array with integer fields x, y, p, t (e.g. EVENT_DTYPE), sorted by t,
            0 <= x < width, 0 <= y < height, p in {0, 1}, 0 <= t < 2**32 us.
        height, width: sensor size, written as ``% Height`` / ``% Width``.
        extra_header: more ``% key value`` lines; a ``Date`` entry replaces the current date (reproducible files).
    """
    path = Path(path)
    events = np.asarray(events)
    _check_for_writing(path, events, height, width)
    extra = dict(extra_header or {})
    lines = {"Date": extra.pop("Date", datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")), "Version": 2,
             "Height": int(height), "Width": int(width)}
    for key, value in extra.items():
        if key in lines or not str(key).isidentifier():
            raise ValueError(f"write_dat({path}): extra header key {key!r} is reserved or not a plain word")
        lines[key] = value
    for key, value in lines.items():
        if not (str(value).isascii() and str(value).isprintable()):
            raise ValueError(f"write_dat({path}): header value of {key!r} must be single-line ASCII, got {value!r}")
    header = "".join(f"% {k} {v}\n" for k, v in lines.items())
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(header.encode("ascii") + bytes([0x00, RECORD_SIZE]))
        previous_t = 0
        for start in range(0, len(events), _BLOCK):
            block = events[start:start + _BLOCK]
            _pack_block(path, block, start, previous_t, height, width).tofile(f)
            previous_t = int(block["t"][-1])
