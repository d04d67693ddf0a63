import concurrent.futures
import multiprocessing
import os
import pickle
import sys

import h5py
import numpy as np
import pytest

from evframe.io import EventFileError, FlowLabelsReader, FramesReader, write_flow_h5, write_frames_h5


def make_flow(n=5, h=4, w=6):
    flow = np.arange(n * 2 * h * w, dtype=np.float32).reshape(n, 2, h, w) * 0.5
    return flow, np.arange(n, dtype=np.int64) * 1000 + 10


def test_flow_round_trip_and_indexing(tmp_path):
    flow, ts = make_flow()
    path = tmp_path / "rec_flow.h5"
    write_flow_h5(path, flow.astype(np.float64), ts)
    with h5py.File(path) as f:
        assert f.attrs["unit"] == "px/s" and f["flow"].dtype == np.float32
    reader = FlowLabelsReader(path)
    assert (len(reader), reader.height, reader.width) == (5, 4, 6)
    assert np.array_equal(reader.timestamps, ts) and reader.timestamps.dtype == np.int64
    assert np.array_equal(reader.read(slice(None)), flow)
    assert reader.read(2).shape == (1, 2, 4, 6) and np.array_equal(reader.read(2)[0], flow[2])
    assert np.array_equal(reader.read(-1)[0], flow[4])
    assert np.array_equal(reader.read([4, 0, 4]), flow[[4, 0, 4]])
    assert np.array_equal(reader.read(np.array([1, 2, 3])), flow[1:4])
    assert reader.read([]).shape == (0, 2, 4, 6)
    assert reader.read(1).dtype == np.float32
    with pytest.raises(IndexError):
        reader.read(5)
    # timestamps 10, 1010, 2010, 3010, 4010
    assert reader.indices_in(0, 1010).tolist() == [0]
    assert reader.indices_in(10, 3011).tolist() == [0, 1, 2, 3]
    assert reader.indices_in(4011, 9999).tolist() == [] and reader.indices_in(500, 100).tolist() == []


def _read_in_child(reader):
    return reader.read([3])[0].sum()


_INHERITED = {}


def _read_inherited_in_child():
    # The reader came through fork with the parent's open handle: it must reopen its own.
    reader = _INHERITED["reader"]
    total = reader.read([3])[0].sum()
    return total, reader._pid == os.getpid()


def test_readers_pickle_and_work_in_other_processes(tmp_path):
    flow, ts = make_flow()
    write_flow_h5(tmp_path / "f.h5", flow, ts)
    reader = FlowLabelsReader(tmp_path / "f.h5")
    reader.read(0)  # the parent now holds an open handle, which must not travel
    clone = pickle.loads(pickle.dumps(reader))
    assert np.array_equal(clone.read(slice(1, 3)), flow[1:3])
    for method in ("fork", "spawn"):
        context = multiprocessing.get_context(method)
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
            assert pool.submit(_read_in_child, reader).result() == flow[3].sum()
    if sys.platform.startswith("linux"):
        _INHERITED["reader"] = reader
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
            assert pool.submit(_read_inherited_in_child).result() == (flow[3].sum(), True)
    reader.close()


def test_frames_round_trip(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (3, 5, 7), dtype=np.uint8)
    ts = np.array([0, 33_333, 66_666])
    write_frames_h5(tmp_path / "rec_frames.h5", frames, ts)
    with FramesReader(tmp_path / "rec_frames.h5") as reader:
        assert (len(reader), reader.height, reader.width) == (3, 5, 7)
        assert reader.read(slice(0, 3)).dtype == np.uint8
        assert np.array_equal(reader.read(slice(0, 3)), frames)
        assert reader.indices_in(1, 66_667).tolist() == [1, 2]
        assert "FramesReader" in repr(reader) and "0..66666 us" in repr(reader)


def test_writers_validate(tmp_path):
    flow, ts = make_flow()
    with pytest.raises(ValueError, match=r"f\.h5.*\(N, 2, H, W\) float"):
        write_flow_h5(tmp_path / "f.h5", flow[:, :1], ts)
    with pytest.raises(ValueError, match=r"f\.h5.*\(N, 2, H, W\) float"):
        write_flow_h5(tmp_path / "f.h5", flow.astype(np.int32), ts)
    with pytest.raises(ValueError, match=r"timestamps should be \(5,\) integers"):
        write_flow_h5(tmp_path / "f.h5", flow, ts[:4])
    with pytest.raises(ValueError, match="strictly increasing"):
        write_flow_h5(tmp_path / "f.h5", flow, ts[::-1])
    with pytest.raises(ValueError, match=r"g\.h5.*\(N, H, W\) uint8"):
        write_frames_h5(tmp_path / "g.h5", np.zeros((2, 3, 4), np.float32), ts[:2])
    assert list(tmp_path.iterdir()) == []


def test_bad_h5_files(tmp_path):
    with h5py.File(tmp_path / "three.h5", "w") as f:
        f["flow"] = np.zeros((2, 3, 4, 4), np.float32)
        f["timestamps"] = np.array([0, 1])
    with pytest.raises(EventFileError, match=r"three\.h5: dataset 'flow' has shape \(2, 3, 4, 4\), expected "
                                             r"\(N, 2, \*, \*\)"):
        FlowLabelsReader(tmp_path / "three.h5")
    with h5py.File(tmp_path / "nots.h5", "w") as f:
        f["flow"] = np.zeros((2, 2, 4, 4), np.float32)
    with pytest.raises(EventFileError, match=r"nots\.h5: missing dataset\(s\) \['timestamps'\]; found \['flow'\]"):
        FlowLabelsReader(tmp_path / "nots.h5")
    with h5py.File(tmp_path / "count.h5", "w") as f:
        f["frames"] = np.zeros((2, 4, 4), np.uint8)
        f["timestamps"] = np.array([0, 1, 2])
    with pytest.raises(EventFileError, match=r"count\.h5: dataset 'timestamps' has int64 \(3,\), expected \(2,\)"):
        FramesReader(tmp_path / "count.h5")
    with h5py.File(tmp_path / "wide.h5", "w") as f:
        f["frames"] = np.zeros((2, 4, 4), np.uint16)
        f["timestamps"] = np.array([0, 1])
    with pytest.raises(EventFileError, match=r"wide\.h5: dataset 'frames' has dtype uint16, expected uint8"):
        FramesReader(tmp_path / "wide.h5")
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(EventFileError, match=r"text\.h5: not a readable HDF5 file"):
        FramesReader(tmp_path / "text.h5")
    with pytest.raises(FileNotFoundError):
        FramesReader(tmp_path / "absent.h5")
