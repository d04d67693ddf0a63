import pickle
import struct
import warnings

import numpy as np
import pytest

from evframe.io import EVENT_DTYPE, DatReader, EventFileError, load_events, open_events, write_dat
from evframe.io.dat import decode_records

HEADER = b"% Date 2024-01-01 00:00:00\n% Version 2\n% Height 20\n% Width 30\n"


def record(t: int, x: int, y: int, p: int) -> bytes:
    return struct.pack("<II", t, x | (y << 14) | (p << 28))


def write_bytes(tmp_path, data: bytes, name: str = "rec_td.dat"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_decode_hand_built_bytes(tmp_path):
    # Record 0 written byte by byte: t=10 -> 0a 00 00 00; x=5, y=7, p=1 -> 0x1001C005 -> 05 c0 01 10.
    body = b"\x0a\x00\x00\x00" + b"\x05\xc0\x01\x10"
    body += struct.pack("<II", 10, 0x0FFFFFFF)  # x = y = 16383 (all 14 bits set), p = 0
    body += struct.pack("<II", 0xFFFFFFFF, 0x10004000)  # largest uint32 t; x=0, y=1, p=1
    path = write_bytes(tmp_path, b"% Version 2\n" + b"\x00\x08" + body)
    with DatReader(path) as reader:
        assert (reader.height, reader.width, reader.event_count, reader.header) == (None, None, 3, {"Version": "2"})
        events = reader.load_all()
    assert events.dtype == EVENT_DTYPE
    assert events.tolist() == [(5, 7, 1, 10), (16383, 16383, 0, 10), (0, 1, 1, 4294967295)]


def test_header_is_optional_and_eventcd_type_accepted(tmp_path):
    body = record(1, 2, 3, 0) + record(4, 5, 6, 1)
    bare = load_events(write_bytes(tmp_path, b"\x00\x08" + body))
    cd = load_events(write_bytes(tmp_path, HEADER + b"\x0c\x08" + body, "cd.dat"))
    assert bare.tolist() == cd.tolist() == [(2, 3, 0, 1), (5, 6, 1, 4)]


def test_round_trip(tmp_path, random_events):
    events = random_events(5000)
    path = tmp_path / "a_td.dat"
    write_dat(path, events, height=48, width=64, extra_header={"Date": "2020-01-02 03:04:05", "serial": "abc"})
    reader = open_events(path)
    assert isinstance(reader, DatReader)
    assert (reader.height, reader.width, reader.event_count, reader.duration) == (48, 64, 5000, events["t"][-1])
    assert reader.header == {"Date": "2020-01-02 03:04:05", "Version": "2", "Height": "48", "Width": "64",
                             "serial": "abc"}
    assert np.array_equal(reader.load_all(), events)
    assert path.read_bytes().startswith(b"% Date 2020-01-02 03:04:05\n% Version 2\n% Height 48\n% Width 64\n"
                                        b"% serial abc\n\x00\x08")
    assert path.stat().st_size == len(b"% Date 2020-01-02 03:04:05\n% Version 2\n% Height 48\n% Width 64\n"
                                      b"% serial abc\n") + 2 + 8 * 5000
    # Any integer dtype with the fields is accepted.
    other = np.zeros(3, dtype=[("t", "<u4"), ("x", "<i4"), ("y", "<i8"), ("p", "u1")])
    other["t"], other["x"], other["y"], other["p"] = [1, 2, 3], [0, 1, 63], [47, 0, 5], [1, 0, 1]
    write_dat(path, other, 48, 64)
    assert load_events(path).tolist() == [(0, 47, 1, 1), (1, 0, 0, 2), (63, 5, 1, 3)]


def test_empty_recording(tmp_path):
    path = tmp_path / "empty.dat"
    write_dat(path, np.zeros(0, EVENT_DTYPE), 10, 10)
    reader = DatReader(path)
    assert (reader.event_count, reader.duration, reader.done) == (0, 0, True)
    assert len(reader.load_delta_t(100)) == 0 and reader.current_time == 100
    assert len(reader.load_n_events(5)) == 0 and len(reader.load_all()) == 0
    reader.seek_time(50)
    assert reader.done


def test_seek_and_slices_match_hand_slices(tmp_path, random_events):
    events = random_events(3000, t_max=20_000, seed=1)  # ~0.15 events per us: many equal timestamps
    t = events["t"]
    path = tmp_path / "r_td.dat"
    write_dat(path, events, 48, 64)
    reader = DatReader(path)
    for t0, dt in [(0, 1), (0, 777), (t[1234], 1), (t[1234] + 1, 500), (19_990, 1000), (50_000, 10)]:
        reader.seek_time(t0)
        assert reader.current_position == np.count_nonzero(t < t0)
        got = reader.load_delta_t(dt)
        assert np.array_equal(got, events[(t >= t0) & (t < t0 + dt)]), (t0, dt)
        assert reader.current_time == t0 + dt
    # Consecutive windows tile the recording exactly.
    reader.reset()
    chunks = []
    while not reader.done:
        chunks.append(reader.load_delta_t(333))
    assert np.array_equal(np.concatenate(chunks), events)
    assert reader.current_time == 333 * len(chunks) > t[-1]
    # n-event chunks: current_time keeps "every event with t < current_time has been loaded".
    reader.reset()
    chunks = []
    while not reader.done:
        chunks.append(reader.load_n_events(101))
        loaded = sum(map(len, chunks))
        assert loaded == min(101 * len(chunks), len(events))
        assert np.all(t[:loaded] <= reader.current_time - (loaded == len(events)))
        assert np.all(t[loaded:] >= reader.current_time)
    assert np.array_equal(np.concatenate(chunks), events)
    reader.seek_event(2000)
    assert reader.current_time == t[2000]
    assert np.array_equal(reader.load_n_events(7), events[2000:2007])
    assert reader.current_time == min(t[2006] + 1, t[2007])
    end = reader.current_time + 5
    assert np.array_equal(reader.load_delta_t(5), events[2007:][t[2007:] < end])
    reader.seek_event(len(events))
    assert reader.done and reader.current_time == t[-1] + 1
    with pytest.raises(ValueError, match=r"n=3001 is out of range, expected an integer in \[0, 3000\]"):
        reader.seek_event(len(events) + 1)
    with pytest.raises(ValueError, match=r"delta_t=0 is out of range, expected an integer in \[1, "):
        reader.load_delta_t(0)


def test_reader_pickles_and_keeps_cursor(tmp_path, random_events):
    events = random_events(500)
    path = tmp_path / "r.dat"
    write_dat(path, events, 48, 64)
    reader = DatReader(path)
    reader.load_n_events(100)  # opens the memory map
    clone = pickle.loads(pickle.dumps(reader))
    assert clone.current_position == 100 and clone.current_time == reader.current_time
    assert np.array_equal(clone.load_n_events(50), events[100:150])
    assert "events=500" in repr(clone) and "r.dat" in repr(clone)


def test_user_size_and_header_precedence(tmp_path):
    body = record(1, 29, 19, 0)
    no_size = write_bytes(tmp_path, b"% Version 2\n\x00\x08" + body, "nosize.dat")
    assert (DatReader(no_size).height, DatReader(no_size).width) == (None, None)
    assert (DatReader(no_size, height=20, width=30).height, DatReader(no_size, 20, 30).width) == (20, 30)
    with pytest.raises(EventFileError, match=r"nosize\.dat.*record 0: x=29 out of range, expected < Width 29"):
        DatReader(no_size, height=20, width=29).load_all()
    with pytest.raises(ValueError, match=r"width=0 is out of range, expected an integer in \[1, 65536\]"):
        DatReader(no_size, height=20, width=0)
    sized = write_bytes(tmp_path, HEADER + b"\x00\x08" + body, "sized.dat")
    with pytest.warns(UserWarning, match=r"sized\.dat: header says Width 30 but 64 was given"):
        reader = DatReader(sized, height=20, width=64)
    assert (reader.height, reader.width) == (20, 30)


def test_truncated_last_record_warns_and_is_ignored(tmp_path):
    path = write_bytes(tmp_path, HEADER + b"\x00\x08" + record(1, 2, 3, 1) + record(5, 6, 7, 0) + b"\x09\x00\x00")
    with pytest.warns(UserWarning, match=r"rec_td\.dat: truncated last record.* 3 dangling bytes"):
        reader = DatReader(path)
    assert (reader.event_count, reader.dangling_bytes) == (2, 3)
    assert reader.load_all().tolist() == [(2, 3, 1, 1), (6, 7, 0, 5)]


BAD_FILES = [
    (b"", "empty file"),
    (b"% Height 240\n% Wi\xffdth 304\n\x00\x08" + record(0, 0, 0, 0), "non-ASCII bytes in header line"),
    (b"% Height 240\n% Width \x01\x02\n\x00\x08", "control characters"),
    (b"% Height two hundred\n\x00\x08" + record(0, 0, 0, 0), r"'% Height two hundred' should be a positive integer"),
    (b"% Width -3\n\x00\x08", "'% Width -3' should be a positive integer"),
    (b"% Version 2", "not newline-terminated"),
    (b"% Version 2\n", "file ends before the event type and size bytes"),
    (b"% Version 2\n\x00\x10" + record(0, 0, 0, 0), "event size 16 bytes, expected 8"),
    (b"% Version 2\n\x07\x08" + record(0, 0, 0, 0), "event type byte 0x07 after the header"),
    (b"hello, world", "not a DAT file: no '%' header and the first bytes 0x68 0x65 are not an event type"),
    (b"\x00\x10" + record(0, 0, 0, 0), "not a DAT file: no '%' header and the first bytes 0x00 0x10"),
]


@pytest.mark.parametrize("data, message", BAD_FILES)
def test_bad_headers(tmp_path, data, message):
    path = write_bytes(tmp_path, data, "broken_td.dat")
    with pytest.raises(EventFileError, match=message) as info:
        DatReader(path)
    assert "broken_td.dat" in str(info.value)


@pytest.mark.parametrize("records, index, message", [
    ([(5, 1, 1, 0), (9, 1, 1, 0), (8, 1, 1, 0), (10, 1, 1, 0)], 2, "timestamps going backwards (t=8 after t=9)"),
    ([(0, 1, 1, 0), (5, 30, 1, 0)], 1, "x=30 out of range, expected < Width 30"),
    ([(0, 1, 1, 0), (0, 2, 2, 1), (5, 1, 20, 0)], 2, "y=20 out of range, expected < Height 20"),
    ([(0, 1, 1, 2)], 0, "p=2 out of range, expected 0 or 1"),
])
def test_bad_records_name_record_and_offset(tmp_path, records, index, message):
    path = write_bytes(tmp_path, HEADER + b"\x00\x08" + b"".join(record(*r) for r in records), "bad_td.dat")
    reader = DatReader(path)
    offset = len(HEADER) + 2 + 8 * index
    expected = f"bad_td.dat: record {index}: {message} (at byte {offset})"
    for call in (reader.load_all, reader.validate, lambda: load_events(path),
                 lambda: reader.load_n_events(len(records)), lambda: reader.load_delta_t(1000)):
        reader.reset()
        with pytest.raises(EventFileError) as info:
            call()
        assert str(info.value).endswith(expected)
        assert info.value.offset == offset


def test_backwards_timestamps_detected_across_slices(tmp_path):
    path = write_bytes(tmp_path, HEADER + b"\x00\x08" + b"".join(
        record(t, 1, 1, 0) for t in (1, 2, 9, 3, 4)), "seam.dat")
    reader = DatReader(path)
    assert reader.load_n_events(3)["t"].tolist() == [1, 2, 9]  # each slice alone is sorted...
    with pytest.raises(EventFileError, match=r"seam\.dat: record 3: timestamps going backwards \(t=3 after t=9\)"):
        reader.load_n_events(2)  # ...but the seam with the previous record is checked


def test_write_dat_rejects_bad_input(tmp_path, random_events):
    path = tmp_path / "out.dat"
    events = random_events(10)
    with pytest.raises(ValueError, match=r"out\.dat.*missing \['p'\]"):
        write_dat(path, np.zeros(2, dtype=[("x", "u2"), ("y", "u2"), ("t", "i8")]), 48, 64)
    with pytest.raises(ValueError, match="field t has dtype float64"):
        write_dat(path, np.zeros(2, dtype=[("x", "u2"), ("y", "u2"), ("p", "i2"), ("t", "f8")]), 48, 64)
    with pytest.raises(ValueError, match="not sorted by t"):
        write_dat(path, events[::-1], 48, 64)
    with pytest.raises(ValueError, match=r"event \d+ has x=\d+, expected \[0, 9\]"):
        write_dat(path, events, 48, 10)
    bad_p = events.copy()
    bad_p["p"][3] = -1
    with pytest.raises(ValueError, match=r"event 3 has p=-1, expected \[0, 1\]"):
        write_dat(path, bad_p, 48, 64)
    with pytest.raises(ValueError, match="width=0"):
        write_dat(path, events, 48, 0)
    with pytest.raises(ValueError, match="reserved"):
        write_dat(path, events, 48, 64, extra_header={"Height": 3})
    with pytest.raises(ValueError, match="single-line ASCII"):
        write_dat(path, events, 48, 64, extra_header={"note": "two\nlines"})
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_open_events_detects_by_content(tmp_path, random_events):
    events = random_events(20)
    odd_name = tmp_path / "events.bin"
    write_dat(odd_name, events, 48, 64)
    assert np.array_equal(load_events(odd_name), events)
    # a RAW header wins over the .dat name: two ADDR_Y words, no event
    raw = write_bytes(tmp_path, b"% Date 2020-09-14\n% evt 3.0\n% end\n\x01\x02\x03\x04", "cam.dat")
    reader = open_events(raw)
    assert type(reader).__name__ == "RawReader" and reader.encoding == "evt3" and reader.event_count == 0
    h5 = write_bytes(tmp_path, b"\x89HDF\r\n\x1a\n" + bytes(100), "ev.h5")
    with pytest.raises(EventFileError, match=r"ev\.h5: cannot open as HDF5"):
        open_events(h5)
    junk = write_bytes(tmp_path, b"PK\x03\x04 zip archive", "x.dat")
    with pytest.raises(EventFileError, match=r"x\.dat: unknown event file format .*supported formats: DAT"):
        open_events(junk)
    with pytest.raises(FileNotFoundError, match="nothing.dat"):
        open_events(tmp_path / "nothing.dat")


def test_decode_records_is_exact_for_all_bit_patterns():
    rng = np.random.default_rng(3)
    x, y, p = rng.integers(0, 1 << 14, 1000), rng.integers(0, 1 << 14, 1000), rng.integers(0, 16, 1000)
    raw = np.stack([rng.integers(0, 2**32, 1000), x | (y << 14) | (p << 28)], axis=1).astype("<u4")
    events = decode_records(raw)
    assert np.array_equal(events["x"], x) and np.array_equal(events["y"], y) and np.array_equal(events["p"], p)
    assert np.array_equal(events["t"], raw[:, 0].astype(np.int64))


def test_no_warning_for_clean_file(tmp_path, random_events):
    path = tmp_path / "clean.dat"
    write_dat(path, random_events(10), 48, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DatReader(path, 48, 64).validate()
