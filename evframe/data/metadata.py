"""Description of one recording as the sequential loader plays it (Metavision's ``FileMetadata``)."""

from __future__ import annotations

import math
import os


class FileMetadata:
    """What a label loader needs to know about the recording a batch comes from.

    A recording is played from ``start_ts`` to ``stop_ts`` (``stop_ts = min(duration, start_ts + max_duration)``) in
    batches of ``num_tbins`` time bins of ``delta_t`` microseconds; bin ``i`` of the batch starting at ``t0`` covers
    the half-open interval ``[t0 + i * delta_t, t0 + (i + 1) * delta_t)``.

    Args:
        path: the event file (``*_td.dat``) or precomputed tensor file (``*.h5``); label files are found beside it.
        duration: length of the recording in us (events cover ``[0, duration)``).
        delta_t: duration of one time bin in us.
        num_tbins: number of time bins per batch.
        labelling_delta_t: period in us at which the labels were annotated (0: unknown, a bin is then labelled
            when it holds at least one label).
        start_ts: time in us at which playback starts.
        max_duration: if given, at most this many us are played from ``start_ts``.
        height, width: sensor resolution of the events (before any downsampling), when known.
        downsample: the tensors are ``2 ** downsample`` times smaller than the sensor along each axis.
        padding: True for the placeholder of a batch slot that has no recording left.
    """

    def __init__(self, path: str | os.PathLike, duration: int, delta_t: int, num_tbins: int,
                 labelling_delta_t: int = 0, start_ts: int = 0, max_duration: int | None = None,
                 height: int | None = None, width: int | None = None, downsample: int = 0,
                 padding: bool = False):
        if int(delta_t) <= 0 or int(num_tbins) <= 0:
            raise ValueError(f"{path}: delta_t and num_tbins must be positive, got delta_t={delta_t}, "
                             f"num_tbins={num_tbins}")
        if int(duration) < 0 or int(start_ts) < 0:
            raise ValueError(f"{path}: duration and start_ts must be >= 0, got duration={duration}, "
                             f"start_ts={start_ts}")
        if max_duration is not None and int(max_duration) <= 0:
            raise ValueError(f"{path}: max_duration must be positive or None, got {max_duration}")
        self.path = str(path)
        self.duration = int(duration)
        self.delta_t = int(delta_t)
        self.num_tbins = int(num_tbins)
        self.labelling_delta_t = int(labelling_delta_t)
        self.start_ts = int(start_ts)
        self.max_duration = None if max_duration is None else int(max_duration)
        self.height = None if height is None else int(height)
        self.width = None if width is None else int(width)
        self.downsample = int(downsample)
        self.padding = bool(padding)

    @classmethod
    def padding_metadata(cls, delta_t: int, num_tbins: int, height: int | None = None, width: int | None = None,
                         downsample: int = 0) -> FileMetadata:
        """The metadata of an empty slot (no recording left to play in it)."""
        return cls("<padding>", 0, delta_t, num_tbins, height=height, width=width, downsample=downsample,
                   padding=True)

    @property
    def stop_ts(self) -> int:
        """End (exclusive) in us of the played part of the recording."""
        if self.max_duration is None:
            return self.duration
        return min(self.duration, self.start_ts + self.max_duration)

    @property
    def batch_duration(self) -> int:
        """Duration in us of one batch: ``num_tbins * delta_t``."""
        return self.num_tbins * self.delta_t

    @property
    def num_batches(self) -> int:
        """Number of batches needed to cover ``[start_ts, stop_ts)`` (the last one may run past the end)."""
        return max(0, math.ceil((self.stop_ts - self.start_ts) / self.batch_duration))

    def is_padding(self) -> bool:
        return self.padding

    def _key(self) -> tuple:
        return (self.path, self.duration, self.delta_t, self.num_tbins, self.labelling_delta_t, self.start_ts,
                self.max_duration, self.height, self.width, self.downsample, self.padding)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FileMetadata):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (f"FileMetadata object {self.path}\n"
                f"    start_ts {self.start_ts}us delta_t {self.delta_t}us, num_tbins {self.num_tbins}, "
                f"total duration {self.duration}us\n")
