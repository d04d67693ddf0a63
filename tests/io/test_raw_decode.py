"""RAW EVT 2.0 / 3.0 decoding of hand-built word streams with hand-computed events (time wrap, vectors, triggers,
chunk boundaries, bad input)."""

import pickle
import warnings

import numpy as np
import pytest

from evframe.io import EVENT_DTYPE, EventFileError, RawReader, open_events
from evframe.io.raw_state import NO_ADDRESS, NO_TIME, OUT_OF_BOUNDS, TIME_BACKWARDS, TIME_UNSORTED, UNKNOWN_TYPE

EVT3_HEADER = (b"% date 2024-01-01 00:00:00\n% evt 3.0\n% format EVT3;height=720;width=1280\n% geometry 1280x720\n"
               b"% end\n")
EVT2_HEADER = b"% Date 2020-09-14 09:03:25\n% plugin_name hal_plugin_gen3_fx3\n% evt 2.0\n"


# EVT 3.0 words (type in bits 12-15)
def th(v): return 0x8000 | v  # noqa: E704
def tl(v): return 0x6000 | v  # noqa: E704
def ay(y): return y  # noqa: E704
def ax(x, p): return 0x2000 | (p << 11) | x  # noqa: E704
def vbase(x, p): return 0x3000 | (p << 11) | x  # noqa: E704
def v12(mask): return 0x4000 | mask  # noqa: E704
def v8(mask): return 0x5000 | mask  # noqa: E704
def trig3(p, channel): return 0xA000 | (channel << 8) | p  # noqa: E704


# EVT 2.0 words (type in bits 28-31)
def th2(v): return (0x8 << 28) | v  # noqa: E704
def cd(p, low, x, y): return (p << 28) | (low << 22) | (x << 11) | y  # noqa: E704
def trig2(p, channel, low): return (0xA << 28) | (low << 22) | (channel << 8) | p  # noqa: E704


def events(*rows):
    """(x, y, p, t) tuples -> EVENT_DTYPE array."""
    out = np.zeros(len(rows), dtype=EVENT_DTYPE)
    for i, (x, y, p, t) in enumerate(rows):
        out[i] = (x, y, p, t)
    return out


def write3(tmp_path, words, name="s.raw", header=EVT3_HEADER, tail=b""):
    path = tmp_path / name
    path.write_bytes(header + np.asarray(words, dtype="<u2").tobytes() + tail)
    return path


def write2(tmp_path, words, name="s2.raw", header=EVT2_HEADER, tail=b""):
    path = tmp_path / name
    path.write_bytes(header + np.asarray(words, dtype="<u4").tobytes() + tail)
    return path


def decode_all_ways(path, **kwargs):
    """load_all with segments of 1, 2, 3 and 64K words (state carried across every boundary) must agree."""
    results = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for segment_words in (1, 2, 3, 1 << 16):
            results.append(RawReader(path, segment_words=segment_words, **kwargs).load_all())
    for other in results[1:]:
        assert np.array_equal(other, results[0])
    return results[0]


def test_evt3_addresses_vectors_and_time(tmp_path):
    words = [th(1), tl(5), ay(3), ax(10, 1), vbase(100, 0), v12(0b101), v8(0b10000001), tl(7), ay(4), ax(11, 0),
             vbase(1270, 1), v12(0b1)]
    path = write3(tmp_path, words)
    expected = events((10, 3, 1, 4101), (100, 3, 0, 4101), (102, 3, 0, 4101),  # VECT_12 bits 0, 2 from base 100
                      (112, 3, 0, 4101), (119, 3, 0, 4101),  # base advanced by 12; VECT_8 bits 0 and 7
                      (11, 4, 0, 4103), (1270, 4, 1, 4103))
    assert np.array_equal(decode_all_ways(path), expected)
    reader = open_events(path)
    assert isinstance(reader, RawReader) and (reader.encoding, reader.height, reader.width) == ("evt3", 720, 1280)
    assert (reader.event_count, reader.duration, reader.start_time) == (7, 4103, 4101)
    assert reader.issue_counts == {}


def test_evt3_time_wrap_is_a_backward_time_high_not_a_time_low_overflow(tmp_path):
    words = [th(5), tl(4090), ay(0), ax(1, 1),
             th(5), th(5), th(6), tl(2), ax(2, 1),  # TIME_HIGH repeated; TIME_LOW restarts without any wrap
             th(4095), tl(4095), ax(3, 1),
             th(0), th(0), tl(1), ax(4, 1),  # 4095 -> 0: one wrap of 2**24 us, however often TIME_HIGH repeats
             th(1), th(0), ax(5, 1),  # back by 1: a glitch, not a wrap (ignored, counted)
             th(4095), th(0), tl(0), ax(6, 0)]  # a second wrap
    path = write3(tmp_path, words)
    got = decode_all_ways(path)
    assert got["t"].tolist() == [5 * 4096 + 4090, 6 * 4096 + 2, 2**24 - 1, 2**24 + 1, 2**24 + 4096,
                                 2 * 2**24]
    assert got["x"].tolist() == [1, 2, 3, 4, 5, 6]
    reader = RawReader(path)
    glitch = len(EVT3_HEADER) + 2 * 17  # the th(0) after th(1)
    with pytest.warns(UserWarning, match=rf"1 TIME_HIGH words going backwards .* ignored \(first at byte {glitch}\)"):
        reader.load_all()
    assert reader.issues[TIME_BACKWARDS, 0] == 1


def test_evt3_triggers_are_returned_separately(tmp_path):
    words = [th(1), tl(2), trig3(1, 5), ay(7), ax(9, 0), tl(10), trig3(0, 5), th(2), trig3(1, 15)]
    path = write3(tmp_path, words)
    reader = RawReader(path, segment_words=2)
    assert np.array_equal(reader.load_all(), events((9, 7, 0, 4098)))
    triggers = reader.load_all_triggers()
    assert triggers.tolist() == [(1, 4098, 5), (0, 4106, 5), (1, 8192, 15)]
    assert reader.trigger_count == 3
    # the cursor collects the triggers it passes
    reader.seek_time(4100)
    reader.load_delta_t(100)
    assert reader.get_ext_trigger_events().tolist() == [(0, 4106, 5)]
    reader.load_delta_t(10_000)
    assert len(reader.get_ext_trigger_events()) == 2
    reader.clear_ext_trigger_events()
    assert len(reader.get_ext_trigger_events()) == 0


def test_evt3_bad_input_is_decoded_as_far_as_valid_with_counted_warnings(tmp_path):
    words = [ay(1), ax(5, 1),  # no TIME_HIGH yet: dropped
             th(1), v12(0b11),  # no VECT_BASE_X yet: 2 events dropped
             0x9123, 0x1000,  # reserved types: skipped
             ax(1279, 1), ax(1280, 1),  # the second is outside the 1280-wide sensor
             ay(720), ax(3, 0),  # row 720 outside the 720-high sensor
             ay(2), vbase(1278, 0), v8(0b111)]  # x = 1278, 1279 kept, 1280 dropped
    path = write3(tmp_path, words, tail=b"\x07")  # and a truncated last word
    with pytest.warns(UserWarning) as record:
        reader = RawReader(path)
        got = reader.load_all()
    assert np.array_equal(got, events((1279, 1, 1, 4096), (1278, 2, 0, 4096), (1279, 2, 0, 4096)))
    messages = " | ".join(str(w.message) for w in record)
    assert "truncated last 2-byte word, ignoring its 1 dangling bytes" in messages
    counts = reader.issues[:, 0]
    assert counts[NO_TIME] == 1 and counts[NO_ADDRESS] == 2 and counts[UNKNOWN_TYPE] == 2
    assert counts[OUT_OF_BOUNDS] == 3
    body = len(EVT3_HEADER)
    assert reader.issues[UNKNOWN_TYPE, 1] == 4 and f"2 words of a reserved/unknown event type skipped (first at byte " \
        f"{body + 8})" in messages
    assert f"3 events outside the sensor geometry dropped (first at byte {body + 14})" in messages
    with pytest.warns(UserWarning), pytest.raises(EventFileError, match=rf"s\.raw: 1 events before the first "
                                                                        rf"TIME_HIGH .*at byte {body + 2}"):
        RawReader(path).validate()


def test_header_lying_about_geometry_drops_outside_events_with_a_warning(tmp_path):
    header = b"% evt 3.0\n% geometry 640x480\n"
    path = write3(tmp_path, [th(0), ay(10), ax(639, 1), ax(700, 1), ay(500), ax(1, 1)], header=header)
    with pytest.warns(UserWarning, match=r"2 events outside the sensor geometry dropped"):
        got = RawReader(path).load_all()
    assert np.array_equal(got, events((639, 10, 1, 0)))
    # without a geometry in the header, the user's size is used; the 11-bit address space otherwise
    plain = write3(tmp_path, [th(0), ay(10), ax(700, 1)], name="plain.raw", header=b"% evt 3.0\n")
    assert RawReader(plain).height is None and len(RawReader(plain).load_all()) == 1
    with pytest.warns(UserWarning, match="outside the sensor geometry"):
        assert len(RawReader(plain, height=480, width=640).load_all()) == 0


def test_evt2_events_wrap_triggers_and_bad_words(tmp_path):
    top = (1 << 28) - 1
    words = [cd(1, 3, 5, 6),  # before any TIME_HIGH: dropped
             th2(10), cd(1, 3, 5, 6), cd(0, 63, 639, 479), trig2(1, 31, 4),
             0x3000_0000,  # reserved type
             0xE000_0000, 0xF000_0000,  # OTHERS / CONTINUED: skipped silently
             th2(10), th2(11), cd(0, 0, 1, 2),
             th2(top), cd(1, 1, 2, 3), th2(0), cd(1, 2, 3, 4)]  # TIME_HIGH wrap after 2**34 us
    path = write2(tmp_path, words, tail=b"\x01\x02")
    with pytest.warns(UserWarning, match="truncated last 4-byte word, ignoring its 2 dangling bytes"):
        reader = RawReader(path)
    assert (reader.encoding, reader.height, reader.width) == ("evt2", 480, 640)  # size from the plugin name
    got = decode_all_ways(path)
    assert np.array_equal(got, events((5, 6, 1, 643), (639, 479, 0, 703), (1, 2, 0, 704),
                                      (2, 3, 1, (top << 6) | 1), (3, 4, 1, (1 << 34) | 2)))
    with pytest.warns(UserWarning, match="1 events before the first TIME_HIGH"):
        assert reader.load_all_triggers().tolist() == [(1, 644, 31)]
    assert reader.issues[NO_TIME, 0] == 1 and reader.issues[UNKNOWN_TYPE, 0] == 1
    assert reader.issues[UNKNOWN_TYPE, 1] == 5  # word index of the reserved word


def test_evt2_out_of_order_events_are_kept_and_counted(tmp_path):
    path = write2(tmp_path, [th2(1), cd(1, 10, 1, 1), cd(1, 4, 2, 2), cd(1, 12, 3, 3)])
    reader = RawReader(path)
    with pytest.warns(UserWarning, match="1 events earlier than an event before them kept in stream order"):
        got = reader.load_all()
    assert got["t"].tolist() == [74, 68, 76]
    assert reader.issues[TIME_UNSORTED, 0] == 1
    reader.seek_time(70)  # the first event in stream order with t >= 70
    assert reader.load_delta_t(10)["x"].tolist() == [1, 2, 3]


def test_streaming_matches_load_all_across_segment_boundaries(tmp_path):
    rng = np.random.default_rng(5)
    words = []
    high = 0
    for _ in range(300):  # random mix of time steps, rows, single events and vectors
        high += int(rng.integers(0, 3))
        words += [th(high % 4096), tl(int(rng.integers(0, 4096)))] if rng.random() < 0.3 else [th(high % 4096)]
        words += [ay(int(rng.integers(0, 720))), ax(int(rng.integers(0, 1280)), int(rng.integers(0, 2))),
                  vbase(int(rng.integers(0, 1200)), 1), v12(int(rng.integers(1, 4096))), v8(int(rng.integers(1, 256)))]
    path = write3(tmp_path, words)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TIME_LOW draws go backwards within a TIME_HIGH: counted, not our topic
        whole = decode_all_ways(path)
        for segment_words in (1, 7, 50):
            reader = RawReader(path, segment_words=segment_words)
            parts = []
            while not reader.done:
                parts.append(reader.load_n_events(37))
            assert np.array_equal(np.concatenate(parts), whole)
    assert len(whole) > 300 * 4


def test_seek_and_windows_on_a_sorted_stream(tmp_path):
    words = [ay(0)]
    expected = []
    for k in range(200):  # one event every 1000 us
        t = k * 1000
        words += [th(t >> 12), tl(t & 0xFFF), ax(k % 1280, k % 2)]
        expected.append((k % 1280, 0, k % 2, t))
    expected = events(*expected)
    path = write3(tmp_path, words)
    for segment_words in (4, 1 << 16):
        reader = RawReader(path, segment_words=segment_words)
        reader.seek_time(50_500)
        window = reader.load_delta_t(10_000)
        assert window["t"].tolist() == list(range(51_000, 60_500, 1000))
        assert reader.current_time == 60_500 and reader.current_position == 61
        reader.seek_time(0)
        assert np.array_equal(reader.load_delta_t(300_000), expected)
        assert reader.done
        reader.seek_event(150)
        assert reader.current_time == 150_000 and np.array_equal(reader.load_n_events(3), expected[150:153])
        assert reader.current_time == 152_001  # last t + 1 (< the next event's t), as DatReader
        reader.seek_event(200)
        assert reader.done and len(reader.load_delta_t(1000)) == 0
        reader.seek_time(10**9)
        assert reader.done
        assert np.array_equal(reader.load_all(), expected)  # scanned by now: decoded into exact-size arrays
        # picklable mid-stream: the copy resumes where the original was
        reader.seek_time(20_000)
        reader.load_delta_t(5000)
        clone = pickle.loads(pickle.dumps(reader))
        assert np.array_equal(clone.load_delta_t(5000), reader.load_delta_t(5000))


def test_header_errors_and_empty_files(tmp_path):
    empty = tmp_path / "empty.raw"
    empty.write_bytes(b"")
    with pytest.raises(EventFileError, match=r"empty\.raw: empty file"):
        open_events(empty)
    with pytest.raises(EventFileError, match=r"empty\.raw: empty file, expected a RAW header"):
        RawReader(empty)
    only_header = write3(tmp_path, [], name="header_only.raw")
    with pytest.warns(UserWarning, match=r"no event data after the RAW header \(at byte"):
        reader = RawReader(only_header)
    assert reader.event_count == 0 and reader.duration == 0 and len(reader.load_delta_t(1000)) == 0 and reader.done
    evt21 = write3(tmp_path, [0], name="evt21.raw", header=b"% evt 2.1\n")
    with pytest.raises(EventFileError, match=r"evt21\.raw: RAW encoding EVT21 is not supported"):
        open_events(evt21)
    odd = write3(tmp_path, [0], name="odd.raw", header=b"% evt 3.0\n% format EVT9;height=1;width=1\n")
    with pytest.raises(EventFileError, match=r"odd\.raw: RAW header '% format EVT9.*unknown encoding"):
        open_events(odd)
    bad_geometry = write3(tmp_path, [0], name="geo.raw", header=b"% evt 3.0\n% geometry 1280by720\n")
    with pytest.raises(EventFileError, match=r"geo\.raw: RAW header '% geometry 1280by720': expected WIDTHxHEIGHT"):
        open_events(bad_geometry)
    binary = write3(tmp_path, [0], name="bin.raw", header=b"% evt 3.0\n% serial \xff\xfe\n")
    with pytest.raises(EventFileError, match=r"bin\.raw: garbled RAW header: non-ASCII bytes .*at byte 10"):
        open_events(binary)
    disagree = write3(tmp_path, [th(0)], name="two.raw", header=b"% evt 3.0\n% format EVT3;height=720;width=1280\n"
                                                                 b"% geometry 640x480\n")
    with pytest.warns(UserWarning, match=r"'format' says 1280x720 but 'geometry' says 640x480; using 1280x720"):
        assert RawReader(disagree).width == 1280


def test_data_starting_with_a_percent_byte_is_not_read_as_a_header_line(tmp_path):
    # Without '% end' the data follows the last header line, and its first byte may be 0x25 ('%').
    # EVT 2.0: TIME_HIGH 0x2025 is the word 0x80002025, stored 25 20 00 80 ("% " then binary); the next word, an
    # event at y = 37, starts with 0x25 too.
    header2 = b"% Date 2020-09-14 09:03:25\n% plugin_name hal_plugin_gen3_fx3\n% evt 2.0\n"
    path2 = write2(tmp_path, [th2(0x2025), cd(1, 5, 100, 37), cd(0, 6, 639, 479)], header=header2)
    assert path2.read_bytes()[len(header2):len(header2) + 4] == b"% \x00\x80"
    reader = open_events(path2)
    assert (reader.encoding, reader._body_offset, reader.width, reader.height) == ("evt2", len(header2), 640, 480)
    assert np.array_equal(reader.load_all(), events((100, 37, 1, (0x2025 << 6) | 5), (639, 479, 0, (0x2025 << 6) | 6)))
    # EVT 3.0: TIME_HIGH 0x025 is 0x8025, stored 25 80; header lines after the encoding line are still read
    header3 = b"% evt 3.0\n% format EVT3;height=720;width=1280\n% serial_number 00001034\n"
    path3 = write3(tmp_path, [th(0x025), tl(7), ay(3), ax(10, 1)], header=header3)
    reader = open_events(path3)
    assert (reader._body_offset, reader.header["serial_number"]) == (len(header3), "00001034")
    assert np.array_equal(reader.load_all(), events((10, 3, 1, (0x025 << 12) | 7)))
    # EVT 3.0 data starting with the very bytes "% ": ADDR_X 37 (0x2025, before any time: dropped) then ADDR_Y 5
    path3b = write3(tmp_path, [ax(37, 0), ay(5), th(1), ax(6, 1)], name="s3b.raw", header=header3)
    reader = open_events(path3b)
    assert reader._body_offset == len(header3)
    with pytest.warns(UserWarning, match=rf"1 events before the first TIME_HIGH .*at byte {len(header3)}\)"):
        assert np.array_equal(reader.load_all(), events((6, 5, 1, 4096)))


def test_duration_counts_only_kept_events(tmp_path):
    # a vector at t = 8192 entirely outside the 640-wide sensor is dropped: the recording ends at the kept event
    path = write3(tmp_path, [th(0), ay(10), ax(5, 1), th(2), vbase(700, 1), v12(0b111)],
                  header=b"% evt 3.0\n% geometry 640x480\n")
    reader = RawReader(path)
    with pytest.warns(UserWarning, match="3 events outside the sensor geometry dropped"):
        assert (reader.event_count, reader.duration) == (1, 0)
