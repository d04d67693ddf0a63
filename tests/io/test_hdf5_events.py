"""Metavision-layout HDF5 event files: round trips per compression, seeking with and without /CD/indexes, triggers,
the ECF codec missing, and bad files."""

import pickle
import warnings

import h5py
import numpy as np
import pytest

from evframe.io import (
    EVENT_DTYPE,
    TRIGGER_DTYPE,
    EventFileError,
    Hdf5EventsReader,
    is_hdf5_event_file,
    load_events,
    open_events,
    write_hdf5_events,
)
from evframe.io.hdf5_events import _BLOCK, INDEX_PERIOD_US


@pytest.fixture
def sample(random_events):
    events = random_events(3 * _BLOCK + 123, height=48, width=64, t_max=2_000_000)
    events["t"] += 1_000_000  # recordings rarely start at 0
    return events


@pytest.mark.parametrize("compression", [None, "gzip", "blosc", "zstd"])
def test_round_trip_and_windows(tmp_path, sample, compression):
    triggers = np.array([(1, 1_200_000, 0), (0, 1_500_000, 3)], dtype=TRIGGER_DTYPE)
    path = tmp_path / "rec.hdf5"
    write_hdf5_events(path, sample, 48, 64, triggers=triggers, compression=compression,
                      extra_attrs={"serial_number": "42"})
    assert is_hdf5_event_file(path)
    reader = open_events(path)
    assert isinstance(reader, Hdf5EventsReader) and (reader.height, reader.width) == (48, 64)
    assert reader.attrs["serial_number"] == "42" and reader.event_count == len(sample)
    assert np.array_equal(reader.load_all(), sample) and reader.load_all_triggers().tolist() == triggers.tolist()
    assert (reader.start_time, reader.duration) == (int(sample["t"][0]), int(sample["t"][-1]))
    t = sample["t"]
    for start in (0, 1_000_000, 1_777_777, 2_999_000, 5_000_000):
        reader.seek_time(start)
        window = reader.load_delta_t(30_000)
        assert np.array_equal(window, sample[(t >= start) & (t < start + 30_000)])
        assert reader.current_time == start + 30_000
    reader.seek_event(_BLOCK - 2)
    assert np.array_equal(reader.load_n_events(5), sample[_BLOCK - 2:_BLOCK + 3])  # across a block boundary
    assert reader.current_time == min(int(t[_BLOCK + 2]) + 1, int(t[_BLOCK + 3]))
    reader.reset()
    parts = []
    while not reader.done:
        parts.append(reader.load_delta_t(250_000))
    assert np.array_equal(np.concatenate(parts), sample)
    clone = pickle.loads(pickle.dumps(reader))
    clone.seek_time(1_500_000)
    assert np.array_equal(clone.load_n_events(10), sample[np.searchsorted(t, 1_500_000):][:10])


def test_index_layout_and_seeking_without_or_with_a_lagging_index(tmp_path, sample):
    path = tmp_path / "rec.hdf5"
    write_hdf5_events(path, sample, 48, 64)
    t = sample["t"]
    with h5py.File(path, "r") as f:
        index = f["CD/indexes"][:]
        assert f["CD/indexes"].attrs["offset"] == str(-int(t[0]))
        assert f["CD/events"].chunks == (16384,) and f["CD/events"].dtype == EVENT_DTYPE
    # entry k: the first event at or after first t + k * 2 ms
    k = 321
    assert index["id"][k] == np.searchsorted(t, t[0] + k * INDEX_PERIOD_US)
    assert len(index) == (t[-1] - t[0]) // INDEX_PERIOD_US + 1
    # Metavision's writer stores each entry late (an earlier event id): any lower bound must give the same answer
    with h5py.File(path, "r+") as f:
        ids = f["CD/indexes"]["id"]
        f["CD/indexes"]["id"] = np.concatenate([[0, 0], ids[:-2]])
    reader = Hdf5EventsReader(path)
    reader.seek_time(1_654_321)
    assert np.array_equal(reader.load_delta_t(5000), sample[(t >= 1_654_321) & (t < 1_659_321)])
    reader.close()
    with h5py.File(path, "r+") as f:
        del f["CD/indexes"]
    reader = Hdf5EventsReader(path)
    reader.seek_time(2_000_000)
    assert reader.current_position == np.searchsorted(t, 2_000_000)
    reader.close()
    with h5py.File(path, "r+") as f:
        f.create_dataset("CD/indexes", data=np.array([(5, 0), (2, 0)], dtype=[("id", "<u8"), ("ts", "<i8")]))
    with pytest.warns(UserWarning, match="CD/indexes is inconsistent"):
        reader = Hdf5EventsReader(path)
    reader.seek_time(2_000_000)
    assert reader.current_position == np.searchsorted(t, 2_000_000)


def test_ecf_compressed_file_without_the_plugin_fails_clearly(tmp_path):
    path = tmp_path / "metavision.hdf5"
    with h5py.File(path, "w") as f:  # the layout Metavision writes, with chunks compressed by ECF (filter 0x8ECF)
        f.attrs["geometry"] = "1280x720"
        f.create_group("CD")
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_chunk((16384,))
        dcpl.set_filter(0x8ECF, h5py.h5z.FLAG_OPTIONAL, ())
        space = h5py.h5s.create_simple((0,), (h5py.h5s.UNLIMITED,))
        h5py.h5d.create(f["CD"].id, b"events", h5py.h5t.py_create(EVENT_DTYPE), space, dcpl=dcpl)
        f["CD/events"].resize((10,))
        f["CD/events"].id.write_direct_chunk((0,), b"ECF-compressed bytes", filter_mask=0)
    if h5py.h5z.filter_avail(0x8ECF):
        pytest.skip("the ECF plugin is installed here")
    with pytest.raises(EventFileError, match=r"metavision\.hdf5: /CD/events is compressed with Prophesee's ECF codec "
                                             r"\(HDF5 filter 0x8ECF\), which is not available here: install .*"
                                             r"HDF5_PLUGIN_PATH"):
        open_events(path)


def test_bad_hdf5_files(tmp_path, sample):
    tensors = tmp_path / "tensors.hdf5"
    with h5py.File(tensors, "w") as f:
        f.create_dataset("data", data=np.zeros((2, 2, 4, 4), dtype=np.float32))
    assert not is_hdf5_event_file(tensors)
    with pytest.raises(EventFileError, match=r"tensors\.hdf5: HDF5 file without /CD/events"):
        open_events(tensors)
    flat = tmp_path / "flat.hdf5"
    with h5py.File(flat, "w") as f:
        f.create_dataset("CD/events", data=np.zeros(5, dtype=[("x", "<u2"), ("t", "<i8")]))
    with pytest.raises(EventFileError, match=r"flat\.hdf5: /CD/events should be a 1-D compound dataset with fields "
                                             r"x, y, p, t"):
        open_events(flat)
    unsorted = tmp_path / "unsorted.hdf5"
    shuffled = sample.copy()
    shuffled["t"][100], shuffled["t"][101] = 5_000_000, 0
    with h5py.File(unsorted, "w") as f:
        f.create_dataset("CD/events", data=shuffled)
    with pytest.raises(EventFileError, match=r"unsorted\.hdf5: /CD/events event 101: timestamps going backwards"):
        load_events(unsorted)
    write_hdf5_events(tmp_path / "small.hdf5", sample, 48, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # header size wins over the user's, with a warning
        reader = Hdf5EventsReader(tmp_path / "small.hdf5", height=48, width=60)
    assert reader.width == 64
    narrow = tmp_path / "narrow.hdf5"
    write_hdf5_events(narrow, sample, 48, 64, extra_attrs={"geometry": "32x48"})
    with pytest.raises(EventFileError, match=r"narrow\.hdf5: /CD/events event \d+: x=\d+ out of range, expected < 32"):
        Hdf5EventsReader(narrow).validate()
    with pytest.raises(ValueError, match="compression must be one of"):
        write_hdf5_events(tmp_path / "x.hdf5", sample, 48, 64, compression="ecf")
