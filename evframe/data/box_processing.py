"""Bounding-box label loading for the sequential loader (Metavision's ``box_processing``).

Boxes live beside the recording as ``<name>_bbox.npy`` (``BBOX_DTYPE``, sorted or not by time). A box with timestamp
``t`` belongs to the time bin ``floor((t - batch_start_time) / delta_t)``: bins are half-open intervals, so a box
exactly on a batch boundary belongs to exactly one batch.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from evframe.data.metadata import FileMetadata
from evframe.io.dtypes import BBOX_DTYPE

#: How many box files a process keeps in memory (box files are small; one worker plays few recordings at once).
_CACHE_SIZE = 256
_box_cache: OrderedDict[tuple, np.ndarray] = OrderedDict()


def box_path(metadata: FileMetadata) -> Path:
    """``<name>_bbox.npy`` beside the recording described by ``metadata``."""
    from evframe.io.paths import label_path

    return Path(label_path(metadata.path, "_bbox.npy"))


def _load_sorted_boxes(path: Path) -> np.ndarray:
    """All boxes of ``path`` sorted by time, read once per process and kept (keyed by path, size and mtime so a
    rewritten file is read again)."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: box label file not found (expected beside the recording)") from None
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    boxes = _box_cache.get(key)
    if boxes is not None:
        _box_cache.move_to_end(key)
        return boxes
    from evframe.io import load_boxes as read_box_file

    boxes = np.asarray(read_box_file(path))
    boxes = boxes[np.argsort(boxes["t"], kind="stable")]
    boxes.flags.writeable = False  # shared by every caller: callers get copies
    _box_cache[key] = boxes
    while len(_box_cache) > _CACHE_SIZE:
        _box_cache.popitem(last=False)
    return boxes


def clear_box_cache() -> None:
    """Forgets every cached box file."""
    _box_cache.clear()


def load_box_events(metadata: FileMetadata, batch_start_time: int, duration: int) -> np.ndarray:
    """Boxes of the recording with ``batch_start_time <= t < batch_start_time + duration``.

    Returns:
        a new ``BBOX_DTYPE`` array (N,) sorted by time (safe to modify).
    """
    boxes = _load_sorted_boxes(box_path(metadata))
    lo, hi = np.searchsorted(boxes["t"], [batch_start_time, batch_start_time + duration], side="left")
    return boxes[lo:hi].copy()


def split_boxes(box_events: np.ndarray, batch_start_time: int, delta_t: int, num_tbins: int) -> list[np.ndarray]:
    """Splits boxes into ``num_tbins`` time bins of ``delta_t`` us starting at ``batch_start_time``.

    Box ``i`` goes to bin ``floor((t_i - batch_start_time) / delta_t)``; boxes outside the ``num_tbins`` bins are
    dropped. The order of boxes within a bin is kept.

    Returns:
        a list of ``num_tbins`` ``BBOX_DTYPE`` arrays.
    """
    if delta_t <= 0 or num_tbins <= 0:
        raise ValueError(f"split_boxes: delta_t and num_tbins must be positive, got {delta_t}, {num_tbins}")
    bins = np.floor_divide(box_events["t"].astype(np.int64) - int(batch_start_time), int(delta_t))
    inside = (bins >= 0) & (bins < num_tbins)
    box_events, bins = box_events[inside], bins[inside]
    order = np.argsort(bins, kind="stable")
    box_events, bins = box_events[order], bins[order]
    cuts = np.searchsorted(bins, np.arange(1, num_tbins), side="left")
    return list(np.split(box_events, cuts))


def create_class_lookup(label_map_path: str | os.PathLike, wanted_keys: list[str] | None = None) -> np.ndarray:
    """Lookup table from the dataset's class ids to contiguous training ids.

    Args:
        label_map_path: ``label_map_dictionary.json`` (``{"0": "car", ...}``).
        wanted_keys: class names to keep, in the order of their training ids; None or empty keeps every class
            except ``"empty"``, ordered by dataset id.

    Returns:
        int64 array ``lookup`` with ``lookup[dataset_id] = 1 + index in wanted_keys`` (0 is kept for the background
        class, as in ``label_map = ["background"] + wanted_keys``) and -1 for classes not wanted.
    """
    label_map = _read_label_map(label_map_path)
    if not wanted_keys:
        wanted_keys = [name for _, name in sorted(label_map.items()) if name != "empty"]
    names = set(label_map.values())
    missing = [key for key in wanted_keys if key not in names]
    if missing:
        raise ValueError(f"{label_map_path}: classes {missing} not in the label map (available: "
                         f"{sorted(names)})")
    train_id = {key: i + 1 for i, key in enumerate(wanted_keys)}
    lookup = np.full(max(label_map) + 1 if label_map else 0, -1, dtype=np.int64)
    for dataset_id, name in label_map.items():
        lookup[dataset_id] = train_id.get(name, -1)
    return lookup


def _read_label_map(path: str | os.PathLike) -> dict[int, str]:
    try:
        from evframe.io import load_label_map
    except ImportError:  # the io package is optional for this small JSON format
        load_label_map = None
    if load_label_map is not None:
        return dict(load_label_map(path))
    with open(path) as f:
        raw = json.load(f)
    try:
        return {int(k): str(v) for k, v in raw.items()}
    except (AttributeError, ValueError):
        raise ValueError(f"{path}: expected a JSON object mapping integer ids to class names") from None


def apply_class_lookup(box_events: np.ndarray, class_lookup: np.ndarray, path: str = "") -> np.ndarray:
    """Maps ``class_id`` through ``class_lookup`` and drops the boxes of unwanted classes (lookup -1)."""
    ids = box_events["class_id"].astype(np.int64)
    unknown = ids >= len(class_lookup)
    if unknown.any():
        raise ValueError(f"{path}: class_id {int(ids[unknown][0])} is not in the label map (lookup has "
                         f"{len(class_lookup)} entries)")
    new_ids = np.asarray(class_lookup)[ids]
    keep = new_ids >= 0
    out = box_events[keep].copy()
    out["class_id"] = new_ids[keep]
    return out


def rescale_and_clip_boxes(box_events: np.ndarray, scale: float, height: int, width: int) -> np.ndarray:
    """Scales coordinates by ``scale`` then clips boxes to the ``height x width`` frame, dropping empty ones and
    those with a non-finite coordinate or size (clipping would turn an infinite side into a frame edge)."""
    finite = np.ones(len(box_events), dtype=bool)
    for name in ("x", "y", "w", "h"):
        finite &= np.isfinite(box_events[name])
    box_events = box_events[finite]
    x1 = box_events["x"].astype(np.float64) * scale
    y1 = box_events["y"].astype(np.float64) * scale
    x2 = np.clip(x1 + box_events["w"] * scale, 0, width)
    y2 = np.clip(y1 + box_events["h"] * scale, 0, height)
    x1 = np.clip(x1, 0, width)
    y1 = np.clip(y1, 0, height)
    keep = (x2 > x1) & (y2 > y1)
    out = box_events[keep].copy()
    out["x"], out["y"] = x1[keep], y1[keep]
    out["w"], out["h"] = (x2 - x1)[keep], (y2 - y1)[keep]
    return out


def labelled_bins(box_events: np.ndarray, batch_start_time: int, delta_t: int, num_tbins: int,
                  labelling_delta_t: int = 0) -> np.ndarray:
    """Which bins were annotated (bool (num_tbins,)).

    With ``labelling_delta_t > 0`` the annotation clock ticks at multiples of it, and a bin is labelled when a tick
    falls in it (an empty box list there means "no object"). Otherwise a bin is labelled when it holds a box.
    """
    starts = int(batch_start_time) + int(delta_t) * np.arange(num_tbins, dtype=np.int64)
    if labelling_delta_t and labelling_delta_t > 0:
        first_tick = -(-starts // labelling_delta_t) * labelling_delta_t  # ceil to the annotation clock
        return first_tick < starts + delta_t
    bins = np.floor_divide(box_events["t"].astype(np.int64) - int(batch_start_time), int(delta_t))
    bins = bins[(bins >= 0) & (bins < num_tbins)]
    labelled = np.zeros(num_tbins, dtype=bool)
    labelled[bins] = True
    return labelled


def load_boxes(metadata: FileMetadata, batch_start_time: int, duration: int, tensor: Any,
               class_lookup: np.ndarray | None = None, min_box_diag_network: float = 0,
               labelling_delta_t: int | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """``load_labels`` hook for detection: the boxes of each time bin of a batch.

    Args:
        metadata: the recording (boxes are read from ``<name>_bbox.npy`` beside it, once per process).
        batch_start_time: start of the batch in us.
        duration: duration of the batch in us (``num_tbins * delta_t``).
        tensor: the batch's input (num_tbins, C, h, w); its size gives the network resolution.
        class_lookup: from :func:`create_class_lookup`; boxes of unwanted classes are dropped. None keeps ids.
        min_box_diag_network: boxes whose diagonal (at network resolution) is smaller are dropped.
        labelling_delta_t: annotation period in us (default ``metadata.labelling_delta_t``), see
            :func:`labelled_bins`.

    Returns:
        (list of num_tbins ``BBOX_DTYPE`` arrays in network pixels, frame_is_labeled bool (num_tbins,)).
    """
    num_tbins = int(tensor.shape[0])
    height, width = int(tensor.shape[-2]), int(tensor.shape[-1])
    delta_t = duration // num_tbins
    if labelling_delta_t is None:
        labelling_delta_t = metadata.labelling_delta_t
    box_events = load_box_events(metadata, batch_start_time, duration)
    # a frame counts as annotated even when all its boxes are later filtered out (unwanted class, too small)
    frame_is_labeled = labelled_bins(box_events, batch_start_time, delta_t, num_tbins, labelling_delta_t)
    if class_lookup is not None:
        box_events = apply_class_lookup(box_events, class_lookup, str(box_path(metadata)))
    box_events = rescale_and_clip_boxes(box_events, 2.0 ** -metadata.downsample, height, width)
    if min_box_diag_network > 0:
        diag = np.hypot(box_events["w"], box_events["h"])
        box_events = box_events[diag >= min_box_diag_network]
    return split_boxes(box_events, batch_start_time, delta_t, num_tbins), frame_is_labeled


__all__ = ["BBOX_DTYPE", "load_box_events", "split_boxes", "create_class_lookup", "apply_class_lookup",
           "rescale_and_clip_boxes", "labelled_bins", "load_boxes", "clear_box_cache", "box_path"]
