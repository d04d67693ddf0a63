"""``load_labels`` hooks of the sequential loader.

Every hook has Metavision's signature ``load_labels(metadata, start_time, duration, tensor)`` and returns
``(labels, frame_is_labeled)``: ``labels`` indexable by time bin (a list of ``num_tbins`` items) and
``frame_is_labeled`` a bool array (num_tbins,) telling which bins carry a ground truth (bins without one must not
contribute to supervised losses). Bins are half-open ``[start_time + i * delta_t, start_time + (i + 1) * delta_t)``.
Bind extra arguments with ``functools.partial``.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evframe.data.box_processing import load_boxes
from evframe.data.metadata import FileMetadata

#: Open flow files per process (h5py handles must not cross a fork, hence the pid in the key).
_FLOW_CACHE_SIZE = 8
_flow_readers: OrderedDict[tuple, Any] = OrderedDict()


def load_labels_stub(metadata: FileMetadata, start_time: int, duration: int,
                     tensor: torch.Tensor) -> tuple[list[None], np.ndarray]:
    """Loads nothing (self-supervised training): ``num_tbins`` ``None`` labels, no bin labelled."""
    num_tbins = int(tensor.shape[0])
    return [None] * num_tbins, np.zeros(num_tbins, dtype=bool)


def flow_path(metadata: FileMetadata) -> Path:
    """``<name>_flow.h5`` beside the recording described by ``metadata``."""
    from evframe.io.paths import label_path

    return Path(label_path(metadata.path, "_flow.h5"))


def _flow_reader(path: Path) -> Any:
    """The process's reader of ``path`` (opened once, so its timestamps are checked once)."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: flow label file not found (expected beside the recording)") from None
    key = (os.getpid(), str(path), stat.st_mtime_ns, stat.st_size)
    reader = _flow_readers.get(key)
    if reader is not None:
        _flow_readers.move_to_end(key)
        return reader
    from evframe.io import FlowLabelsReader

    reader = FlowLabelsReader(path)  # refuses timestamps that are not strictly increasing
    _flow_readers[key] = reader
    while len(_flow_readers) > _FLOW_CACHE_SIZE:
        _, old = _flow_readers.popitem(last=False)
        close = getattr(old, "close", None)
        if close is not None:
            close()
    return reader


def last_index_per_bin(timestamps: np.ndarray, start_time: int, delta_t: int, num_tbins: int) -> np.ndarray:
    """For each bin, the index of the last timestamp in ``[start + i*delta_t, start + (i+1)*delta_t)``, or -1.

    ``timestamps`` must be sorted. Returns int64 (num_tbins,).
    """
    lo, hi = np.searchsorted(timestamps, [start_time, start_time + num_tbins * delta_t], side="left")
    bins = (timestamps[lo:hi].astype(np.int64) - start_time) // delta_t
    last = np.full(num_tbins, -1, dtype=np.int64)
    # assigning in increasing index order leaves the last index of each bin
    last[bins] = np.arange(lo, hi, dtype=np.int64)
    return last


def flow_to_pixels_per_bin(flow: np.ndarray, delta_t: int, downsample: int, height: int, width: int) -> np.ndarray:
    """Converts one flow map (2, H, W) from px/s at sensor resolution to pixels per time bin at ``height x width``.

    Displacements shrink by ``2 ** downsample`` along with the image; the map is resized with area interpolation
    (the mean flow of the pixels merged into one).
    """
    out = flow.astype(np.float32) * np.float32(delta_t * 1e-6 / 2.0 ** downsample)
    if out.shape[1:] != (height, width):
        import cv2

        out = cv2.resize(np.ascontiguousarray(out.transpose(1, 2, 0)), (width, height),
                         interpolation=cv2.INTER_AREA).transpose(2, 0, 1)
    return np.ascontiguousarray(out)


def load_flow(metadata: FileMetadata, start_time: int, duration: int,
              tensor: torch.Tensor) -> tuple[list[torch.Tensor | None], np.ndarray]:
    """``load_labels`` hook for optical flow, reading ``<name>_flow.h5`` (``evframe.io.FlowLabelsReader``).

    For each time bin, the ground-truth flow whose timestamp falls in the bin (the last one if several) converted
    from px/s to pixels per time bin at the tensor's resolution: ``flow * delta_t * 1e-6 / 2 ** downsample``,
    resized with area interpolation when downsampled.

    Returns:
        (list of num_tbins float32 tensors (2, h, w) or None where the bin has no ground truth,
        frame_is_labeled bool (num_tbins,)).
    """
    num_tbins = int(tensor.shape[0])
    height, width = int(tensor.shape[-2]), int(tensor.shape[-1])
    delta_t = duration // num_tbins
    path = flow_path(metadata)
    reader = _flow_reader(path)
    expected = (metadata.height, metadata.width)
    if None not in expected and (reader.height, reader.width) != expected:
        raise ValueError(f"{path}: flow maps are {reader.height}x{reader.width} but the events are "
                         f"{expected[0]}x{expected[1]}")
    last = last_index_per_bin(np.asarray(reader.timestamps, dtype=np.int64), start_time, delta_t, num_tbins)
    labels: list[torch.Tensor | None] = [None] * num_tbins
    for t in np.flatnonzero(last >= 0):  # one read per labelled bin (at most num_tbins)
        i = int(last[t])
        flow = np.asarray(reader.read(slice(i, i + 1))).reshape(2, reader.height, reader.width)
        labels[t] = torch.from_numpy(flow_to_pixels_per_bin(flow, delta_t, metadata.downsample, height, width))
    return labels, last >= 0


__all__ = ["load_labels_stub", "load_boxes", "load_flow", "flow_to_pixels_per_bin", "last_index_per_bin",
           "flow_path"]
