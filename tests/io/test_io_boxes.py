import json

import numpy as np
import pytest

from evframe.io import BBOX_DTYPE, EventFileError, load_boxes, load_label_map, save_boxes, save_label_map

GEN1_DTYPE = np.dtype([("ts", "<u8"), ("x", "<f4"), ("y", "<f4"), ("w", "<f4"), ("h", "<f4"), ("class_id", "u1"),
                       ("confidence", "<f4"), ("track_id", "<u4")])


def make_boxes() -> np.ndarray:
    boxes = np.zeros(3, dtype=BBOX_DTYPE)
    boxes["t"] = [0, 50_000, 50_000]
    boxes["x"], boxes["y"], boxes["w"], boxes["h"] = [1.5, 2, 3], [4, 5, 6.25], [10, 11, 12], [20, 21, 22]
    boxes["class_id"], boxes["track_id"], boxes["class_confidence"] = [0, 2, 1], [7, 8, 9], [1, 0.5, 0.25]
    return boxes


def test_boxes_round_trip(tmp_path):
    boxes = make_boxes()
    path = tmp_path / "rec_bbox.npy"
    save_boxes(path, boxes)
    loaded = load_boxes(path)
    assert loaded.dtype == BBOX_DTYPE and loaded.tobytes() == boxes.tobytes()
    assert [p.name for p in tmp_path.iterdir()] == ["rec_bbox.npy"]


@pytest.mark.parametrize("with_track", [True, False])
def test_gen1_layout_is_converted(tmp_path, with_track):
    gen1 = np.zeros(2, dtype=GEN1_DTYPE if with_track else
                    np.dtype([(n, GEN1_DTYPE[n]) for n in GEN1_DTYPE.names if n != "track_id"]))
    gen1["ts"], gen1["x"], gen1["y"], gen1["w"], gen1["h"] = [100, 200], [1, 2], [3, 4], [5, 6], [7, 8]
    gen1["class_id"], gen1["confidence"] = [1, 0], [1.0, 0.75]
    if with_track:
        gen1["track_id"] = [11, 12]
    path = tmp_path / "gen1_bbox.npy"
    np.save(path, gen1)
    boxes = load_boxes(path)
    assert boxes.dtype == BBOX_DTYPE
    assert boxes.tolist() == [(100, 1, 3, 5, 7, 1, 11 if with_track else 0, 1.0),
                              (200, 2, 4, 6, 8, 0, 12 if with_track else 0, 0.75)]


def test_bad_box_files(tmp_path):
    unknown = np.zeros(2, dtype=[("time", "<i8"), ("x", "<f4"), ("y", "<f4")])
    np.save(tmp_path / "u_bbox.npy", unknown)
    with pytest.raises(EventFileError, match=r"u_bbox\.npy: box field 't\|ts' is missing: unknown box layout, "
                                             r"fields \['time', 'x', 'y'\].*expected t\|ts, x, y, w, h, class_id, "
                                             r"track_id \(optional\), class_confidence\|confidence"):
        load_boxes(tmp_path / "u_bbox.npy")
    np.save(tmp_path / "plain_bbox.npy", np.zeros((3, 4)))
    with pytest.raises(EventFileError, match=r"plain_bbox\.npy: boxes should be a 1-D structured array"):
        load_boxes(tmp_path / "plain_bbox.npy")
    (tmp_path / "junk_bbox.npy").write_bytes(b"not numpy at all")
    with pytest.raises(EventFileError, match=r"junk_bbox\.npy: not a readable \.npy"):
        load_boxes(tmp_path / "junk_bbox.npy")
    unsorted = make_boxes()[::-1]
    np.save(tmp_path / "s_bbox.npy", unsorted)
    with pytest.raises(EventFileError, match=r"s_bbox\.npy: box timestamps not sorted: box field 't' of box 2 is 0, "
                                             r"after 50000 at box 1; expected times in increasing order"):
        load_boxes(tmp_path / "s_bbox.npy")
    negative = np.zeros(1, dtype=[(n, "<i8" if n == "ts" else GEN1_DTYPE[n]) for n in GEN1_DTYPE.names])
    negative["ts"] = -5
    np.save(tmp_path / "n_bbox.npy", negative)
    with pytest.raises(EventFileError, match="box field 'ts' of box 0 is -5, expected an integer time in us"):
        load_boxes(tmp_path / "n_bbox.npy")
    with pytest.raises(FileNotFoundError):
        load_boxes(tmp_path / "missing_bbox.npy")


def test_label_map_round_trip(tmp_path):
    path = tmp_path / "label_map_dictionary.json"
    save_label_map(path, {2: "truck", 0: "car", 1: "pedestrian"})
    assert json.loads(path.read_text()) == {"0": "car", "1": "pedestrian", "2": "truck"}
    assert list(json.loads(path.read_text())) == ["0", "1", "2"]
    assert load_label_map(path) == {0: "car", 1: "pedestrian", 2: "truck"}


@pytest.mark.parametrize("text, message", [
    ("{not json", "not valid JSON"),
    ('["car"]', "should be a JSON object"),
    ('{"car": "0"}', "label map key 'car': expected a non-negative integer id written in decimal digits"),
    ('{"0": 5}', r"label map key '0': maps to 5, expected a non-empty class name \(a string\)"),
])
def test_bad_label_maps(tmp_path, text, message):
    path = tmp_path / "label_map_dictionary.json"
    path.write_text(text)
    with pytest.raises(EventFileError, match=message) as info:
        load_label_map(path)
    assert "label_map_dictionary.json" in str(info.value)
    with pytest.raises(ValueError, match="non-negative int"):
        save_label_map(path, {"0": "car"})
