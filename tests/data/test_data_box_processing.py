"""Box label loading: bin assignment, class lookup, rescaling, caching."""

import json

import numpy as np
import pytest
import torch

import evframe.io
from evframe.data import box_processing as box_api
from evframe.data.metadata import FileMetadata
from evframe.io import BBOX_DTYPE, save_boxes


def _boxes(rows):
    """rows of (t, x, y, w, h, class_id)."""
    out = np.zeros(len(rows), dtype=BBOX_DTYPE)
    for i, (t, x, y, w, h, c) in enumerate(rows):
        out[i] = (t, x, y, w, h, c, i, 1.0)
    return out


def test_split_boxes_half_open_bins():
    boxes = _boxes([(t, 0, 0, 1, 1, 0) for t in (30, 0, 9, 10, 19, 20, 29, -1)])
    bins = box_api.split_boxes(boxes, batch_start_time=0, delta_t=10, num_tbins=3)
    assert [list(b["t"]) for b in bins] == [[0, 9], [10, 19], [20, 29]]
    assert all(b.dtype == BBOX_DTYPE for b in bins)
    later = box_api.split_boxes(boxes, batch_start_time=30, delta_t=10, num_tbins=2)
    assert [list(b["t"]) for b in later] == [[30], []]


def test_create_class_lookup(tmp_path):
    path = tmp_path / "label_map_dictionary.json"
    path.write_text(json.dumps({"0": "car", "1": "empty", "2": "ped", "3": "bike"}))
    np.testing.assert_array_equal(box_api.create_class_lookup(path, ["ped", "car"]), [2, -1, 1, -1])
    np.testing.assert_array_equal(box_api.create_class_lookup(path, []), [1, -1, 2, 3])
    with pytest.raises(ValueError, match="truck"):
        box_api.create_class_lookup(path, ["truck"])


def test_labelled_bins_with_labelling_period():
    empty = _boxes([])
    np.testing.assert_array_equal(box_api.labelled_bins(empty, 0, 10, 4, labelling_delta_t=15),
                                  [True, True, False, True])  # ticks at 0, 15, 30
    with_box = _boxes([(12, 0, 0, 1, 1, 0)])
    np.testing.assert_array_equal(box_api.labelled_bins(with_box, 0, 10, 3), [False, True, False])


@pytest.fixture
def recording(tmp_path):
    box_api.clear_box_cache()
    boxes = _boxes([
        (5, 10, 4, 6, 8, 0),     # bin 0, class car
        (15, 30, 10, 2, 2, 2),   # bin 1, class ped, tiny
        (15, 60, 20, 10, 10, 1),  # bin 1, unwanted class, partly outside the 64x32 sensor
        (25, 0, 0, 4, 4, 0),     # next batch (batch = 2 bins of 10 us)
    ])
    save_boxes(tmp_path / "rec_bbox.npy", boxes)
    return FileMetadata(tmp_path / "rec_td.dat", 40, 10, 2, height=32, width=64)


def test_load_box_events_selects_half_open_window(recording):
    assert list(box_api.load_box_events(recording, 0, 20)["t"]) == [5, 15, 15]
    assert list(box_api.load_box_events(recording, 20, 20)["t"]) == [25]
    assert list(box_api.load_box_events(recording, 15, 10)["t"]) == [15, 15]


def test_load_boxes_lookup_rescale_filter(recording):
    lookup = np.array([1, -1, 2])  # car -> 1, class 1 unwanted, ped -> 2
    tensor = torch.zeros(2, 2, 32, 64)
    labels, labelled = box_api.load_boxes(recording, 0, 20, tensor, class_lookup=lookup)
    np.testing.assert_array_equal(labelled, [True, True])
    assert [len(b) for b in labels] == [1, 1]
    assert labels[1]["class_id"][0] == 2
    # the unwanted box still marks its bin as labelled; a too small box is dropped, the bin stays labelled
    labels, labelled = box_api.load_boxes(recording, 0, 20, tensor, class_lookup=lookup, min_box_diag_network=3)
    assert [len(b) for b in labels] == [1, 0] and labelled.tolist() == [True, True]

    # downsample 1: coordinates halved, boxes clipped to the 32x16 tensor
    half = FileMetadata(recording.path, 40, 10, 2, height=32, width=64, downsample=1)
    labels, _ = box_api.load_boxes(half, 0, 20, torch.zeros(2, 2, 16, 32))
    b0 = labels[0][0]
    assert (b0["x"], b0["y"], b0["w"], b0["h"]) == (5, 2, 3, 4)
    clipped = labels[1][labels[1]["class_id"] == 1][0]
    assert (clipped["x"], clipped["y"], clipped["w"], clipped["h"]) == (30, 10, 2, 5)


def test_unknown_class_id_is_reported(recording):
    with pytest.raises(ValueError, match="class_id 2 is not in the label map"):
        box_api.load_boxes(recording, 0, 20, torch.zeros(2, 2, 32, 64), class_lookup=np.array([1, 2]))


def test_box_file_read_once_per_process(recording, monkeypatch):
    calls = []
    real = evframe.io.load_boxes
    monkeypatch.setattr(evframe.io, "load_boxes", lambda p: calls.append(p) or real(p))
    for start in (0, 20, 40):
        box_api.load_boxes(recording, start, 20, torch.zeros(2, 2, 32, 64))
    assert len(calls) == 1


def test_rescale_and_clip_drops_non_finite_boxes_and_clips_the_rest():
    from evframe.data.box_processing import rescale_and_clip_boxes

    rows = [(0, 10.0, 10.0, 20.0, 20.0), (0, 5.0, 5.0, np.inf, 10.0), (0, np.nan, 0.0, 4.0, 4.0),
            (0, 90.0, 40.0, 20.0, 20.0)]
    boxes = np.zeros(len(rows), dtype=BBOX_DTYPE)
    for i, (t, x, y, w, h) in enumerate(rows):
        boxes[i]["t"], boxes[i]["x"], boxes[i]["y"], boxes[i]["w"], boxes[i]["h"] = t, x, y, w, h
    out = rescale_and_clip_boxes(boxes, 0.5, 30, 50)  # 60x100 sensor at half size
    # box 0 scaled to (5, 5, 10, 10); box 3 scaled to (45, 20, 10, 10), clipped at x = 50: width 5
    assert [tuple(float(b[k]) for k in ("x", "y", "w", "h")) for b in out] == [(5, 5, 10, 10), (45, 20, 5, 10)]
