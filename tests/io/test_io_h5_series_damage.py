"""Damaged or inconsistent ``*_frames.h5`` files (the time-series HDF5 reader shared with flow labels): every problem
is an EventFileError naming the file, never h5py's own OSError / KeyError."""

import h5py
import numpy as np
import pytest

from evframe.io import EventFileError, FramesReader, write_frames_h5


def frames_file(tmp_path, name="rec_frames.h5"):
    frames = np.arange(4 * 6 * 8, dtype=np.uint8).reshape(4, 6, 8)
    path = tmp_path / name
    write_frames_h5(path, frames, np.array([0, 10, 20, 30]))
    return path, frames


def test_damaged_chunk_and_header(tmp_path):
    path, frames = frames_file(tmp_path)
    with h5py.File(path, "r") as f:
        chunk = f["frames"].id.get_chunk_info(2)  # one frame per chunk, gzip-compressed
        header = h5py.h5o.get_info(f["frames"].id).addr
    data = bytearray(path.read_bytes())
    data[chunk.byte_offset:chunk.byte_offset + chunk.size] = bytes(chunk.size)  # zeroed: not a deflate stream
    path.write_bytes(bytes(data))
    reader = FramesReader(path)
    assert np.array_equal(reader.read([0, 1]), frames[:2])
    with pytest.raises(EventFileError, match=r"rec_frames\.h5: damaged or unreadable HDF5 file: cannot read dataset "
                                             r"'frames' items 2\.\.2 \(OSError: "):
        reader.read(2)
    with pytest.raises(EventFileError, match=r"rec_frames\.h5: damaged .*dataset 'frames'\[1:4:None\] \(OSError: "):
        reader.read(slice(1, 4))
    reader.close()  # HDF5 would keep serving the open file's cached metadata
    data[header:header + 2] = b"\xff\xff"  # the dataset's object header: h5py raises KeyError
    path.write_bytes(bytes(data))
    with pytest.raises(EventFileError, match=r"rec_frames\.h5: damaged or unreadable HDF5 file: cannot read datasets "
                                             r"'timestamps' and 'frames' \(KeyError: "):
        FramesReader(path)


def test_file_truncated_after_the_reader_was_created(tmp_path):
    path, frames = frames_file(tmp_path)
    reader = FramesReader(path)  # reads only the metadata; the data file is opened on the first read
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(EventFileError, match=r"rec_frames\.h5: not a readable HDF5 file \(.*truncated file"):
        reader.read(0)


def test_timestamps_that_do_not_fit_or_go_backwards(tmp_path):
    for name, timestamps, message in (
            ("huge", np.array([0, 2**63], dtype=np.uint64), r"at index 1: 9223372036854775808 us does not fit int64"),
            ("back", np.array([0, 20, 10]), r"at index 2: 10 us after 20 us at index 1; expected strictly increasing"),
            ("same", np.array([0, 20, 20]), r"at index 2: 20 us after 20 us at index 1")):
        path = tmp_path / f"{name}.h5"
        with h5py.File(path, "w") as f:
            f["frames"] = np.zeros((len(timestamps), 2, 2), np.uint8)
            f["timestamps"] = timestamps
        with pytest.raises(EventFileError, match=rf"{name}\.h5: dataset 'timestamps' {message}"):
            FramesReader(path)
