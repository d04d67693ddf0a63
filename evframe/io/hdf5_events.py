"""HDF5 event files as written by Metavision's HDF5 event file writer (not to be confused with HDF5 *tensor* files).

Layout: ``/CD/events``, a chunked 1-D compound dataset ``x u2, y u2, p i2, t i8`` (Metavision's CD dtype, the same
as :data:`EVENT_DTYPE`) sorted by t; ``/CD/indexes``, compound ``id u8, ts i8``, one entry per 2 ms of recording
(entry k: an event index at or before the first event with ``t - first t >= k * 2000`` us; its ``offset`` attribute
is minus the first event's time); ``/EXT_TRIGGER/events`` (``p i2, t i8, id i2``) and ``/EXT_TRIGGER/indexes``;
root attributes are strings (``version``, ``geometry`` "WxH", camera metadata...).

The reader checks what it returns as the DAT reader does and seeks by searching the timestamps themselves;
``/CD/indexes`` is written (for Metavision's tools) but not trusted for seeking.

Metavision compresses ``/CD/events`` with its ECF codec (HDF5 filter 0x8ECF), available only as Prophesee's
``hdf5_ecf`` plugin: without it such files cannot be read, and the reader says so up front. Uncompressed, gzip and
the filters of ``hdf5plugin`` (blosc, lz4, zstd, ...) are read directly.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401  (registers blosc, lz4, zstd, ... with HDF5)
import numpy as np

from evframe.io._atomic import atomic_path
from evframe.io._blocks import BLOCK, BlockEventReader, reader_path
from evframe.io.dat import MAX_SENSOR_SIZE, _pick_size
from evframe.io.dtypes import EVENT_DTYPE, TRIGGER_DTYPE
from evframe.io.errors import EventFileError, hdf5_errors

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
_BLOCK = BLOCK


def is_hdf5_event_file(path: str | os.PathLike) -> bool:
    """True when ``path`` is an HDF5 file holding ``/CD/events`` (an event file, not a tensor file); False for
    anything h5py cannot open or read."""
    try:
        with h5py.File(path, "r") as f:
            return CD_EVENTS in f
    except (OSError, KeyError, RuntimeError, ValueError):
        return False


def _attr_text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _size(path: Path, attribute: str, text: str, part: str) -> int:
    """One sensor dimension from a root attribute; EventFileError unless an integer in [1, MAX_SENSOR_SIZE]."""
    try:
        value = int(part.strip())
    except ValueError:
        value = 0
    if not 0 < value <= MAX_SENSOR_SIZE:
        raise EventFileError(path, f"root attribute {attribute}={text!r}: the sensor size should be integers in "
                                   f"[1, {MAX_SENSOR_SIZE}] (e.g. geometry '1280x720', width x height)")
    return value


def _geometry(path: Path, attrs: Mapping) -> tuple[int | None, int | None]:
    """(height, width) from the root attributes ``geometry`` "WxH", ``format`` "...;height=H;width=W" or
    ``height`` / ``width`` (the first present wins); (None, None) when none is present.

    Raises:
        EventFileError: a present size attribute that is not positive integers (e.g. "0x0", "-5x-5", "axb").
    """
    text = {k.lower(): _attr_text(v).strip() for k, v in attrs.items()}
    if "geometry" in text:
        w, sep, h = text["geometry"].lower().partition("x")
        if not sep:
            raise EventFileError(path, f"root attribute geometry={text['geometry']!r}: expected WIDTHxHEIGHT, "
                                       "e.g. '1280x720'")
        return _size(path, "geometry", text["geometry"], h), _size(path, "geometry", text["geometry"], w)
    if "format" in text:
        params = dict(p.split("=", 1) for p in text["format"].split(";")[1:] if "=" in p)
        params = {k.strip().lower(): v for k, v in params.items()}
        if "height" in params and "width" in params:
            return (_size(path, "format", text["format"], params["height"]),
                    _size(path, "format", text["format"], params["width"]))
    if "height" in text and "width" in text:
        return _size(path, "height", text["height"], text["height"]), _size(path, "width", text["width"], text["width"])
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


def _dataset(path: Path, f: h5py.File, name: str, wanted: np.dtype) -> h5py.Dataset:
    """Dataset ``name`` after checking that it is 1-D and compound with integer fields named as in ``wanted``."""
    node = f[name]
    fields = ", ".join(f"{n} {wanted[n]}" for n in wanted.names)
    if not isinstance(node, h5py.Dataset):
        raise EventFileError(path, f"/{name} is an HDF5 {type(node).__name__.lower()}, expected a 1-D compound "
                                   f"dataset with integer fields {fields}")
    names = node.dtype.names or ()
    missing = [n for n in wanted.names if n not in names]
    if node.ndim != 1 or missing:
        raise EventFileError(path, f"/{name} should be a 1-D compound dataset with fields "
                                   f"{', '.join(wanted.names)}; got shape {node.shape} and dtype {node.dtype}")
    for n in wanted.names:
        kind = node.dtype[n].kind
        if kind not in "iu":
            raise EventFileError(path, f"/{name} field {n} has dtype {node.dtype[n]}, expected an integer type "
                                       f"(read as {fields}; other types would be truncated)")
    return node


def _convert(raw: np.ndarray, wanted: np.dtype, error: Callable[[int, str], EventFileError], first: int) -> np.ndarray:
    """``raw`` (fields of any integer types) as a ``wanted`` array; values that do not fit raise ``error(index,
    message)`` instead of wrapping (x = 70000 would become 4464 in uint16)."""
    if raw.dtype == wanted:
        return raw
    out = np.empty(len(raw), dtype=wanted)
    for name in wanted.names:
        values = raw[name]
        target = wanted[name]
        if len(values) and not np.can_cast(values.dtype, target, "safe"):
            info = np.iinfo(target)
            bad = (values < info.min) | (values > info.max)
            if bad.any():
                i = int(np.argmax(bad))
                raise error(first + i, f"{name}={values[i]} out of range, expected {info.min} <= {name} <= "
                                       f"{info.max} ({target} in {wanted.names})")
        out[name] = values
    return out


class Hdf5EventsReader(BlockEventReader):
    """Random-access reader of an HDF5 event file, with the :class:`evframe.io.DatReader` interface.

    Reads ``/CD/events`` block by block (64K events, whole chunks), so memory stays bounded. Every returned slice is
    checked as DatReader checks it (timestamps not going backwards, also against the event before it, x/y inside
    the ``geometry``, p in {0, 1}, t >= 0); fields wider than :data:`EVENT_DTYPE`'s must hold values that fit, and
    float fields are refused. Seeking by time searches the blocks known to be sorted from the start of the file
    (see :mod:`evframe.io._blocks`), not ``/CD/indexes`` (Metavision writes it late, other tools may write it
    wrong). Events are returned as :data:`EVENT_DTYPE`; triggers with :meth:`load_all_triggers`. A damaged file
    raises EventFileError naming the file and what could not be read. Picklable (the file is reopened).

    Attributes:
        path, height, width (root ``geometry`` attribute, else the user's, else None), attrs ({name: text} of the
        root attributes), event_count.
    """

    def __init__(self, path: str | os.PathLike, height: int | None = None, width: int | None = None) -> None:
        self.path = reader_path(path)
        self._file: h5py.File | None = None
        try:
            with hdf5_errors(self.path, f"/{CD_EVENTS} and the root attributes"):
                f = self._h5
                if CD_EVENTS not in f:
                    raise EventFileError(self.path, f"HDF5 file without /{CD_EVENTS}: not a Metavision HDF5 event "
                                                    "file (tensor files are read by evframe.preprocess.h5_tensors)")
                dset = _dataset(self.path, f, CD_EVENTS, EVENT_DTYPE)
                _check_filters(self.path, dset)
                self.attrs = {k: _attr_text(v) for k, v in f.attrs.items()}
                file_h, file_w = _geometry(self.path, f.attrs)
                self.event_count = int(dset.shape[0])
        except BaseException:
            self.close()
            raise
        self.height = _pick_size(self.path, "Height", file_h, height)
        self.width = _pick_size(self.path, "Width", file_w, width)
        self._init_blocks()

    # --- file handle (reopened lazily after unpickling, in each process) ---
    @property
    def _h5(self) -> h5py.File:
        if self._file is None:
            try:
                self._file = h5py.File(self.path, "r")
            except FileNotFoundError:
                raise
            except OSError as err:
                raise EventFileError(self.path, f"cannot open as HDF5: {err}") from None
        return self._file

    @property
    def _events(self) -> h5py.Dataset:
        return self._h5[CD_EVENTS]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_file"] = None
        state["_cached"] = None
        state["_cached_b"] = -1
        return state

    def close(self) -> None:
        if getattr(self, "_file", None) is not None:
            self._file.close()
        self._file = None
        if hasattr(self, "_cached"):
            self._forget_blocks()

    def __enter__(self) -> Hdf5EventsReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Hdf5EventsReader('{self.path}', events={self.event_count}, height={self.height}, "
                f"width={self.width}, current_time={self.current_time})")

    # --- blocks of events (see BlockEventReader) ---
    def _read(self, start: int, stop: int) -> np.ndarray:
        with hdf5_errors(self.path, f"/{CD_EVENTS}[{start}:{stop}]"):
            raw = self._events[start:stop]
        return _convert(raw, EVENT_DTYPE, self._error, start)

    def _fetch(self, b: int) -> np.ndarray:
        return self._read(b * BLOCK, min((b + 1) * BLOCK, self.event_count))

    def _times(self, payload: np.ndarray) -> np.ndarray:
        return payload["t"]

    def _decode(self, payload: np.ndarray, start: int, stop: int, out: np.ndarray) -> None:
        out[:] = payload[start:stop]

    def _read_t(self, index: int) -> int:
        return int(self._read(index, index + 1)["t"][0])

    def _error(self, index: int, message: str) -> EventFileError:
        return EventFileError(self.path, f"/{CD_EVENTS} event {index}: {message}")

    def load_all_triggers(self) -> np.ndarray:
        """Returns every external trigger (:data:`TRIGGER_DTYPE`, sorted by t), empty when the file has none.

        Raises:
            EventFileError: ``/EXT_TRIGGER/events`` damaged, not integer fields p, t, id, values that do not fit,
                p not 0/1, t < 0 or going backwards.
        """
        with hdf5_errors(self.path, f"/{TRIGGER_EVENTS}"):
            f = self._h5
            if TRIGGER_EVENTS not in f:
                return np.zeros(0, dtype=TRIGGER_DTYPE)
            raw = _dataset(self.path, f, TRIGGER_EVENTS, TRIGGER_DTYPE)[:]

        def error(index: int, message: str) -> EventFileError:
            return EventFileError(self.path, f"/{TRIGGER_EVENTS} trigger {index}: {message}")

        triggers = _convert(raw, TRIGGER_DTYPE, error, 0)
        t, p = triggers["t"], triggers["p"]
        backwards = np.flatnonzero(t[1:] < t[:-1])
        if len(backwards):
            i = int(backwards[0]) + 1
            raise error(i, f"timestamps going backwards (t={t[i]} after t={t[i - 1]})")
        for field, bad, expected in (("t", t < 0, ">= 0 (us)"), ("p", (p < 0) | (p > 1), "0 or 1"),
                                     ("id", triggers["id"] < 0, ">= 0")):
            if bad.any():
                i = int(np.argmax(bad))
                raise error(i, f"{field}={triggers[field][i]} out of range, expected {expected}")
        return triggers


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
