"""Detection labels: end-aligned time bins, class selection, the split check of bad label files, and the data module
feeding a finite loss even from bad boxes."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from evframe.data.box_processing import create_class_lookup
from evframe.data.metadata import FileMetadata
from evframe.io import EVENT_DTYPE, EventFileError, save_boxes, save_label_map, write_dat
from evframe.io.dtypes import BBOX_DTYPE
from evframe.tasks.detection.data_module import DetectionDataModule
from evframe.tasks.detection.labels import (
    DetectionLabelWarning,
    check_box_files,
    checked_recordings,
    load_detection_boxes,
    resolve_classes,
)
from evframe.tasks.detection.single_stage_detector import SingleStageDetector
from evframe.tasks.detection.targets import flatten_targets, labeled_mask

LABEL_MAP = {0: "car", 1: "pedestrian", 2: "two_wheeler"}


def make_boxes(rows: list[tuple]) -> np.ndarray:
    """rows of (t, x, y, w, h, class_id)."""
    out = np.zeros(len(rows), dtype=BBOX_DTYPE)
    for i, (t, x, y, w, h, c) in enumerate(rows):
        out[i]["t"], out[i]["x"], out[i]["y"], out[i]["w"], out[i]["h"], out[i]["class_id"] = t, x, y, w, h, c
    return out


def write_recording(folder: Path, name: str, boxes: np.ndarray | None, duration: int = 400_000) -> Path:
    """A 64x48 DAT recording with sparse random events over ``duration`` us, and its box file (None: none)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(name))
    events = np.zeros(2000, dtype=EVENT_DTYPE)
    events["x"], events["y"] = rng.integers(0, 64, 2000), rng.integers(0, 48, 2000)
    events["p"], events["t"] = rng.integers(0, 2, 2000), np.sort(rng.integers(0, duration, 2000))
    path = folder / f"{name}_td.dat"
    write_dat(path, events, 48, 64)
    if boxes is not None:
        save_boxes(folder / f"{name}_bbox.npy", boxes)
    return path


def test_boxes_belong_to_the_bin_that_ends_at_or_after_them(tmp_path: Path) -> None:
    rec = write_recording(tmp_path, "rec", make_boxes([
        (0, 1, 1, 10, 10, 0),          # at the batch start: the previous batch's last bin
        (50_000, 2, 2, 10, 10, 0),     # end of bin 0
        (100_000, 3, 3, 10, 10, 1),    # end of bin 1
        (100_001, 4, 4, 10, 10, 2),    # just after: bin 2
        (200_000, 5, 5, 10, 10, 0),    # end of bin 3 = end of the batch
    ]))
    md = FileMetadata(rec, 400_000, 50_000, 4, height=48, width=64)
    labels, labeled = load_detection_boxes(md, 0, 200_000, torch.zeros(4, 2, 48, 64))
    assert [b["x"].tolist() for b in labels] == [[2], [3], [4], [5]]
    assert labeled.tolist() == [True, True, True, True]
    labels, labeled = load_detection_boxes(md, 200_000, 200_000, torch.zeros(4, 2, 48, 64))
    assert sum(len(b) for b in labels) == 0 and not labeled.any()  # the box at 200 ms was the previous batch's


def test_class_selection_downsampling_and_min_diagonal(tmp_path: Path) -> None:
    save_label_map(tmp_path / "label_map_dictionary.json", LABEL_MAP)
    rec = write_recording(tmp_path, "rec", make_boxes([
        (50_000, 10, 10, 20, 12, 0), (50_000, 30, 20, 8, 8, 1), (50_000, 2, 2, 30, 30, 2), (50_000, 40, 4, 4, 4, 2)]))
    lookup = create_class_lookup(tmp_path / "label_map_dictionary.json", ["two_wheeler", "car"])
    md = FileMetadata(rec, 400_000, 50_000, 2, height=48, width=64, downsample=1)
    labels, _ = load_detection_boxes(md, 0, 100_000, torch.zeros(2, 2, 24, 32), class_lookup=lookup,
                                     min_box_diag_network=3)
    bin0 = labels[0]
    # pedestrian dropped (not wanted); the 4x4 box is 2x2 at half resolution: diagonal 2.8 < 3, dropped
    assert bin0["class_id"].tolist() == [2, 1]  # car -> 2, two_wheeler -> 1
    assert bin0[["x", "y", "w", "h"]].tolist() == [(5, 5, 10, 6), (1, 1, 15, 15)]
    assert resolve_classes(tmp_path / "label_map_dictionary.json", ["two_wheeler", "car"]) == ["two_wheeler", "car"]


def test_resolve_classes(tmp_path: Path) -> None:
    missing = tmp_path / "label_map_dictionary.json"
    assert resolve_classes(missing, [], synthetic_preset="tiny") == ["car", "pedestrian", "two_wheeler"]
    with pytest.raises(FileNotFoundError, match="label_map_dictionary.json"):
        resolve_classes(missing)
    save_label_map(missing, {0: "empty", 1: "car"})
    assert resolve_classes(missing) == ["car"]  # "empty" is never a class
    with pytest.raises(EventFileError, match=r"\['bus'\] are not in the label map"):
        resolve_classes(missing, ["bus"])


def test_split_check_counts_bad_labels_and_skips_recordings_without_any(tmp_path: Path) -> None:
    good = write_recording(tmp_path, "good", make_boxes([(50_000, 10, 10, 20, 12, 0)]))
    bad = write_recording(tmp_path, "bad", make_boxes([
        (50_000, 10, 10, 0, 12, 0),       # zero width
        (50_000, 10, 10, 5, 0, 1),        # zero height
        (50_000, 70, 10, 5, 5, 1),        # entirely right of the 64-px frame
        (50_000, 60, 40, 10, 10, 2),      # partly outside: clipped
        (50_000, 5, 5, 10, 10, 2),        # fine
    ]))
    unlabeled = write_recording(tmp_path, "unlabeled", None)
    empty = write_recording(tmp_path, "empty", make_boxes([]))
    report = check_box_files([good, bad, unlabeled, empty], LABEL_MAP, 48, 64)
    assert (report.degenerate, report.outside, report.clipped) == (2, 1, 1)
    assert report.without_labels == [unlabeled] and [p.name for p in report.empty] == ["empty_bbox.npy"]
    with pytest.warns(DetectionLabelWarning) as record:
        files = checked_recordings("train", [good, bad, unlabeled, empty], LABEL_MAP, 48, 64)
    assert files == [good, bad, empty]
    message = str(record[0].message)
    for part in ("1 recording(s) without a *_bbox.npy file skipped (unlabeled_td.dat)", "1 empty box file(s)",
                 "2 box(es) of zero width or height dropped", "1 box(es) entirely outside the 64x48",
                 "1 box(es) partly outside the 64x48 frame clipped", "bad_bbox.npy"):
        assert part in message
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to say about a clean split
        assert checked_recordings("train", [good], LABEL_MAP, 48, 64) == [good]
    with pytest.raises(FileNotFoundError, match="no recording of split 'val' has box labels"), \
            pytest.warns(DetectionLabelWarning):
        checked_recordings("val", [unlabeled], LABEL_MAP, 48, 64)


def test_unknown_class_ids_and_unreadable_box_files_are_clear_errors(tmp_path: Path) -> None:
    rec = write_recording(tmp_path, "rec", make_boxes([(50_000, 1, 1, 5, 5, 7)]))
    with pytest.raises(EventFileError, match=r"rec_bbox.npy: field class_id has ids \[7\] missing from the label map"):
        check_box_files([rec], LABEL_MAP, 48, 64)
    (tmp_path / "rec_bbox.npy").write_bytes(b"")
    with pytest.raises(EventFileError, match="rec_bbox.npy: not a readable .npy box file"):
        check_box_files([rec], LABEL_MAP, 48, 64)
    # a negative or non-finite size is a broken file, not a box to drop: the split check stops on it
    for w, shown in ((-5, "-5.0"), (np.nan, "nan")):
        np.save(tmp_path / "rec_bbox.npy", make_boxes([(50_000, 1, 1, 5, 5, 0), (50_000, 10, 10, w, 12, 1)]))
        with pytest.raises(EventFileError, match=rf"rec_bbox.npy: box field 'w' of box 1 is {shown}, expected a "
                                                 r"finite float32 width >= 0"):
            checked_recordings("train", [rec], LABEL_MAP, 48, 64)


def test_data_module_feeds_finite_losses_from_bad_boxes(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    save_label_map(root / "label_map_dictionary.json", LABEL_MAP) if root.mkdir() is None else None
    write_recording(root / "train", "a", make_boxes([
        (t, x, 8, w, 20, c) for t in range(50_000, 400_001, 50_000)
        for x, w, c in ((-10, 30, 0), (50, 30, 1), (20, 0, 2), (100, 5, 0))]))  # clipped, clipped, empty, outside
    write_recording(root / "train", "b", None)
    dataset = {"root": str(root), "label_map": str(root / "label_map_dictionary.json"), "height": 48, "width": 64,
               "batch_size": 2, "num_workers": 0}
    preprocess = {"name": "histo", "delta_t": 50_000, "num_tbins": 4, "downsample": 0, "kwargs": {}, "channels": 2}
    dm = DetectionDataModule(dataset, preprocess)
    assert dm.classes == ["car", "pedestrian", "two_wheeler"]
    with pytest.warns(DetectionLabelWarning, match="1 recording"):
        loader = dm.train_dataloader()
    batches = list(loader)
    assert len(batches) == 2
    first = batches[0]["labels"][0][0]
    assert first[["x", "w", "class_id"]].tolist() == [(0, 20, 1), (50, 14, 2)]  # clipped to the frame, ids 1..C
    det = SingleStageDetector("Vanilla", 2, 3, feature_base=4, feature_channels_out=8, num_levels=2, base_size=16,
                              stem_depth=2)
    for batch in batches:
        det.reset(batch["mask_keep_memory"])
        loss = det.compute_loss(batch["inputs"], flatten_targets(batch["labels"]), labeled_mask(batch))
        assert all(torch.isfinite(v) for v in loss.values())
    # stream 1 is padding (recording b has no labels); stream 0's last bin ends at 400 ms and holds the 400 ms boxes
    assert labeled_mask(batches[1]).view(4, 2).tolist() == [[True, False]] * 4


def test_targets_leave_out_nan_and_empty_boxes_so_the_loss_stays_finite() -> None:
    boxes = make_boxes([(0, 1, 1, 10, 10, 1), (0, float("nan"), 1, 10, 10, 1), (0, 5, 5, 0, 3, 2),
                        (0, 2, 2, float("inf"), 4, 1)])
    (targets,) = flatten_targets([[boxes]])
    assert targets.tolist() == [[1, 1, 11, 11, 1]]
    det = SingleStageDetector("Vanilla", 2, 2, feature_base=4, feature_channels_out=8, num_levels=2, base_size=16,
                              stem_depth=2)
    loss = det.compute_loss(torch.rand(1, 1, 2, 32, 32), flatten_targets([[boxes]]))
    assert all(torch.isfinite(v) for v in loss.values())


def test_a_list_of_recordings_without_label_map_fails_naming_the_key() -> None:
    from evframe.tasks.detection import DetectionDataModule
    from evframe.tasks.detection.labels import resolve_classes

    with pytest.raises(ValueError, match=r"needs a label map: dataset.label_map=<path of label_map_dictionary.json>"):
        resolve_classes(None)
    datamodule = DetectionDataModule({"paths": ["a.raw"], "label_map": None, "height": 8, "width": 8},
                                     {"name": "histo", "delta_t": 1000, "num_tbins": 2, "channels": 2})
    with pytest.raises(ValueError, match=r"dataset.paths\) needs dataset.label_map="):
        datamodule.files("train")
