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


def test_index_layout_and_seeking_whatever_the_index_says(tmp_path, sample):
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
    ids = index["id"].copy()
    # seeking reads the timestamps, so a lagging index (Metavision stores entries late), ids shifted three entries
    # (6 ms) later, a missing index or a garbled one all give the exact answer, silently
    for name, new_ids in (("lagging", np.concatenate([[0, 0], ids[:-2]])),
                          ("shifted", np.concatenate([ids[3:], np.full(3, len(sample))])),
                          ("missing", None), ("garbled", np.array([5, 2]))):
        with h5py.File(path, "r+") as f:
            if "CD/indexes" in f:
                del f["CD/indexes"]
            if new_ids is not None:
                entries = np.zeros(len(new_ids), dtype=[("id", "<u8"), ("ts", "<i8")])
                entries["id"] = new_ids
                f.create_dataset("CD/indexes", data=entries).attrs["offset"] = str(-int(t[0]))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            reader = Hdf5EventsReader(path)
            for start in (1_654_321, 2_000_000, 1_000_000, 2_999_999):
                reader.seek_time(start)
                assert reader.current_position == np.searchsorted(t, start), (name, start)
                assert np.array_equal(reader.load_delta_t(5000), sample[(t >= start) & (t < start + 5000)]), name
        reader.close()


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
    for call in (lambda: Hdf5EventsReader(narrow).validate(), lambda: load_events(narrow)):
        with pytest.raises(EventFileError, match=r"narrow\.hdf5: /CD/events event \d+: x=\d+ out of range, expected "
                                                 r"< Width 32"):
            call()
    with pytest.raises(ValueError, match="compression must be one of"):
        write_hdf5_events(tmp_path / "x.hdf5", sample, 48, 64, compression="ecf")


def _events_file(path, data, geometry="64x48"):
    """An HDF5 event file holding exactly ``data`` as /CD/events (any dtype), written without checks."""
    with h5py.File(path, "w") as f:
        if geometry is not None:
            f.attrs["geometry"] = geometry
        f.create_dataset("CD/events", data=data)
    return path


def test_damaged_hdf5_files_raise_event_file_errors(tmp_path, sample):
    # a compressed chunk overwritten with garbage: h5py raises OSError when it is read
    chunk = tmp_path / "chunk.hdf5"
    write_hdf5_events(chunk, sample, 48, 64)
    with h5py.File(chunk, "r") as f:
        info = f["CD/events"].id.get_chunk_info(5)  # events 81920..98303, in the reader's second block
        group_header = h5py.h5o.get_info(f["CD"].id).addr
    data = bytearray(chunk.read_bytes())
    data[info.byte_offset + info.size // 2:info.byte_offset + info.size // 2 + 64] = bytes(range(64))
    chunk.write_bytes(bytes(data))
    reader = open_events(chunk)
    assert np.array_equal(reader.load_n_events(100), sample[:100])  # the first block is intact
    for call in (reader.load_all, lambda: reader.load_delta_t(10**9), lambda: reader.seek_time(2_000_000),
                 lambda: reader.seek_event(90_000), reader.validate):
        with pytest.raises(EventFileError, match=r"chunk\.hdf5: damaged or unreadable HDF5 file: cannot read "
                                                 r"/CD/events\[(65536:131072|90000:90001)\] \(OSError: "):
            call()
    # the /CD group's object header damaged: h5py raises KeyError when opening it
    header = tmp_path / "header.hdf5"
    write_hdf5_events(header, sample, 48, 64)
    data = bytearray(header.read_bytes())
    data[group_header:group_header + 2] = b"\xff\xff"
    header.write_bytes(bytes(data))
    with pytest.raises(EventFileError, match=r"header\.hdf5: damaged or unreadable HDF5 file: cannot read /CD/events "
                                             r"and the root attributes \(KeyError: "):
        open_events(header)
    # /CD/events a group (h5py: AttributeError) or a dangling link (KeyError); triggers a group (TypeError)
    with h5py.File(tmp_path / "group.hdf5", "w") as f:
        f.create_group("CD/events")
    with pytest.raises(EventFileError, match=r"group\.hdf5: /CD/events is an HDF5 group, expected a 1-D compound "
                                             r"dataset with integer fields x uint16, y uint16, p int16, t int64"):
        open_events(tmp_path / "group.hdf5")
    with h5py.File(tmp_path / "link.hdf5", "w") as f:
        f.create_group("CD")["events"] = h5py.SoftLink("/nowhere")
    with pytest.raises(EventFileError, match=r"link\.hdf5: damaged or unreadable HDF5 file: .*\(KeyError: "):
        open_events(tmp_path / "link.hdf5")
    write_hdf5_events(tmp_path / "trig.hdf5", sample, 48, 64)
    with h5py.File(tmp_path / "trig.hdf5", "r+") as f:
        del f["EXT_TRIGGER/events"]
        f.create_group("EXT_TRIGGER/events")
    with pytest.raises(EventFileError, match=r"trig\.hdf5: /EXT_TRIGGER/events is an HDF5 group"):
        open_events(tmp_path / "trig.hdf5").load_all_triggers()


def test_hdf5_values_are_checked_never_wrapped_or_truncated(tmp_path):
    def events(dtype, rows):
        return np.array(rows, dtype=dtype)

    wide = [("x", "<u4"), ("y", "<u2"), ("p", "<i2"), ("t", "<u8")]
    # fields wider than EVENT_DTYPE's are read when the values fit...
    path = _events_file(tmp_path / "wide.hdf5", events(wide, [(63, 1, 0, 5), (2, 47, 1, 7)]))
    got = load_events(path)
    assert got.dtype == EVENT_DTYPE and got.tolist() == [(63, 1, 0, 5), (2, 47, 1, 7)]
    # ...and refused, naming the event, when they do not (x = 70000 would become 4464 in uint16)
    bad = [
        ("x70000", wide, [(1, 1, 0, 5), (70000, 1, 0, 6)], None,
         r"/CD/events event 1: x=70000 out of range, expected 0 <= x <= 65535"),
        ("t2pow63", wide, [(1, 1, 0, 2**63)], None, r"/CD/events event 0: t=9223372036854775808 out of range"),
        ("xneg", [("x", "<i4"), ("y", "<u2"), ("p", "<i2"), ("t", "<i8")], [(-1, 1, 0, 5)], None,
         r"/CD/events event 0: x=-1 out of range, expected 0 <= x <= 65535"),
        # values that fit EVENT_DTYPE but break the reader's promises, on load_all / load_events too
        ("x64", EVENT_DTYPE, [(1, 1, 0, 5), (64, 1, 0, 6)], "64x48",
         r"/CD/events event 1: x=64 out of range, expected < Width 64"),
        ("y48", EVENT_DTYPE, [(1, 48, 0, 5)], "64x48", r"/CD/events event 0: y=48 out of range, expected < Height 48"),
        ("p2", EVENT_DTYPE, [(1, 1, 0, 5), (1, 1, 2, 6)], None,
         r"/CD/events event 1: p=2 out of range, expected 0 or 1"),
        ("pneg", EVENT_DTYPE, [(1, 1, -1, 5)], None, r"/CD/events event 0: p=-1 out of range, expected 0 or 1"),
        ("tneg", EVENT_DTYPE, [(1, 1, 0, -5), (1, 1, 0, 3)], None,
         r"/CD/events event 0: t=-5 out of range, expected >= 0"),
    ]
    for name, dtype, rows, geometry, message in bad:
        path = _events_file(tmp_path / f"{name}.hdf5", events(dtype, rows), geometry)
        for call in (lambda p=path: load_events(p), lambda p=path: open_events(p).load_delta_t(1000),
                     lambda p=path: open_events(p).load_n_events(5)):
            with pytest.raises(EventFileError, match=rf"{name}\.hdf5: {message}"):
                call()
    # float fields would be truncated (t = 1.5 -> 1): refused when the file is opened
    floats = _events_file(tmp_path / "float.hdf5", events([("x", "<u2"), ("y", "<u2"), ("p", "<i2"), ("t", "<f8")],
                                                          [(1, 1, 0, 1.5)]))
    with pytest.raises(EventFileError, match=r"float\.hdf5: /CD/events field t has dtype float64, expected an integer "
                                             r"type"):
        open_events(floats)
    # sensor sizes that are not positive integers are refused, naming the attribute
    for geometry in ("0x0", "-5x-5", "64by48", "x48"):
        path = _events_file(tmp_path / "geometry.hdf5", events(EVENT_DTYPE, [(1, 1, 0, 5)]), geometry)
        with pytest.raises(EventFileError, match=rf"geometry\.hdf5: root attribute geometry='{geometry}'"):
            open_events(path)
    # triggers: the same checks
    path = tmp_path / "trig.hdf5"
    write_hdf5_events(path, np.zeros(0, EVENT_DTYPE), 48, 64)
    for rows, dtype, message in (
            ([(1, 5, 0), (3, 6, 0)], TRIGGER_DTYPE, r"trigger 1: p=3 out of range, expected 0 or 1"),
            ([(1, 9, 0), (0, 6, 0)], TRIGGER_DTYPE, r"trigger 1: timestamps going backwards \(t=6 after t=9\)"),
            ([(1, 5, 40000)], [("p", "<i2"), ("t", "<i8"), ("id", "<u4")],
             r"trigger 0: id=40000 out of range, expected -32768 <= id <= 32767")):
        with h5py.File(path, "r+") as f:
            del f["EXT_TRIGGER/events"]
            f["EXT_TRIGGER/events"] = np.array(rows, dtype=dtype)
        with pytest.raises(EventFileError, match=rf"trig\.hdf5: /EXT_TRIGGER/events {message}"):
            open_events(path).load_all_triggers()
