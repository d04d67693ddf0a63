"""Evaluation recordings with ground-truth frames: event files with ``<name>_frames.h5`` beside them.

* The synthetic dataset writes such recordings (``*_td.dat`` + ``*_frames.h5``).
* Any folder of real frames with timestamps (:func:`~evframe.tasks.e2v.media.open_frame_folder`) becomes one with
  :func:`frame_folder_recording`: its events are simulated from the frames (``evframe.sim``) and written with the
  frames, once, into a cache folder keyed by the frames and the simulator settings.

They are played by evframe's :class:`~evframe.data.sequential.SequentialDataLoader` with :func:`load_frames` as
``load_labels`` hook: the target of a time bin ``[t0, t1)`` is the last frame whose timestamp lies in ``(t0, t1]``
(the frame closest to the bin's end without looking past it), resized to the tensor size.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from evframe.data.metadata import FileMetadata
from evframe.io.paths import label_path

_CACHE_SIZE = 8
_readers: OrderedDict[tuple, Any] = OrderedDict()
FRAMES_SUFFIX = "_frames.h5"


def frames_path(metadata_or_path: FileMetadata | str | os.PathLike) -> Path:
    """``<name>_frames.h5`` beside a recording."""
    path = metadata_or_path.path if isinstance(metadata_or_path, FileMetadata) else metadata_or_path
    return Path(label_path(path, FRAMES_SUFFIX))


def _frames_reader(path: Path) -> Any:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: ground-truth frames not found (expected beside the recording)") from None
    key = (os.getpid(), str(path), stat.st_mtime_ns, stat.st_size)
    reader = _readers.get(key)
    if reader is None:
        from evframe.io import FramesReader

        reader = FramesReader(path)
        _readers[key] = reader
        while len(_readers) > _CACHE_SIZE:
            _readers.popitem(last=False)[1].close()
    _readers.move_to_end(key)
    return reader


def target_index_per_bin(timestamps: np.ndarray, start_time: int, delta_t: int, num_tbins: int) -> np.ndarray:
    """For bin ``i`` = ``[start + i dt, start + (i+1) dt)``, the index of the last timestamp in
    ``(start + i dt, start + (i+1) dt]``, or -1. ``timestamps`` sorted; returns int64 (num_tbins,)."""
    if not len(timestamps):
        return np.full(num_tbins, -1, dtype=np.int64)
    ends = start_time + delta_t * np.arange(1, num_tbins + 1, dtype=np.int64)
    idx = np.searchsorted(timestamps, ends, side="right") - 1
    ok = (idx >= 0) & (timestamps[np.clip(idx, 0, None)] > ends - delta_t)
    return np.where(ok, idx, -1).astype(np.int64)


def load_frames(metadata: FileMetadata, start_time: int, duration: int,
                tensor: torch.Tensor) -> tuple[list[torch.Tensor | None], np.ndarray]:
    """``load_labels`` hook reading ``<name>_frames.h5``: per bin, the target frame ``(1, h, w)`` float32 in [0, 1]
    at the tensor's resolution (area-resized when downsampled), or None where no frame falls in the bin.

    Raises:
        FileNotFoundError: no frames file. ValueError: frames of another size than the events' sensor.
    """
    num_tbins = int(tensor.shape[0])
    height, width = int(tensor.shape[-2]), int(tensor.shape[-1])
    path = frames_path(metadata)
    reader = _frames_reader(path)
    expected = (metadata.height, metadata.width)
    if None not in expected and (reader.height, reader.width) != expected:
        raise ValueError(f"{path}: frames are {reader.height}x{reader.width} but the events are "
                         f"{expected[0]}x{expected[1]} (height x width)")
    index = target_index_per_bin(np.asarray(reader.timestamps, np.int64), start_time, duration // num_tbins, num_tbins)
    labels: list[torch.Tensor | None] = [None] * num_tbins
    for t in np.flatnonzero(index >= 0):
        frame = reader.read(int(index[t]))[0]
        if frame.shape != (height, width):
            frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
        labels[t] = torch.from_numpy(frame.astype(np.float32) / 255.0)[None]
    return labels, index >= 0


def frame_folder_recording(folder: str | os.PathLike, cache_dir: str | os.PathLike, simulator: dict | None = None,
                           fps: float | None = None, seed: int = 0) -> Path:
    """Turns a folder of frames with timestamps into an evaluation recording; returns its ``*_td.dat``.

    Events are simulated from the frames (``evframe.sim.simulate_video`` with ``simulator``'s options) and written
    to ``<cache_dir>/<folder name>_<hash>/<folder name>_td.dat`` with the frames as ``<folder name>_frames.h5``; the
    hash covers the frame list, their timestamps and sizes, and the simulator settings, so a second call reuses them.

    Raises:
        FileNotFoundError, ValueError: as :func:`~evframe.tasks.e2v.media.open_frame_folder`, and for unreadable or
            differently sized frames (naming the file).
    """
    from evframe.io import write_dat, write_frames_h5
    from evframe.sim import simulate_video
    from evframe.tasks.e2v.media import ClipSkip, open_frame_folder, read_image

    series = open_frame_folder(folder, fps)
    options = dict(simulator or {})
    listing = [(str(f.name), f.stat().st_size, f.stat().st_mtime_ns) for f in series.files]
    key = json.dumps({"files": listing, "t": series.timestamps.tolist(), "sim": options, "seed": seed},
                     sort_keys=True, default=str)
    name = Path(folder).expanduser().resolve().name
    out_dir = Path(cache_dir).expanduser() / f"{name}_{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    dat = out_dir / f"{name}_td.dat"
    if dat.is_file() and frames_path(dat).is_file():
        return dat
    frames = []
    for f in series.files:
        try:
            frames.append(read_image(f))
        except ClipSkip as err:
            raise ValueError(f"frame folder '{folder}': {err}") from None
        if frames[-1].shape != frames[0].shape:
            raise ValueError(f"frame folder '{folder}': {f.name} is {frames[-1].shape[0]}x{frames[-1].shape[1]}, "
                             f"the first frame is {frames[0].shape[0]}x{frames[0].shape[1]}")
    frames_u8 = np.round(np.stack(frames) * 255).astype(np.uint8)
    events = simulate_video(frames_u8, series.timestamps, seed=seed, **options)
    if len(events) == 0:  # an empty recording would play as padding only: no frame would ever be evaluated
        raise ValueError(f"frame folder '{folder}': its {len(frames)} frames give no event (nothing changes between "
                         f"them); an evaluation source needs a moving or changing scene")
    out_dir.mkdir(parents=True, exist_ok=True)
    height, width = frames_u8.shape[1:]
    # frames first: the .dat is the marker of a complete conversion
    write_frames_h5(frames_path(dat), frames_u8, series.timestamps)
    write_dat(dat, events, height, width)
    return dat
