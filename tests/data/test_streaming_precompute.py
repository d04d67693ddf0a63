"""`python -m evframe.preprocess.precompute` on RAW and HDF5 event inputs: tensors equal the preprocessing of the
decoded events, labels copied, HDF5 tensor files among the inputs left alone."""

import h5py
import numpy as np

from evframe.io import EVENT_DTYPE, write_hdf5_events, write_raw
from evframe.preprocess import compute
from evframe.preprocess.h5_tensors import TensorH5Reader
from evframe.preprocess.precompute import find_event_files, main


def _events(n, t_max, seed):
    rng = np.random.default_rng(seed)
    events = np.zeros(n, dtype=EVENT_DTYPE)
    events["x"], events["y"], events["p"] = rng.integers(0, 16, n), rng.integers(0, 8, n), rng.integers(0, 2, n)
    events["t"] = np.sort(rng.integers(0, t_max, n))
    return events


def test_precompute_raw_and_hdf5_inputs(tmp_path):
    src = tmp_path / "in" / "train"
    src.mkdir(parents=True)
    a, b = _events(500, 9_500, 0), _events(300, 4_000, 1)
    write_raw(src / "a_td.raw", a, 8, 16, "evt2")
    write_hdf5_events(src / "b.hdf5", b, 8, 16)
    (src / "a_bbox.npy").write_bytes(b"labels of a")
    with h5py.File(src / "tensors.hdf5", "w") as f:  # not an event file: skipped
        f.create_dataset("data", data=np.zeros((1, 2, 8, 16), np.float32))
    assert [p.name for p in find_event_files(tmp_path / "in")] == ["a_td.raw", "b.hdf5"]
    status = main([str(tmp_path / "in"), str(tmp_path / "out"), "--preprocess", "histo", "--delta-t", "1000",
                   "--kwarg", "max_incr_per_pixel=10", "--compression", "gzip"])
    assert status == 0
    for name, events, bins in (("a", a, 10), ("b", b, 4)):
        reader = TensorH5Reader(tmp_path / "out" / "train" / f"{name}.h5")
        assert len(reader) == bins  # up to the last event's bin
        expected = compute("histo", events, bins, 8, 16, 1000, max_incr_per_pixel=10).numpy()
        assert np.allclose(np.asarray(reader.read(0, bins)), expected)
    assert (tmp_path / "out" / "train" / "a_bbox.npy").read_bytes() == b"labels of a"
    assert not (tmp_path / "out" / "train" / "tensors.h5").exists()
