"""HDF5 event files as written by Metavision's HDF5 event file writer (not to be confused with HDF5 *tensor* files).

Layout: ``/CD/events``, a chunked 1-D compound dataset ``x u2, y u2, p i2, t i8`` (Metavision's CD dtype, the same
as :data:`EVENT_DTYPE`) sorted by t; ``/CD/indexes``, compound ``id u8, ts i8``, one entry per 2 ms of recording
(entry k: an event index at or before the first event with ``t - first t >= k * 2000`` us; its ``offset`` attribute
is minus the first event's time); ``/EXT_TRIGGER/events`` (``p i2, t i8, id i2``) and ``/EXT_TRIGGER/indexes``;
root attributes are strings (``version``, ``geometry`` "WxH", camera metadata...).

Metavision compresses ``/CD/events`` with its ECF codec (HDF5 filter 0x8ECF), available only as Prophesee's
``hdf5_ecf`` plugin: without it such files cannot be read, and the reader says so up front. Uncompressed, gzip and
the filters of ``hdf5plugin`` (blosc, lz4, zstd, ...) are read directly.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers blosc, lz4, zstd, ... with HDF5)
import numpy as np

from evframe.io._atomic import atomic_path
from evframe.io.dat import _pick_size
from evframe.io.dtypes import EVENT_DTYPE, TRIGGER_DTYPE
from evframe.io.errors import EventFileError

CD_EVENTS = "CD/events"
CD_INDEXES = "CD/indexes"
TRIGGER_EVENTS = "EXT_TRIGGER/events"
TRIGGER_INDEXES = "EXT_TRIGGER/indexes"
INDEX_PERIOD_US = 2000
INDEX_DTYPE = np.dtype([("id", "<u8"), ("ts", "<i8")])
ECF_FILTER_ID = 0x8ECF
#: Metavision's chunk size (events)
CHUNK_EVENTS = 16384
#: events read per block while streaming (whole chunks)
_BLOCK = 4 * CHUNK_EVENTS


def is_hdf5_event_file(path: str | os.PathLike) -> bool:
    """True when ``path`` is an HDF5 file holding ``/CD/events`` (an event file, not a tensor file)."""
    try:
        with h5py.File(path, "r") as f:
            return CD_EVENTS in f
    except OSError:
        return False


def _attr_text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _geometry(attrs: Mapping) -> tuple[int | None, int | None]:
    """(height, width) from the root attributes ``geometry`` "WxH", ``format`` "...;height=H;width=W" or
    ``height`` / ``width``; (None, None) when absent."""
    text = {k.lower(): _attr_text(v) for k, v in attrs.items()}
    try:
        if "geometry" in text and "x" in text["geometry"].lower():
            w, _, h = text["geometry"].lower().partition("x")
            return int(h), int(w)
        if "format" in text:
            params = dict(p.split("=", 1) for p in text["format"].split(";")[1:] if "=" in p)
            if "height" in params and "width" in params:
                return int(params["height"]), int(params["width"])
        if "height" in text and "width" in text:
            return int(text["height"]), int(text["width"])
    except ValueError:
        return None, None
    return None, None


def _check_filters(path: Path, dset: h5py.Dataset) -> None:
    """Fails up front, and clearly, when a compression filter of ``dset`` is not available."""
    plist = dset.id.get_create_plist()
    for i in range(plist.get_nfilters()):
        code, _, _, name = plist.get_filter(i)
        if h5py.h5z.filter_avail(code):
            continue
        if code == ECF_FILTER_ID:
            raise EventFileError(path, f"/{dset.name.lstrip('/')} is compressed with Prophesee's ECF codec (HDF5 "
                                       "filter 0x8ECF), which is not available here: install Prophesee's hdf5_ecf "
                                       "plugin and set HDF5_PLUGIN_PATH to its folder, or convert the recording to "
                                       "RAW/DAT (metavision_file_to_dat) or to an uncompressed/gzip HDF5 file")
        label = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
        raise EventFileError(path, f"/{dset.name.lstrip('/')} uses HDF5 filter {code} ({label!r}), which is not "
                                   "available (evframe reads uncompressed, gzip and hdf5plugin's filters)")


def _as_events(block: np.ndarray) -> np.ndarray:
    out = np.empty(len(block), dtype=EVENT_DTYPE)
    for name in ("x", "y", "p", "t"):
        out[name] = block[name]
    return out


class Hdf5EventsReader:
    """Random-access reader of an HDF5 event file, with the :class:`evframe.io.DatReader` interface.

    Reads ``/CD/events`` block by block (whole chunks), so memory stays bounded; seeking uses ``/CD/indexes`` (when
    present and consistent) to start a galloping search over the timestamps. Events are returned as
    :data:`EVENT_DTYPE`; triggers with :meth:`load_all_triggers`. Picklable (the file is reopened).

    Attributes:
        path, height, width (root ``geometry`` attribute, else the user's, else None), attrs ({name: text} of the
        root attributes), event_count.
    """

    def __init__(self, path: str | os.PathLike, height: int | None = None, width: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such event file")
        self._file: h5py.File | None = None
        f = self._h5
        if CD_EVENTS not in f:
            raise EventFileError(self.path, f"HDF5 file without /{CD_EVENTS}: not a Metavision HDF5 event file "
                                            "(tensor files are read by evframe.preprocess.h5_tensors)")
        dset = f[CD_EVENTS]
        names = dset.dtype.names or ()
        missing = [n for n in ("x", "y", "p", "t") if n not in names]
        if dset.ndim != 1 or missing:
            raise EventFileError(self.path, f"/{CD_EVENTS} should be a 1-D compound dataset with fields x, y, p, t; "
                                            f"got shape {dset.shape} and dtype {dset.dtype}")
        _check_filters(self.path, dset)
        self.attrs = {k: _attr_text(v) for k, v in f.attrs.items()}
        file_h, file_w = _geometry(f.attrs)
        self.height = _pick_size(self.path, "Height", file_h, height)
        self.width = _pick_size(self.path, "Width", file_w, width)
        self.event_count = int(dset.shape[0])
        self._index = self._read_index(f)
        self._block_start = -1
        self._block: np.ndarray | None = None
        self.reset()

    # --- file handle (reopened lazily after unpickling, in each process) ---
    @property
    def _h5(self) -> h5py.File:
        if self._file is None:
            try:
                self._file = h5py.File(self.path, "r")
            except OSError as err:
                raise EventFileError(self.path, f"cannot open as HDF5: {err}") from None
        return self._file

    @property
    def _events(self) -> h5py.Dataset:
        return self._h5[CD_EVENTS]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_file"] = None
        state["_block"] = None
        state["_block_start"] = -1
        return state

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = None
        self._block = None
        self._block_start = -1

    def __enter__(self) -> Hdf5EventsReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Hdf5EventsReader('{self.path}', events={self.event_count}, height={self.height}, "
                f"width={self.width}, current_time={self.current_time})")

    def _read_index(self, f: h5py.File) -> tuple[np.ndarray, int] | None:
        """(event ids per 2 ms, time offset) when /CD/indexes is usable, else None (seeking bisects instead)."""
        if CD_INDEXES not in f:
            return None
        dset = f[CD_INDEXES]
        if "id" not in (dset.dtype.names or ()):
            return None
        ids = np.asarray(dset["id"], dtype=np.int64)
        if np.any(np.diff(ids) < 0) or (len(ids) and (ids.min() < 0 or ids.max() > self.event_count)):
            warnings.warn(f"{self.path}: /{CD_INDEXES} is inconsistent (ids not sorted or out of range); seeking "
                          "without it", stacklevel=3)
            return None
        try:
            offset = int(_attr_text(dset.attrs.get("offset", "0")))
        except ValueError:
            offset = 0
        return ids, offset

    # --- reading ---
    def _block_at(self, i: int) -> tuple[np.ndarray, int]:
        """The block holding event ``i`` and its first index (cached)."""
        start = (i // _BLOCK) * _BLOCK
        if start != self._block_start:
            block = _as_events(self._events[start:min(start + _BLOCK, self.event_count)])
            t = block["t"]
            backwards = np.flatnonzero(t[1:] < t[:-1])
            if len(backwards):
                j = int(backwards[0]) + 1
                raise EventFileError(self.path, f"/{CD_EVENTS} event {start + j}: timestamps going backwards "
                                                f"(t={t[j]} after t={t[j - 1]})")
            self._block, self._block_start = block, start
        return self._block, start

    def _t(self, i: int) -> int:
        block, start = self._block_at(i)
        return int(block["t"][i - start])

    def _first_at_or_after(self, t_us: int, lo: int) -> int:
        """First event index >= lo with t >= t_us: from the index's lower bound, gallop then bisect."""
        n = self.event_count
        if self._index is not None:
            ids, offset = self._index
            k = (t_us + offset) // INDEX_PERIOD_US
            if len(ids) and k > 0:
                lo = max(lo, int(ids[min(k, len(ids) - 1)]) if k < len(ids) else int(ids[-1]))
        if lo >= n or self._t(lo) >= t_us:
            return min(lo, n)
        step = 1
        hi = lo + step
        while hi < n and self._t(hi) < t_us:  # invariant: t[lo] < t_us
            lo, step = hi, step * 2
            hi = lo + step
        hi = min(hi, n)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self._t(mid) < t_us:
                lo = mid
            else:
                hi = mid
        return hi

    def _load(self, start: int, stop: int) -> np.ndarray:
        pieces = []
        i = start
        while i < stop:
            block, b0 = self._block_at(i)
            j = min(stop, b0 + len(block))
            pieces.append(block[i - b0:j - b0])
            i = j
        self._pos = stop
        if not pieces:
            return np.zeros(0, dtype=EVENT_DTYPE)
        return pieces[0].copy() if len(pieces) == 1 else np.concatenate(pieces)

    # --- cursor (DatReader interface) ---
    @property
    def duration(self) -> int:
        """Timestamp (us) of the last event; 0 for an empty file."""
        return self._t(self.event_count - 1) if self.event_count else 0

    @property
    def start_time(self) -> int:
        """Timestamp (us) of the first event (0 without events)."""
        return self._t(0) if self.event_count else 0

    @property
    def done(self) -> bool:
        return self._pos >= self.event_count

    @property
    def current_position(self) -> int:
        return self._pos

    def reset(self) -> None:
        self._pos = 0
        self.current_time = 0

    def seek_event(self, n: int) -> None:
        """Moves to event index ``n`` (0 <= n <= event_count); current_time becomes that event's timestamp."""
        if not 0 <= n <= self.event_count:
            raise ValueError(f"{self.path}: seek_event({n}) outside [0, {self.event_count}]")
        self._pos = int(n)
        self.current_time = self._t(n) if n < self.event_count else (self.duration + 1 if self.event_count else 0)

    def seek_time(self, t_us: int) -> None:
        """Moves to the first event with t >= ``t_us``; current_time = t_us."""
        self._pos = self._first_at_or_after(int(t_us), 0)
        self.current_time = int(t_us)

    def load_delta_t(self, delta_t: int) -> np.ndarray:
        """Returns the events from the cursor with t < current_time + delta_t, then current_time += delta_t."""
        if delta_t <= 0:
            raise ValueError(f"{self.path}: load_delta_t needs delta_t > 0, got {delta_t}")
        end_time = self.current_time + int(delta_t)
        events = self._load(self._pos, self._first_at_or_after(end_time, self._pos))
        self.current_time = end_time
        return events

    def load_n_events(self, n: int) -> np.ndarray:
        """Returns the next ``n`` events; current_time as in :meth:`DatReader.load_n_events`."""
        if n < 0:
            raise ValueError(f"{self.path}: load_n_events needs n >= 0, got {n}")
        stop = min(self._pos + int(n), self.event_count)
        events = self._load(self._pos, stop)
        if len(events):
            self.current_time = max(self.current_time, int(events["t"][-1]) + 1)
            if stop < self.event_count:
                self.current_time = min(self.current_time, self._t(stop))
        return events

    def load_all(self) -> np.ndarray:
        """Returns every CD event; the cursor does not move."""
        pos, current = self._pos, self.current_time
        events = self._load(0, self.event_count)
        self._pos, self.current_time = pos, current
        return events

    def load_all_triggers(self) -> np.ndarray:
        """Returns every external trigger (:data:`TRIGGER_DTYPE`), empty when the file has none."""
        f = self._h5
        if TRIGGER_EVENTS not in f:
            return np.zeros(0, dtype=TRIGGER_DTYPE)
        raw = f[TRIGGER_EVENTS][:]
        out = np.empty(len(raw), dtype=TRIGGER_DTYPE)
        for name in TRIGGER_DTYPE.names:
            out[name] = raw[name]
        return out

    def validate(self) -> None:
        """Reads the whole file block by block; raises EventFileError on timestamps going backwards or coordinates
        outside the sensor."""
        for start in range(0, self.event_count, _BLOCK):
            block, _ = self._block_at(start)
            for field, limit in (("x", self.width), ("y", self.height), ("p", 2)):
                if limit is not None and len(block) and block[field].max() >= limit:
                    i = int(np.argmax(block[field] >= limit))
                    raise EventFileError(self.path, f"/{CD_EVENTS} event {start + i}: {field}={block[field][i]} "
                                                    f"out of range, expected < {limit}")
            if start > 0 and len(block) and block["t"][0] < self._t(start - 1):
                raise EventFileError(self.path, f"/{CD_EVENTS} event {start}: timestamps going backwards")


def _index(t: np.ndarray) -> tuple[np.ndarray, int]:
    """Index entries (id, ts) every 2 ms from the first event, and the offset attribute (minus the first time)."""
    if not len(t):
        return np.zeros(0, dtype=INDEX_DTYPE), 0
    rel = t - t[0]
    marks = np.arange(0, int(rel[-1]) // INDEX_PERIOD_US + 1, dtype=np.int64) * INDEX_PERIOD_US
    entries = np.zeros(len(marks), dtype=INDEX_DTYPE)
    entries["id"] = np.searchsorted(rel, marks, side="left")
    entries["ts"] = rel[entries["id"].astype(np.int64)]
    return entries, -int(t[0])


def write_hdf5_events(path: str | os.PathLike, events: np.ndarray, height: int, width: int,
                      triggers: np.ndarray | None = None, compression: str | None = "gzip",
                      extra_attrs: Mapping[str, str] | None = None) -> None:
    """Writes an HDF5 event file in Metavision's layout (atomically).

    Args:
        path: destination. events: (N,) with fields x, y, p, t, sorted by t. height, width: sensor size (root
            ``geometry`` attribute "WxH").
        triggers: optional (M,) :data:`TRIGGER_DTYPE` external triggers, sorted by t.
        compression: "gzip", "blosc" (lz4, via hdf5plugin), "zstd" or None. (Metavision's own files use the ECF codec,
            which only Prophesee's plugin can write.)
        extra_attrs: more root attributes (strings).
    """
    path = Path(path)
    events = np.asarray(events)
    t = events["t"].astype(np.int64)
    if len(t) and np.any(np.diff(t) < 0):
        raise ValueError(f"write_hdf5_events({path}): events must be sorted by t")
    filters = {"gzip": {"compression": "gzip", "compression_opts": 4}, None: {},
               "blosc": dict(hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE)),
               "zstd": dict(hdf5plugin.Zstd())}
    if compression not in filters:
        raise ValueError(f"write_hdf5_events({path}): compression must be one of {list(filters)}, got {compression!r}")
    triggers = np.zeros(0, dtype=TRIGGER_DTYPE) if triggers is None else np.asarray(triggers, dtype=TRIGGER_DTYPE)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["version"] = "1.0"
        f.attrs["geometry"] = f"{int(width)}x{int(height)}"
        for key, value in (extra_attrs or {}).items():
            f.attrs[key] = str(value)
        for group, data, dtype in (("CD", events, EVENT_DTYPE), ("EXT_TRIGGER", triggers, TRIGGER_DTYPE)):
            packed = np.zeros(len(data), dtype=dtype)
            for name in dtype.names:
                packed[name] = data[name]
            f.create_dataset(f"{group}/events", data=packed, maxshape=(None,), chunks=(CHUNK_EVENTS,),
                             **filters[compression])
            entries, offset = _index(packed["t"].astype(np.int64))
            index = f.create_dataset(f"{group}/indexes", data=entries, maxshape=(None,), chunks=(CHUNK_EVENTS,))
            index.attrs["offset"] = str(offset)
