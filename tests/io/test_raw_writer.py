"""write_raw / encode_events: round trips through files, wraps, vectors, triggers, argument errors."""

import numpy as np
import pytest

from evframe.io import EVENT_DTYPE, TRIGGER_DTYPE, RawReader, load_events, write_dat, write_raw
from evframe.io.raw_writer import encode_events


def _events(n, seed=0, t_max=60_000_000, height=720, width=1280):
    rng = np.random.default_rng(seed)
    events = np.zeros(n, dtype=EVENT_DTYPE)
    events["x"], events["y"] = rng.integers(0, width, n), rng.integers(0, height, n)
    events["p"], events["t"] = rng.integers(0, 2, n), np.sort(rng.integers(0, t_max, n))
    # rows of equal time, row and polarity with increasing x: what vectors are made of
    return events[np.lexsort((events["x"], events["p"], events["y"], events["t"]))]


@pytest.mark.parametrize("encoding", ["evt2", "evt3"])
@pytest.mark.parametrize("vectorize,repeat", [(True, False), (False, True)])
def test_round_trip_with_wraps_and_triggers(tmp_path, encoding, vectorize, repeat):
    events = _events(5000)  # 60 s: three 24-bit EVT 3.0 wraps
    triggers = np.zeros(4, dtype=TRIGGER_DTYPE)
    triggers["t"], triggers["p"], triggers["id"] = [5, 17_000_000, 17_000_000, 59_000_000], [1, 0, 1, 0], [0, 3, 15, 2]
    path = tmp_path / f"r_{encoding}.raw"
    write_raw(path, events, 720, 1280, encoding, triggers, vectorize=vectorize, repeat_time_high=repeat,
              extra_header={"date": "2024-01-01 00:00:00", "serial_number": "00001234"})
    reader = RawReader(path, segment_words=333)
    assert reader.header["serial_number"] == "00001234" and reader.header["geometry"] == "1280x720"
    assert np.array_equal(reader.load_all(), events)
    assert reader.load_all_triggers().tolist() == triggers.tolist()
    assert reader.issue_counts == {}


def test_dense_rows_become_vectors(tmp_path):
    events = np.zeros(3000, dtype=EVENT_DTYPE)
    events["x"], events["y"] = np.tile(np.arange(100, 400), 10), np.repeat(np.arange(10), 300)
    events["t"], events["p"] = np.repeat(np.arange(10) * 7, 300), 1
    words = encode_events(events, "evt3")
    kinds = np.bincount(words >> 12, minlength=16)
    # each row: one VECT_BASE_X then 300 / 12 = 25 VECT_12 words; no single-event word
    assert kinds[0x3] == 10 and kinds[0x4] == 250 and kinds[0x2] == 0
    write_raw(tmp_path / "v.raw", events, 720, 1280)
    assert np.array_equal(load_events(tmp_path / "v.raw"), events)


def test_dat_to_raw_conversion_and_long_gaps(tmp_path, random_events):
    events = random_events(400, height=48, width=64)
    events["t"][200:] += 3 * 2**24  # a gap of 50 s without any event: intermediate TIME_HIGH words keep the wraps
    write_dat(tmp_path / "a_td.dat", events, 48, 64)
    dat = load_events(tmp_path / "a_td.dat")
    for encoding in ("evt2", "evt3"):
        write_raw(tmp_path / f"a_{encoding}.raw", dat, 48, 64, encoding)
        assert np.array_equal(load_events(tmp_path / f"a_{encoding}.raw"), events)


def test_write_raw_rejects_bad_arguments(tmp_path):
    events = _events(10, height=48, width=64)
    with pytest.raises(ValueError, match="x=.* expected \\[0, 31\\]"):
        write_raw(tmp_path / "a.raw", events, 48, 32)
    with pytest.raises(ValueError, match="height=4096"):
        write_raw(tmp_path / "a.raw", events, 4096, 64)
    with pytest.raises(ValueError, match="sorted by t"):
        write_raw(tmp_path / "a.raw", events[::-1], 48, 64)
    with pytest.raises(ValueError, match="encoding must be"):
        write_raw(tmp_path / "a.raw", events, 48, 64, encoding="evt21")
    assert list(tmp_path.iterdir()) == []
