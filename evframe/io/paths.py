"""Where the labels of a recording live: ``<dir>/<name>[_td].<ext>`` -> ``<dir>/<name><suffix>``."""

from __future__ import annotations

import os
from pathlib import Path

_DATA_TAG = "_td"  # Metavision names event files <name>_td.dat; labels drop the tag: <name>_bbox.npy


def recording_name(data_path: str | os.PathLike) -> str:
    """``/a/rec_td.dat`` -> ``rec``; ``/a/rec.h5`` -> ``rec`` (extension and one trailing ``_td`` removed)."""
    stem = Path(data_path).stem
    return stem[: -len(_DATA_TAG)] if stem.endswith(_DATA_TAG) else stem


def label_path(data_path: str | os.PathLike, suffix: str) -> Path:
    """Path of the label file beside ``data_path``: ``label_path("/a/rec_td.dat", "_bbox.npy")`` ->
    ``/a/rec_bbox.npy``; also for ``rec.h5`` (precomputed tensors) and ``rec_td.raw``."""
    return Path(data_path).with_name(recording_name(data_path) + suffix)
