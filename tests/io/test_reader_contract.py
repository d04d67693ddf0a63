"""What every event reader (DAT, RAW EVT 2.0 / 3.0, HDF5) promises, checked on the same recordings: arguments
validated the same way, exactly the documented dtypes on multi-block / multi-segment reads, seeks that never skip
events past a backward timestamp, and EventFileError (not a crash) when the file changes under an open reader."""

import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from evframe.io import (
    EVENT_DTYPE,
    TRIGGER_DTYPE,
    EventFileError,
    RawReader,
    open_events,
    write_dat,
    write_hdf5_events,
    write_raw,
)
from evframe.io._blocks import BLOCK

INT64_MAX = 2**63 - 1
FORMATS = ["dat", "evt2", "evt3", "hdf5"]


def recording(n: int, step_us: int = 10) -> np.ndarray:
    """n events, one every ``step_us`` us from t = 0, on a 64x48 sensor (x = i % 64, y = i % 48, p = i % 2)."""
    events = np.zeros(n, dtype=EVENT_DTYPE)
    index = np.arange(n)
    events["x"], events["y"], events["p"], events["t"] = index % 64, index % 48, index % 2, index * step_us
    return events


def write(tmp_path, fmt: str, events: np.ndarray, triggers=None):
    """The events as a file of format ``fmt`` (64x48 sensor); returns its path."""
    path = tmp_path / f"rec_{fmt}.{'raw' if fmt.startswith('evt') else fmt}"
    if fmt == "dat":
        write_dat(path, events, 48, 64)
    elif fmt == "hdf5":
        write_hdf5_events(path, events, 48, 64, triggers=triggers)
    else:
        write_raw(path, events, 48, 64, encoding=fmt, triggers=triggers)
    return path


def assert_layout(array: np.ndarray, dtype: np.dtype, itemsize: int, offsets: list[int]) -> None:
    """``array`` has exactly ``dtype``: same fields, offsets and padding (not a packed look-alike)."""
    assert array.dtype == dtype
    assert array.dtype.itemsize == itemsize
    assert [array.dtype.fields[name][1] for name in dtype.names] == offsets


def assert_events(array: np.ndarray) -> None:
    assert_layout(array, EVENT_DTYPE, 16, [0, 2, 4, 8])


@pytest.mark.parametrize("fmt", FORMATS)
def test_odd_arguments_are_refused_the_same_way_by_every_reader(tmp_path, fmt):
    events = recording(10)
    path = write(tmp_path, fmt, events)
    reader = open_events(path)
    name = path.name
    cases = [
        (lambda: reader.seek_time(-2**70), ValueError,
         rf"{name}: t_us=-1180591620717411303424 is out of range, expected an integer in \[0, {INT64_MAX}\]"),
        (lambda: reader.seek_time(-1), ValueError, rf"{name}: t_us=-1 is out of range"),
        (lambda: reader.seek_time(2**63), ValueError, rf"t_us={2**63} is out of range"),
        (lambda: reader.seek_time(10.0), TypeError, rf"{name}: t_us must be an integer \(int or numpy integer\), got "
                                                    r"float 10\.0"),
        (lambda: reader.load_delta_t(2**63), ValueError,
         rf"{name}: delta_t=9223372036854775808 is out of range, expected an integer in \[1, {INT64_MAX}\]"),
        (lambda: reader.load_delta_t(0), ValueError, r"delta_t=0 is out of range"),
        (lambda: reader.load_delta_t(np.float32(5)), TypeError, r"delta_t must be an integer .*got float32 5\.0"),
        (lambda: reader.seek_event(1.5), TypeError, rf"{name}: n must be an integer .*got float 1\.5"),
        (lambda: reader.seek_event(True), TypeError, r"n must be an integer .*got bool True"),
        (lambda: reader.seek_event(11), ValueError, r"n=11 is out of range, expected an integer in \[0, 10\]"),
        (lambda: reader.seek_event(-1), ValueError, r"n=-1 is out of range, expected an integer in \[0, 10\]"),
        (lambda: reader.load_n_events(-1), ValueError, rf"n=-1 is out of range, expected an integer in \[0, "
                                                       rf"{INT64_MAX}\]"),
        (lambda: reader.load_n_events("3"), TypeError, r"n must be an integer .*got str '3'"),
        (lambda: type(reader)(path, height=True), TypeError, r"height must be an integer .*got bool True"),
        (lambda: type(reader)(path, width=0), ValueError, r"width=0 is out of range, expected an integer in "
                                                          r"\[1, 65536\]"),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()
    assert reader.current_position == 0 and reader.current_time == 0  # refused calls do not move the cursor
    # numpy integers are integers; the extreme values work without overflowing
    reader.seek_event(np.int64(3))
    assert reader.current_position == 3 and reader.current_time == 30
    reader.seek_time(np.uint32(45))
    assert reader.current_position == 5
    reader.seek_time(0)
    assert np.array_equal(reader.load_delta_t(INT64_MAX), events) and reader.current_time == INT64_MAX
    assert len(reader.load_delta_t(INT64_MAX)) == 0 and reader.current_time == 2 * INT64_MAX
    reader.seek_time(INT64_MAX)
    assert reader.done and reader.current_time == INT64_MAX
    reader.reset()
    assert np.array_equal(reader.load_n_events(INT64_MAX), events) and reader.done
    reader.seek_event(10)
    assert reader.done and reader.current_time == 91


@pytest.mark.parametrize("fmt", FORMATS)
def test_reads_across_blocks_and_segments_return_exact_dtypes(tmp_path, fmt):
    events = recording(BLOCK + BLOCK // 2 if fmt in ("dat", "hdf5") else 3000)
    triggers = np.zeros(40, dtype=TRIGGER_DTYPE)
    triggers["p"], triggers["t"], triggers["id"] = np.arange(40) % 2, np.arange(40) * 600 + 5, np.arange(40) % 4
    path = write(tmp_path, fmt, events, None if fmt == "dat" else triggers)
    if fmt.startswith("evt"):  # segments of 64 words: every read below crosses many segment boundaries
        reader, boundary = RawReader(path, segment_words=64), 1500
    else:  # blocks of 64K events: the reads below cross the boundary between block 0 and block 1
        reader, boundary = open_events(path), BLOCK
    t = events["t"]
    reader.seek_event(boundary - 700)
    window = reader.load_delta_t(14_000)
    assert_events(window)
    assert np.array_equal(window, events[boundary - 700:boundary + 700])
    chunk = reader.load_n_events(900)
    assert_events(chunk)
    assert np.array_equal(chunk, events[boundary + 700:boundary + 1600])
    whole = reader.load_all()
    assert_events(whole)
    assert np.array_equal(whole, events)
    assert_events(open_events(path).load_all())  # a fresh reader, without any checkpoint or sorted block yet
    reader.reset()
    parts = []
    while not reader.done:
        parts.append(reader.load_delta_t(33_333))
        assert_events(parts[-1])
    assert np.array_equal(np.concatenate(parts), events)
    reader.seek_time(int(t[boundary]) - 5)
    assert np.array_equal(reader.load_delta_t(10), events[boundary:boundary + 1])
    if fmt != "dat":
        all_triggers = reader.load_all_triggers()
        assert_layout(all_triggers, TRIGGER_DTYPE, 24, [0, 8, 16])
        assert all_triggers.tolist() == triggers.tolist()
    if fmt.startswith("evt"):
        reader.seek_time(0)
        reader.load_delta_t(20_000)
        passed = reader.get_ext_trigger_events()  # collected over many segments
        assert_layout(passed, TRIGGER_DTYPE, 24, [0, 8, 16])
        assert passed.tolist() == triggers[triggers["t"] < 20_000].tolist()


def backward_file(tmp_path, fmt: str, n: int, index: int, new_t: int):
    """A recording with one event every 10 us, except event ``index`` at ``new_t``; returns (path, events)."""
    events = recording(n)
    events["t"][index] = new_t
    if fmt == "dat":
        path = tmp_path / "backward.dat"
        records = np.zeros((n, 2), dtype="<u4")
        records[:, 0] = events["t"]
        records[:, 1] = events["x"] | (events["y"].astype("<u4") << 14) | (events["p"].astype("<u4") << 28)
        path.write_bytes(b"% Height 48\n% Width 64\n\x00\x08" + records.tobytes())
    else:  # write_hdf5_events refuses unsorted events: write the layout directly
        path = tmp_path / "backward.hdf5"
        with h5py.File(path, "w") as f:
            f.attrs["geometry"] = "64x48"
            f.create_dataset("CD/events", data=events, chunks=(16384,))
    return path, events


@pytest.mark.parametrize("fmt", ["dat", "hdf5"])
def test_seek_time_never_skips_events_before_a_backward_timestamp(tmp_path, fmt):
    # events 0..19999 at t = 10 * index, except event 5000 at 48_990 (after 49_990): a bisection for t >= 49_500
    # could land after event 5000 and skip events 4950..4999 (they have t >= 49_500)
    path, events = backward_file(tmp_path, fmt, 20_000, 5000, 48_990)
    where = "record 5000" if fmt == "dat" else "/CD/events event 5000"
    backwards = rf"backward\.{fmt}: {where}: timestamps going backwards \(t=48990 after t=49990\)"
    reader = open_events(path)
    reader.seek_time(49_500)  # the first event with t >= 49_500 comes before the backward one: found exactly
    assert reader.current_position == 4950
    assert np.array_equal(reader.load_delta_t(400), events[4950:4990])
    with pytest.raises(EventFileError, match=backwards):  # reading on reaches it
        reader.load_delta_t(1000)
    for target in (49_991, 50_000, 60_000, 199_990):  # answers past the backward timestamp cannot be trusted
        with pytest.raises(EventFileError, match=backwards):
            open_events(path).seek_time(target)
    # the same answers from a reader that went over the whole file first
    reader = open_events(path)
    with pytest.raises(EventFileError, match=backwards):
        reader.load_all()
    reader.seek_time(30_005)
    assert reader.current_position == 3001
    with pytest.raises(EventFileError, match=backwards):
        reader.seek_time(50_000)


@pytest.mark.parametrize("fmt", ["dat", "hdf5"])
def test_backward_timestamp_at_a_block_boundary(tmp_path, fmt):
    # event BLOCK (the first of the second block) 1000 us earlier than the one before it
    path, events = backward_file(tmp_path, fmt, 2 * BLOCK, BLOCK, 10 * BLOCK - 1000)
    where = f"record {BLOCK}" if fmt == "dat" else f"/CD/events event {BLOCK}"
    message = rf"{where}: timestamps going backwards \(t={10 * BLOCK - 1000} after t={10 * BLOCK - 10}\)"
    reader = open_events(path)
    for call in (reader.load_all, reader.validate, lambda: reader.seek_time(10 * BLOCK - 5),
                 lambda: (reader.seek_event(BLOCK - 10), reader.load_delta_t(1000)),
                 lambda: (reader.seek_event(BLOCK - 10), reader.load_n_events(20))):
        with pytest.raises(EventFileError, match=message):
            call()
    reader.seek_time(10 * BLOCK - 2000)  # the event sought comes before the backward one: exact
    assert reader.current_position == BLOCK - 200
    assert np.array_equal(reader.load_n_events(200), events[BLOCK - 200:BLOCK])


CHILD = textwrap.dedent("""
    import os, sys, warnings
    import numpy as np
    from evframe.io import EventFileError, open_events
    warnings.simplefilter("ignore")
    path, how = sys.argv[1], sys.argv[2]
    original = open(path, "rb").read()

    def change():
        if how == "truncate":
            with open(path, "r+b") as f:
                f.truncate(len(original) // 2)
        else:  # rewritten in place with other content: fewer bytes, then the same number of bytes
            with open(path, "wb") as f:
                f.write(original[: len(original) - 4096])
            if how == "rewrite_same_size":
                with open(path, "wb") as f:
                    f.write(original[:200] + bytes(reversed(original[200:])))

    def attempt(label, call):
        print("start", label, flush=True)
        try:
            call()
        except EventFileError as err:
            print("ok", label, str(err).split(": ", 1)[1][:120], flush=True)
        else:
            print("NO ERROR", label, flush=True)

    for label in ("load_all", "load_delta_t", "load_n_events", "seek_time", "seek_event", "duration"):
        open(path, "wb").write(original)
        reader = open_events(path)
        reader.load_n_events(10)  # the file is open and partly read
        if how == "rewrite_same_size" and hasattr(reader, "_checkpoints"):
            reader.event_count  # RAW: checkpoints and exact event counts of every segment
        change()
        if how == "rewrite_same_size":  # a change within the file system's time resolution: not seen by stat
            st = os.stat(path)
            reader._file._signature = (st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        calls = {"load_all": reader.load_all, "load_delta_t": lambda: reader.load_delta_t(10**9),
                 "load_n_events": lambda: reader.load_n_events(10**9), "duration": lambda: reader.duration,
                 "seek_time": lambda: (reader.seek_time(10**9), reader.load_delta_t(1)),
                 "seek_event": lambda: (reader.seek_event(reader.current_position + 500), reader.load_n_events(5))}
        attempt(label, calls[label])
    print("finished", flush=True)
""")


@pytest.mark.parametrize("fmt", ["dat", "evt2", "evt3"])
@pytest.mark.parametrize("how", ["truncate", "rewrite"])
def test_file_changed_under_an_open_reader_raises_instead_of_crashing(tmp_path, fmt, how):
    path = write(tmp_path, fmt, recording(300_000, step_us=3))
    # in a child process: a SIGBUS / SIGSEGV there fails this test instead of killing pytest
    done = subprocess.run([sys.executable, "-c", CHILD, str(path), how], capture_output=True, text=True,
                          timeout=300)
    lines = done.stdout.splitlines()
    assert done.returncode == 0, f"child died with {done.returncode} after {lines[-1:]}: {done.stderr[-2000:]}"
    assert lines[-1] == "finished" and not [line for line in lines if line.startswith("NO ERROR")], lines
    assert sum(line.startswith("ok ") for line in lines) == 6
    if how == "truncate":
        assert any("shrank while a reader had it open" in line or "file changed while a reader" in line
                   for line in lines)


@pytest.mark.parametrize("fmt", ["evt2", "evt3"])
def test_raw_decoder_never_writes_past_its_output(tmp_path, fmt):
    # rewritten with exactly the same size within the file system's time resolution, the change is invisible to
    # stat: the decoder, filling outputs sized by the first pass, must stop at their end (EventFileError)
    path = write(tmp_path, fmt, recording(300_000, step_us=3))
    done = subprocess.run([sys.executable, "-c", CHILD, str(path), "rewrite_same_size"], capture_output=True,
                          text=True, timeout=300)
    lines = done.stdout.splitlines()
    assert done.returncode == 0, f"child died with {done.returncode} after {lines[-1:]}: {done.stderr[-2000:]}"
    assert lines[-1] == "finished"
    load_all = [line for line in lines if line.endswith("load_all") or " load_all " in line]
    assert load_all[-1].startswith("ok load_all"), lines
