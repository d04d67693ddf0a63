"""Opening event files by content: a small table of (format, sniffer, reader) that new formats join.

A sniffer gets the first bytes of the file and says whether the format claims it; sniffers are mutually exclusive
(DAT's rejects RAW headers), so the table order does not matter. Built in: DAT, RAW (EVT 2.0 / 3.0, read by
:class:`evframe.io.raw.RawReader`) and Metavision HDF5 event files (:class:`evframe.io.hdf5_events.Hdf5EventsReader`).
Formats recognised but not readable (``reader=None``) give a clear error instead of "unknown format".
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evframe.io.dat import DatReader, has_evt_header, looks_like_dat
from evframe.io.errors import EventFileError
from evframe.io.hdf5_events import Hdf5EventsReader
from evframe.io.raw import RawReader

SNIFF_BYTES = 1 << 16


@dataclass(frozen=True)
class EventFormat:
    """name: shown to users; sniff(head bytes) -> bool; reader(path, height=, width=) -> reader or None."""

    name: str
    sniff: Callable[[bytes], bool]
    reader: Callable | None


def _looks_like_hdf5(head: bytes) -> bool:
    return head.startswith(b"\x89HDF\r\n\x1a\n")


FORMATS: list[EventFormat] = [
    EventFormat("DAT (Prophesee CD events)", looks_like_dat, DatReader),
    EventFormat("RAW (Prophesee EVT 2.0 / 3.0)", has_evt_header, RawReader),
    EventFormat("HDF5 event file", _looks_like_hdf5, Hdf5EventsReader),
]


def register_format(fmt: EventFormat) -> None:
    """Adds a format, or replaces the one with the same name (e.g. a RAW reader replacing the placeholder)."""
    names = [f.name for f in FORMATS]
    if fmt.name in names:
        FORMATS[names.index(fmt.name)] = fmt
    else:
        FORMATS.append(fmt)


def open_events(path: str | os.PathLike, height: int | None = None, width: int | None = None):
    """Opens an event file, choosing the reader from the file's content (not its extension).

    Returns:
        A reader with the DatReader interface (``load_delta_t``, ``load_n_events``, ``seek_time``, ``seek_event``,
        ``load_all``, ``start_time``, ``duration``, ``event_count``, ``height``, ``width``): DatReader, RawReader or
        Hdf5EventsReader.
    Raises:
        EventFileError: unknown or not yet supported format (the message lists the supported ones).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such event file")
    with open(path, "rb") as f:
        head = f.read(SNIFF_BYTES)
    if not head:
        raise EventFileError(path, "empty file, expected an event file (DAT, RAW or HDF5 events)")
    supported = ", ".join(f.name for f in FORMATS if f.reader is not None)
    for fmt in FORMATS:
        if fmt.sniff(head):
            if fmt.reader is None:
                raise EventFileError(path, f"{fmt.name} files are not supported yet; supported formats: {supported}")
            return fmt.reader(path, height=height, width=width)
    raise EventFileError(path, f"unknown event file format (starts with {head[:16]!r}); supported formats: "
                               f"{supported}")


def load_events(path: str | os.PathLike, height: int | None = None, width: int | None = None) -> np.ndarray:
    """Returns every event of the file, validated, as an (N,) EVENT_DTYPE array."""
    reader = open_events(path, height=height, width=width)
    try:
        return reader.load_all()
    finally:
        reader.close()
