"""Box labels for the detection task: classes, the loader's ``load_labels`` hook, and the check of a split's label
files before training (Metavision's ``data_factory`` helpers)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evframe.data.box_processing import load_boxes
from evframe.data.metadata import FileMetadata
from evframe.io.errors import EventFileError
from evframe.io.paths import label_path

LABEL_MAP_NAME = "label_map_dictionary.json"


class DetectionLabelWarning(UserWarning):
    """Some labels were dropped or clipped, or some recordings have no labels (the message counts them)."""


def setup_psee_classes(label_map_path: str | os.PathLike, wanted_classes: Sequence[str] = ()) -> list[str]:
    """Class names trained on, in the order of their ids 1..C.

    Args:
        label_map_path: ``label_map_dictionary.json``.
        wanted_classes: names to keep (in this order); empty keeps every class of the map except ``"empty"``, by id.
    Raises:
        EventFileError: a wanted class is not in the label map (the message lists the available ones).
    """
    from evframe.io import load_label_map

    label_map = load_label_map(label_map_path)
    return _select(label_map, wanted_classes, label_map_path)


def _select(label_map: dict[int, str], wanted_classes: Sequence[str], source: str | os.PathLike) -> list[str]:
    names = [name for _, name in sorted(label_map.items())]
    if not wanted_classes:
        return [name for name in names if name != "empty"]
    missing = [name for name in wanted_classes if name not in names]
    if missing:
        raise EventFileError(source, f"wanted_classes {missing} are not in the label map (available: {names})")
    return list(wanted_classes)


def resolve_classes(label_map: str | os.PathLike, wanted_classes: Sequence[str] = (),
                    synthetic_preset: str | None = None) -> list[str]:
    """:func:`setup_psee_classes`, or, while a synthetic dataset is not generated yet, the preset's classes (its
    label map will list them by id), so that a model can be built before its data exists."""
    if not label_map and not synthetic_preset:
        raise ValueError("task=detection needs a label map: dataset.label_map=<path of label_map_dictionary.json> "
                         "(a dataset folder has one at its root)")
    if not Path(label_map or "").is_file() and synthetic_preset:
        from evframe.data.synthetic import get_config

        return _select(dict(enumerate(get_config(synthetic_preset).classes)), wanted_classes,
                       f"synthetic preset {synthetic_preset!r}")
    if not Path(label_map).is_file():
        raise FileNotFoundError(f"{label_map}: label map not found (expected {LABEL_MAP_NAME} at the dataset root, "
                                f"mapping class ids to names)")
    return setup_psee_classes(label_map, wanted_classes)


def load_detection_boxes(metadata: FileMetadata, batch_start_time: int, duration: int, tensor: Any,
                         class_lookup: np.ndarray | None = None, min_box_diag_network: float = 0,
                         labelling_delta_t: int | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """``load_labels`` hook of the detection task: :func:`evframe.data.box_processing.load_boxes` with bins closed
    at their end.

    A box labelled at time ``t`` describes the scene once the events up to ``t`` happened, so it is the target of
    the bin ``(t0 + k * delta_t, t0 + (k + 1) * delta_t]`` that ends at or after it (a box exactly on a bin boundary
    is learnt from the events before it, not after). Every box still lands in exactly one batch.

    Returns:
        (num_tbins BBOX_DTYPE arrays in network pixels with class ids 1..C, frame_is_labeled (num_tbins,) bool).
    """
    return load_boxes(metadata, batch_start_time + 1, duration, tensor, class_lookup, min_box_diag_network,
                      labelling_delta_t)


@dataclass
class LabelReport:
    """What :func:`check_box_files` found in a split."""

    files: list[Path] = field(default_factory=list)  # recordings with a readable box file
    without_labels: list[Path] = field(default_factory=list)
    empty: list[Path] = field(default_factory=list)
    degenerate: int = 0  # zero width or height (negative or non-finite sizes are refused by the file reader)
    outside: int = 0  # entirely outside the frame
    clipped: int = 0  # partly outside the frame
    files_with_issues: list[str] = field(default_factory=list)

    def message(self, split: str, height: int, width: int) -> str | None:
        """The warning text, or None when all is well."""
        parts = []
        if self.without_labels:
            parts.append(f"{len(self.without_labels)} recording(s) without a *_bbox.npy file skipped "
                         f"({', '.join(p.name for p in self.without_labels[:5])})")
        if self.empty:
            parts.append(f"{len(self.empty)} empty box file(s) ({', '.join(p.name for p in self.empty[:5])}): "
                         "their frames count as unlabelled")
        if self.degenerate:
            parts.append(f"{self.degenerate} box(es) of zero width or height dropped")
        if self.outside:
            parts.append(f"{self.outside} box(es) entirely outside the {width}x{height} frame dropped")
        if self.clipped:
            parts.append(f"{self.clipped} box(es) partly outside the {width}x{height} frame clipped")
        if not parts:
            return None
        where = f" in {', '.join(self.files_with_issues[:5])}" if self.files_with_issues else ""
        return f"detection labels of split '{split}': " + "; ".join(parts) + where


def check_box_files(recordings: Sequence[str | os.PathLike], label_ids: Sequence[int], height: int,
                    width: int) -> LabelReport:
    """Reads every recording's ``*_bbox.npy`` once and counts what the loader will drop or clip.

    Args:
        recordings: recording files of one split.
        label_ids: class ids of the label map.
        height, width: sensor size (box coordinates are sensor pixels).
    Raises:
        EventFileError: an unreadable or invalid box file (:func:`evframe.io.load_boxes` refuses non-finite
            coordinates, negative sizes or times, out-of-range ids), or class ids that the label map does not name
            (the message gives the file, the ids and those of the map).
    """
    from evframe.io import load_boxes as read_box_file

    report = LabelReport()
    known = np.asarray(sorted(int(i) for i in label_ids), dtype=np.int64)
    for recording in recordings:
        path = label_path(recording, "_bbox.npy")
        if not path.is_file():
            report.without_labels.append(Path(recording))
            continue
        boxes = read_box_file(path)
        report.files.append(Path(recording))
        if len(boxes) == 0:
            report.empty.append(path)
            continue
        unknown = np.setdiff1d(boxes["class_id"].astype(np.int64), known)
        if len(unknown):
            raise EventFileError(path, f"field class_id has ids {unknown.tolist()[:10]} missing from the label map "
                                       f"(ids {known.tolist()})")
        x, y, w, h = (boxes[k].astype(np.float64) for k in ("x", "y", "w", "h"))
        degenerate = (w == 0) | (h == 0)  # load_boxes guarantees finite values and sizes >= 0
        outside = ~degenerate & ((x >= width) | (y >= height) | (x + w <= 0) | (y + h <= 0))
        clipped = ~degenerate & ~outside & ((x < 0) | (y < 0) | (x + w > width) | (y + h > height))
        counts = int(degenerate.sum()), int(outside.sum()), int(clipped.sum())
        report.degenerate += counts[0]
        report.outside += counts[1]
        report.clipped += counts[2]
        if any(counts):
            report.files_with_issues.append(path.name)
    return report


def checked_recordings(split: str, recordings: Sequence[str | os.PathLike], label_ids: Sequence[int], height: int,
                       width: int) -> list[Path]:
    """The recordings of ``split`` that have box labels, after warning (:class:`DetectionLabelWarning`) about what
    :func:`check_box_files` counted.

    Raises:
        FileNotFoundError: no recording of the split has labels.
    """
    report = check_box_files(recordings, label_ids, height, width)
    message = report.message(split, height, width)
    if message:
        warnings.warn(message, DetectionLabelWarning, stacklevel=2)
    if not report.files:
        folder = Path(recordings[0]).parent if recordings else split
        raise FileNotFoundError(f"{folder}: no recording of split '{split}' has box labels (expected "
                                f"<name>_bbox.npy beside each <name>_td.dat or <name>.h5)")
    return report.files


__all__ = ["DetectionLabelWarning", "LABEL_MAP_NAME", "LabelReport", "check_box_files", "checked_recordings",
           "load_detection_boxes", "resolve_classes", "setup_psee_classes"]
