"""Label files refused with one clear error (file, field, index, what was expected): box files of every layout,
dense flow files with bad timestamps, label maps with ambiguous keys, and files that are not what they claim."""

from __future__ import annotations

import io
import json
import zipfile

import h5py
import numpy as np
import pytest

from evframe.data.labels import load_flow
from evframe.data.metadata import FileMetadata
from evframe.io import (
    BBOX_DTYPE,
    EventFileError,
    FlowLabelsReader,
    load_boxes,
    load_label_map,
    save_boxes,
    save_label_map,
    write_flow_h5,
)

# The two layouts of Prophesee's public datasets: Gen1 (ts, confidence) and 1Mpx (t as uint64, class_id as uint8).
GEN1 = [("ts", "<u8"), ("x", "<f4"), ("y", "<f4"), ("w", "<f4"), ("h", "<f4"), ("class_id", "u1"),
        ("confidence", "<f4"), ("track_id", "<u4")]
MPX = [("t", "<u8"), ("x", "<f4"), ("y", "<f4"), ("w", "<f4"), ("h", "<f4"), ("class_id", "u1"),
       ("class_confidence", "<f4"), ("track_id", "<u4")]


def boxes_of(dtype, n: int = 3) -> np.ndarray:
    """n valid boxes at t = 0, 10, 20 us, 4x6 px at (1, 2), class 1, track 5, confidence 1."""
    boxes = np.zeros(n, dtype=dtype)
    names = boxes.dtype.names
    boxes["ts" if "ts" in names else "t"] = np.arange(n) * 10
    boxes["x"], boxes["y"], boxes["w"], boxes["h"], boxes["class_id"] = 1, 2, 4, 6, 1
    boxes["confidence" if "confidence" in names else "class_confidence"] = 1
    if "track_id" in names:
        boxes["track_id"] = 5
    return boxes


def refused(tmp_path, array: np.ndarray, match: str, name: str = "rec_bbox.npy") -> EventFileError:
    """Saves ``array`` as ``name`` and checks that load_boxes refuses it with a message naming the file."""
    path = tmp_path / name
    np.save(path, array, allow_pickle=True)
    with pytest.raises(EventFileError, match=match) as info:
        load_boxes(path)
    assert str(info.value).startswith(f"{path}: ")
    return info.value


@pytest.mark.parametrize("field, value, shown", [
    ("x", np.nan, "nan"), ("y", np.inf, "inf"), ("x", -np.inf, "-inf"), ("w", -1.5, "-1.5"), ("h", -0.25, "-0.25"),
    ("w", np.nan, "nan"), ("class_confidence", 1.5, "1.5"), ("class_confidence", -0.5, "-0.5"),
    ("class_confidence", np.nan, "nan"), ("t", -5, "-5"),
])
def test_metavision_dtype_values_are_checked(tmp_path, field, value, shown):
    boxes = boxes_of(BBOX_DTYPE)
    boxes[field][1] = value
    refused(tmp_path, boxes, rf"box field '{field}' of box 1 is {shown}, expected ")


def test_messages_say_what_was_expected(tmp_path):
    boxes = boxes_of(BBOX_DTYPE)
    boxes["w"][2] = -3
    err = refused(tmp_path, boxes, "w")
    assert err.message == "box field 'w' of box 2 is -3.0, expected a finite float32 width >= 0 in pixels"
    boxes = boxes_of(BBOX_DTYPE)
    boxes["t"][0] = -1
    err = refused(tmp_path, boxes, "t")
    assert err.message == "box field 't' of box 0 is -1, expected an integer time in us, 0 <= t < 2**63"


@pytest.mark.parametrize("layout", [GEN1, MPX])
def test_ids_are_never_wrapped(tmp_path, layout):
    wide = [(n, "<u8" if n in ("class_id", "track_id") else f) for n, f in layout]
    boxes = boxes_of(wide)
    boxes["class_id"][2] = 2 ** 32 + 1  # would become class 1 as uint32
    refused(tmp_path, boxes, r"box field 'class_id' of box 2 is 4294967297, expected an integer class id, "
                             r"0 <= id < 2\*\*32")
    boxes = boxes_of(wide)
    boxes["track_id"][0] = 2 ** 32
    refused(tmp_path, boxes, "box field 'track_id' of box 0 is 4294967296")
    signed = [(n, "<i8" if n in ("class_id", "track_id") else f) for n, f in layout]
    boxes = boxes_of(signed)
    boxes["class_id"][1] = -1
    refused(tmp_path, boxes, "box field 'class_id' of box 1 is -1")
    boxes = boxes_of(wide)
    boxes["class_id"][2] = 2 ** 32 - 1  # the largest uint32 is a valid id
    save_boxes(tmp_path / "ok_bbox.npy", boxes)
    assert load_boxes(tmp_path / "ok_bbox.npy")["class_id"].tolist() == [1, 1, 2 ** 32 - 1]


@pytest.mark.parametrize("layout", [GEN1, MPX])
def test_dataset_layouts_checked_and_converted(tmp_path, layout):
    boxes = boxes_of(layout)
    path = tmp_path / "ds_bbox.npy"
    np.save(path, boxes)
    assert load_boxes(path).tolist() == [(0, 1, 2, 4, 6, 1, 5, 1.0), (10, 1, 2, 4, 6, 1, 5, 1.0),
                                         (20, 1, 2, 4, 6, 1, 5, 1.0)]
    t_name = layout[0][0]
    late = boxes.copy()
    late[t_name][2] = 2 ** 63  # fits uint64, not the int64 of BBOX_DTYPE
    refused(tmp_path, late, rf"box field '{t_name}' of box 2 is 9223372036854775808, expected an integer time")
    for field, value in (("x", np.nan), ("h", -1.0)):
        bad = boxes.copy()
        bad[field][0] = value
        refused(tmp_path, bad, rf"box field '{field}' of box 0 is ")
    conf = "confidence" if layout is GEN1 else "class_confidence"
    bad = boxes.copy()
    bad[conf][1] = 2.0
    refused(tmp_path, bad, rf"box field '{conf}' of box 1 is 2.0, expected a finite confidence between 0 and 1")


def test_float64_beyond_float32_is_refused(tmp_path):
    boxes = boxes_of([(n, "<f8" if n == "x" else f) for n, f in MPX])
    boxes["x"][1] = 1e300  # float32 would store inf
    refused(tmp_path, boxes, r"box field 'x' of box 1 is 1e\+300, expected a finite float32 coordinate")


@pytest.mark.parametrize("field, fmt, expected", [
    ("x", "<U8", "real numbers"), ("class_id", "<f4", "integers"), ("t", "<f8", "integers"),
    ("class_id", "?", "integers"), ("w", "S4", "real numbers"), ("h", "<c8", "real numbers"),
    ("y", ("<f4", (2,)), "real numbers"),
])
def test_odd_field_types(tmp_path, field, fmt, expected):
    dtype = [(n, fmt if n == field else f) for n, f in zip(BBOX_DTYPE.names, ("<i8", "<f4", "<f4", "<f4", "<f4",
                                                                               "<u4", "<u4", "<f4"), strict=True)]
    refused(tmp_path, np.zeros(2, dtype=dtype), rf"box field '{field}' has dtype .*, expected {expected} \(")


def test_odd_arrays(tmp_path):
    refused(tmp_path, np.zeros((), dtype=BBOX_DTYPE),
            r"boxes should be a 1-D structured array with fields t\|ts, x, y, .*; got dtype .* shape \(\)")
    refused(tmp_path, np.zeros((2, 2), dtype=BBOX_DTYPE), r"1-D structured array .* shape \(2, 2\)")
    refused(tmp_path, np.zeros((3, 8)), r"1-D structured array .*; got dtype float64 shape \(3, 8\)")
    refused(tmp_path, np.float64(3.0), r"1-D structured array .* shape \(\)")
    refused(tmp_path, np.array([{"x": 1}, None], dtype=object), r"not a readable \.npy box file .*allow_pickle")
    refused(tmp_path, np.zeros(2, dtype=[("t", "<i8"), ("x", "O")]), r"not a readable \.npy box file")
    no_w = np.zeros(2, dtype=[(n, BBOX_DTYPE[n]) for n in BBOX_DTYPE.names if n != "w"])
    refused(tmp_path, no_w, r"box field 'w' is missing: unknown box layout, fields \['t', 'x', 'y', 'h', "
                            r"'class_id', 'track_id', 'class_confidence'\]")
    both = np.zeros(2, dtype=[("ts", "<i8")] + [(n, BBOX_DTYPE[n]) for n in BBOX_DTYPE.names])
    refused(tmp_path, both, r"box fields \['t', 'ts'\] are the same field 't'; expected only one")


def test_zero_size_boxes_are_kept_and_extra_fields_ignored(tmp_path):
    boxes = boxes_of(MPX + [("annotator", "<U4")])
    boxes["w"][0], boxes["h"][2] = 0, 0
    path = tmp_path / "z_bbox.npy"
    np.save(path, boxes)
    loaded = load_boxes(path)
    assert loaded.dtype == BBOX_DTYPE
    assert loaded["w"].tolist() == [0, 4, 4] and loaded["h"].tolist() == [6, 6, 0]
    assert loaded["t"].tolist() == [0, 10, 20] and loaded["class_confidence"].tolist() == [1, 1, 1]


def test_save_boxes_refuses_what_load_boxes_refuses(tmp_path):
    boxes = boxes_of(BBOX_DTYPE)
    boxes["h"][1] = np.nan
    with pytest.raises(EventFileError, match=r"out_bbox\.npy: box field 'h' of box 1 is nan"):
        save_boxes(tmp_path / "out_bbox.npy", boxes)
    assert list(tmp_path.iterdir()) == []


def test_files_that_are_not_box_files(tmp_path):
    boxes = boxes_of(BBOX_DTYPE)
    buffer = io.BytesIO()
    np.save(buffer, boxes)
    data = buffer.getvalue()
    path = tmp_path / "t_bbox.npy"
    for cut in range(len(data)):  # a file cut anywhere, header included
        path.write_bytes(data[:cut])
        with pytest.raises(EventFileError, match=r"t_bbox\.npy: not a readable \.npy box file"):
            load_boxes(path)
    path.write_text("t,x,y,w,h\n0,1,2,3,4\n")  # a CSV named .npy
    with pytest.raises(EventFileError, match=r"t_bbox\.npy: not a readable \.npy box file"):
        load_boxes(path)
    with open(path, "wb") as f:
        np.savez(f, boxes=boxes)
    assert zipfile.is_zipfile(path)
    with pytest.raises(EventFileError, match=r"t_bbox\.npy: not a \.npy box file: numpy opened it as NpzFile"):
        load_boxes(path)
    (tmp_path / "dir_bbox.npy").mkdir()
    with pytest.raises(EventFileError, match=r"dir_bbox\.npy: not a readable \.npy box file \(IsADirectoryError"):
        load_boxes(tmp_path / "dir_bbox.npy")
    with pytest.raises(FileNotFoundError, match=r"absent_bbox\.npy"):
        load_boxes(tmp_path / "absent_bbox.npy")


def write_raw_flow(path, timestamps) -> None:
    """A flow file as another tool might write it, without write_flow_h5's checks."""
    with h5py.File(path, "w") as f:
        f["flow"] = np.zeros((len(timestamps), 2, 3, 4), np.float32)
        f["timestamps"] = np.asarray(timestamps, dtype=np.int64)


@pytest.mark.parametrize("timestamps, message", [
    ([0, 20, 10, 30], "at index 2: 10 us comes before 20 us at index 1; expected strictly increasing times"),
    ([0, 10, 10, 30], "at index 2: 10 us repeats 10 us at index 1; expected strictly increasing times"),
    ([5, 5], "at index 1: 5 us repeats 5 us at index 0; expected strictly increasing times"),
    ([2 ** 62, -(2 ** 63)], f"at index 1: {-(2 ** 63)} us comes before {2 ** 62} us at index 0; expected strictly "
                            "increasing times"),
])
def test_flow_timestamps_must_increase(tmp_path, timestamps, message):
    path = tmp_path / "rec_flow.h5"
    write_raw_flow(path, timestamps)
    with pytest.raises(EventFileError) as info:
        FlowLabelsReader(path)
    assert str(info.value) == f"{path}: dataset 'timestamps' {message}"
    # the loader's flow hook gives the same answer
    md = FileMetadata(tmp_path / "rec_td.dat", 100, 10, 2, height=3, width=4)
    with pytest.raises(EventFileError, match="dataset 'timestamps' at index"):
        load_flow(md, 0, 20, np.zeros((2, 2, 3, 4)))


def test_flow_files_that_are_not_flow_files(tmp_path):
    path = tmp_path / "rec_flow.h5"
    write_flow_h5(path, np.ones((3, 2, 3, 4), np.float32), np.array([0, 10, 20]))
    assert FlowLabelsReader(path).timestamps.tolist() == [0, 10, 20]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(EventFileError, match=r"rec_flow\.h5: not a readable HDF5 file"):
        FlowLabelsReader(path)
    with open(tmp_path / "npy_flow.h5", "wb") as f:  # a .npy file named .h5
        np.save(f, np.zeros((3, 2, 3, 4)))
    with pytest.raises(EventFileError, match=r"npy_flow\.h5: not a readable HDF5 file"):
        FlowLabelsReader(tmp_path / "npy_flow.h5")


@pytest.mark.parametrize("text, key", [
    ('{"car": "0"}', "'car'"), ('{"²": "car"}', "'²'"), ('{"-1": "car"}', "'-1'"), ('{"1.5": "car"}', "'1.5'"),
    ('{"": "car"}', "''"), ('{"0x1": "car"}', "'0x1'"), ('{"0": 5}', "'0'"), ('{"0": ""}', "'0'"),
    ('{"0": {"name": "car"}}', "'0'"), ('{"4294967296": "car"}', "'4294967296'"),
])
def test_label_map_errors_name_file_and_key(tmp_path, text, key):
    path = tmp_path / "label_map_dictionary.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(EventFileError) as info:
        load_label_map(path)
    assert str(info.value).startswith(f"{path}: label map key {key}: ")


@pytest.mark.parametrize("text, message", [
    ('{"0": "car", " 0": "truck"}', "label map key ' 0': id 0 is already given by key '0', expected each id once"),
    ('{"0": "car", "0": "truck"}', "label map key '0': id 0 is already given by key '0', expected each id once"),
    ('{"1": "car", "01": "bus"}', "label map key '01': id 1 is already given by key '1', expected each id once"),
    ('{"0": "car", "1": "car"}', "label map key '1': name 'car' is already given to key '0', expected each class "
                                 "name once"),
])
def test_label_map_duplicates_are_refused(tmp_path, text, message):
    path = tmp_path / "label_map_dictionary.json"
    path.write_text(text)
    with pytest.raises(EventFileError) as info:
        load_label_map(path)
    assert str(info.value) == f"{path}: {message}"


def test_label_map_keys_are_normalised(tmp_path):
    path = tmp_path / "label_map_dictionary.json"
    path.write_text('{" 1 ": "pedestrian", "0": "car", "007": "bus"}')
    assert load_label_map(path) == {0: "car", 1: "pedestrian", 7: "bus"}


def test_label_map_files_that_are_not_label_maps(tmp_path):
    path = tmp_path / "label_map_dictionary.json"
    path.write_bytes(b'{"0": "caf\xe9"}')  # latin-1, not UTF-8
    with pytest.raises(EventFileError, match=r"label_map_dictionary\.json: label map is not UTF-8 text"):
        load_label_map(path)
    path.write_text('{"0": "car", "1": "ped')  # truncated
    with pytest.raises(EventFileError, match=r"label_map_dictionary\.json: not valid JSON"):
        load_label_map(path)
    np.save(tmp_path / "map.npy", np.zeros(3))
    with pytest.raises(EventFileError, match=r"map\.npy: label map is not UTF-8 text"):
        load_label_map(tmp_path / "map.npy")
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(EventFileError, match=r"dir\.json: not a readable label map \(Is a directory\)"):
        load_label_map(tmp_path / "dir.json")


def test_save_label_map_refuses_what_load_label_map_refuses(tmp_path):
    path = tmp_path / "label_map_dictionary.json"
    for mapping, message in (({0: "car", 1: "car"}, "key 1: name 'car' is already given to key 0"),
                             ({0: ""}, "key 0: maps to '', expected a non-empty class name"),
                             ({2 ** 32: "car"}, "key 4294967296: id 4294967296 is too large"),
                             ({True: "car"}, "key True should be a non-negative int")):
        with pytest.raises(ValueError, match=message):
            save_label_map(path, mapping)
    assert not path.exists()
    save_label_map(path, {np.int64(3): "bus", 0: "car"})
    assert json.loads(path.read_text()) == {"0": "car", "3": "bus"}
