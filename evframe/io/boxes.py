"""Bounding-box labels (``*_bbox.npy``) and class names (``label_map_dictionary.json``)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from evframe.io._atomic import atomic_path
from evframe.io.dtypes import BBOX_DTYPE
from evframe.io.errors import EventFileError

# BBOX_DTYPE field -> names it may have in a file (Gen1 files use ts / confidence and may lack track_id).
_FIELD_ALIASES = {"t": ("t", "ts"), "x": ("x",), "y": ("y",), "w": ("w",), "h": ("h",), "class_id": ("class_id",),
                  "track_id": ("track_id",), "class_confidence": ("class_confidence", "confidence")}
_OPTIONAL = {"track_id": 0}


def to_bbox_dtype(boxes: np.ndarray, source: str | os.PathLike = "<array>") -> np.ndarray:
    """Converts a structured box array (Metavision or Gen1 layout) to :data:`BBOX_DTYPE`.

    Args:
        boxes: (N,) structured array with t|ts, x, y, w, h, class_id, class_confidence|confidence and optionally
            track_id (0 when absent).
        source: file name used in error messages.
    Returns:
        (N,) BBOX_DTYPE array (the input itself when it already has that dtype).
    Raises:
        EventFileError: unknown layout (lists the fields found and expected), negative class ids or timestamps,
            timestamps not sorted.
    """
    names = boxes.dtype.names or ()
    if boxes.dtype == BBOX_DTYPE:
        out = boxes
    else:
        out = np.zeros(boxes.shape, dtype=BBOX_DTYPE)
        for field, aliases in _FIELD_ALIASES.items():
            found = next((a for a in aliases if a in names), None)
            if found is None and field not in _OPTIONAL:
                expected = ", ".join("|".join(a) + (" (optional)" if f in _OPTIONAL else "")
                                     for f, a in _FIELD_ALIASES.items())
                raise EventFileError(source, f"unknown box layout: fields {list(names)} (dtype {boxes.dtype}); "
                                             f"expected {expected}")
            if found is not None:
                if field in ("t", "class_id", "track_id") and boxes[found].dtype.kind not in "iu":
                    raise EventFileError(source, f"box field {found!r} has dtype {boxes[found].dtype}, expected "
                                                 "integers")
                if len(boxes) and boxes[found].dtype.kind == "i" and boxes[found].min() < 0:
                    raise EventFileError(source, f"box field {found!r} has negative values")
                out[field] = boxes[found]
    if out.ndim != 1:
        raise EventFileError(source, f"boxes should be a 1-D array, got shape {out.shape}")
    if len(out) and np.any(out["t"][1:] < out["t"][:-1]):
        i = int(np.argmax(out["t"][1:] < out["t"][:-1])) + 1
        raise EventFileError(source, f"box timestamps not sorted: box {i} has t={out['t'][i]} after "
                                     f"t={out['t'][i - 1]}")
    return out


def load_boxes(path: str | os.PathLike) -> np.ndarray:
    """Reads a ``*_bbox.npy`` file (Metavision BBOX_DTYPE, or Gen1 layout converted transparently).

    Returns:
        (N,) BBOX_DTYPE array sorted by t (us).
    """
    try:
        boxes = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (ValueError, OSError, EOFError) as err:
        raise EventFileError(path, f"not a readable .npy box file ({err})") from None
    if boxes.dtype.names is None:
        raise EventFileError(path, f"boxes should be a structured array, got dtype {boxes.dtype} shape {boxes.shape}")
    return to_bbox_dtype(boxes, path)


def save_boxes(path: str | os.PathLike, boxes: np.ndarray) -> None:
    """Writes boxes (any layout :func:`to_bbox_dtype` accepts) as a BBOX_DTYPE ``.npy`` file, atomically."""
    boxes = to_bbox_dtype(np.asarray(boxes), path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, boxes, allow_pickle=False)


def load_label_map(path: str | os.PathLike) -> dict[int, str]:
    """Reads ``label_map_dictionary.json`` (``{"0": "car", ...}``) as {class_id: name}."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise EventFileError(path, f"not valid JSON ({err})") from None
    if not isinstance(raw, dict):
        raise EventFileError(path, f"label map should be a JSON object {{\"0\": \"name\", ...}}, got "
                                   f"{type(raw).__name__}")
    mapping = {}
    for key, name in raw.items():
        if not (key.strip().isdigit() and isinstance(name, str)):
            raise EventFileError(path, f"label map entry {key!r}: {name!r} should map a non-negative integer id "
                                       "to a class name")
        mapping[int(key)] = name
    return mapping


def save_label_map(path: str | os.PathLike, mapping: Mapping[int, str]) -> None:
    """Writes {class_id: name} as ``label_map_dictionary.json`` (string keys, sorted by id), atomically."""
    for key, name in mapping.items():
        if not (isinstance(key, (int, np.integer)) and key >= 0 and isinstance(name, str)):
            raise ValueError(f"save_label_map({path}): entry {key!r}: {name!r} should map a non-negative int to a str")
    text = json.dumps({str(k): mapping[k] for k in sorted(mapping)}, indent=2)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")
