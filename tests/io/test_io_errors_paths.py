import pickle
from pathlib import Path

import pytest

from evframe.io import EventFileError, label_path, recording_name
from evframe.io._atomic import atomic_path


def test_event_file_error_message_and_pickle():
    err = EventFileError(Path("/a/b.dat"), "bad thing", offset=42)
    assert str(err) == "/a/b.dat: bad thing (at byte 42)"
    assert isinstance(err, ValueError)
    assert str(EventFileError("x.dat", "oops")) == "x.dat: oops"
    back = pickle.loads(pickle.dumps(err))
    assert (back.path, back.message, back.offset, str(back)) == ("/a/b.dat", "bad thing", 42, str(err))


@pytest.mark.parametrize("data, suffix, expected", [
    ("/a/rec_td.dat", "_bbox.npy", "/a/rec_bbox.npy"),
    ("/a/rec.h5", "_bbox.npy", "/a/rec_bbox.npy"),
    ("/a/rec_td.raw", "_flow.h5", "/a/rec_flow.h5"),
    ("/a/rec_td.h5", "_frames.h5", "/a/rec_frames.h5"),
    ("/a/moorea_2019_td_100_200_td.dat", "_bbox.npy", "/a/moorea_2019_td_100_200_bbox.npy"),
    ("rel/my.rec.v2.dat", "_bbox.npy", "rel/my.rec.v2_bbox.npy"),
])
def test_label_path(data, suffix, expected):
    assert label_path(data, suffix) == Path(expected)


def test_recording_name():
    assert recording_name("/x/y/drive_01_td.dat") == "drive_01"
    assert recording_name(Path("drive_02.h5")) == "drive_02"
    assert recording_name("td.dat") == "td"


def test_atomic_path_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]
    with pytest.raises(FileNotFoundError, match="does not exist"), atomic_path(tmp_path / "no" / "f.txt"):
        pass
