"""HDF5 tensor files: round trips, Metavision attr variants, uint8 storage, errors, pickling."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest
import torch

from evframe.io.errors import EventFileError
from evframe.preprocess.h5_tensors import TensorH5Reader, TensorH5Writer, write_tensor_h5

ATTRS = {"events_to_tensor": "histo", "delta_t": 50000, "event_input_height": 6, "event_input_width": 8,
         "max_incr_per_pixel": 2.5}


def tensors(n=5, c=2, h=6, w=8, seed=0):
    return np.random.default_rng(seed).random((n, c, h, w), dtype=np.float32)


@pytest.mark.parametrize("compression", [None, "gzip", "none", "lz4"])
def test_float_round_trip(tmp_path, compression):
    data = tensors()
    path = write_tensor_h5(tmp_path / "rec.h5", data, ATTRS, compression=compression)
    reader = TensorH5Reader(path)
    assert (len(reader), reader.shape) == (5, (5, 2, 6, 8))
    assert (reader.delta_t, reader.height, reader.width, reader.downsample) == (50000, 6, 8, 0)
    assert reader.preprocess_name == "histo"
    assert reader.kwargs == {"max_incr_per_pixel": 2.5}
    np.testing.assert_array_equal(reader.read(0, 5), data)
    np.testing.assert_array_equal(reader.read(1, 3), data[1:3])
    assert reader.read(2, 2).shape == (0, 2, 6, 8)
    with h5py.File(path) as f:
        assert f["data"].chunks == (1, 2, 6, 8)
        assert list(f.attrs["shape"]) == [2, 6, 8]
    assert [p.name for p in tmp_path.iterdir()] == ["rec.h5"]  # no temporary file left


def test_torch_input_and_downsample_attr(tmp_path):
    data = torch.ones(2, 1, 3, 4)
    write_tensor_h5(tmp_path / "a.h5", data, ATTRS | {"downsample": 1})
    reader = TensorH5Reader(tmp_path / "a.h5")
    assert reader.downsample == 1 and reader.height == 6
    assert reader.read(0, 2).dtype == np.float32


def test_downsample_is_inferred_when_absent(tmp_path):
    write_tensor_h5(tmp_path / "a.h5", np.zeros((1, 2, 3, 4), np.float32), ATTRS)
    assert TensorH5Reader(tmp_path / "a.h5").downsample == 1  # 6 -> 3


def test_bytes_valued_events_to_tensor_as_metavision_writes_it(tmp_path):
    path = tmp_path / "mv.h5"
    data = tensors(3, 6, 4, 5)
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=data, chunks=(1, 6, 4, 5))
        f.attrs["events_to_tensor"] = np.bytes_(b"event_cube")
        f.attrs["delta_t"] = np.uint32(10000)
        f.attrs["event_input_height"] = 4
        f.attrs["event_input_width"] = 5
        f.attrs["shape"] = np.array([6, 4, 5])
        f.attrs["num_utbins"] = np.int64(3)
        f.attrs["split_polarity"] = np.bool_(True)
        f.attrs["max_incr_per_pixel"] = np.float64(5.0)
    reader = TensorH5Reader(path)
    assert reader.preprocess_name == "event_cube"
    assert reader.delta_t == 10000
    assert reader.kwargs == {"num_utbins": 3, "split_polarity": True, "max_incr_per_pixel": 5.0}
    assert type(reader.kwargs["split_polarity"]) is bool
    np.testing.assert_array_equal(reader.read(0, 3), data)


def test_preprocess_attr_is_accepted_as_alias(tmp_path):
    attrs = {k: v for k, v in ATTRS.items() if k != "events_to_tensor"} | {"preprocess": "diff"}
    write_tensor_h5(tmp_path / "a.h5", np.zeros((1, 1, 6, 8), np.float32), attrs)
    reader = TensorH5Reader(tmp_path / "a.h5")
    assert reader.preprocess_name == "diff" and "preprocess" not in reader.kwargs
    with h5py.File(tmp_path / "a.h5") as f:
        assert f.attrs["events_to_tensor"] == "diff"


def test_uint8_storage_of_unit_range_is_exact_for_fifths(tmp_path):
    data = (np.arange(5 * 2 * 6 * 8).reshape(5, 2, 6, 8) % 6 * np.float32(0.2)).astype(np.float32)
    write_tensor_h5(tmp_path / "q.h5", data, ATTRS, store_as_uint8=True, value_range=(0, 1))
    with h5py.File(tmp_path / "q.h5") as f:
        assert f["data"].dtype == np.uint8
        assert int(f["data"][0].max()) == 255
    reader = TensorH5Reader(tmp_path / "q.h5")
    np.testing.assert_array_equal(reader.read(0, 5), data)
    assert "uint8_scale" not in reader.kwargs and "store_as_uint8" not in reader.kwargs


def test_uint8_storage_of_signed_counts_is_exact(tmp_path):
    counts = np.arange(-128, 128, dtype=np.float32).reshape(1, 1, 16, 16)
    write_tensor_h5(tmp_path / "d.h5", counts, ATTRS, store_as_uint8=True, value_range=(-128, 127))
    np.testing.assert_array_equal(TensorH5Reader(tmp_path / "d.h5").read(0, 1), counts)
    small = np.arange(8, dtype=np.float32).reshape(1, 1, 2, 4)  # 3-bit counts: 7 does not divide 255
    write_tensor_h5(tmp_path / "c.h5", small, ATTRS, store_as_uint8=True, value_range=(0, 7), integer_values=True)
    np.testing.assert_array_equal(TensorH5Reader(tmp_path / "c.h5").read(0, 1), small)
    with h5py.File(tmp_path / "c.h5") as f:
        assert f["data"][0].ravel().tolist() == list(range(8))


def test_signed_unit_range_uint8_is_within_half_a_step(tmp_path):
    data = np.linspace(-1, 1, 2 * 6 * 8, dtype=np.float32).reshape(1, 2, 6, 8)
    write_tensor_h5(tmp_path / "s.h5", data, ATTRS, store_as_uint8=True, value_range=(-1, 1))
    np.testing.assert_allclose(TensorH5Reader(tmp_path / "s.h5").read(0, 1), data, atol=1 / 255 + 1e-7)


def test_metavision_store_as_uint8_without_scale_means_divided_by_255(tmp_path):
    path = tmp_path / "mv8.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=np.array([0, 51, 255], np.uint8).reshape(1, 1, 1, 3))
        f.attrs.update(events_to_tensor="histo", delta_t=1000, event_input_height=1, event_input_width=3,
                       store_as_uint8=True)
    np.testing.assert_array_equal(TensorH5Reader(path).read(0, 1).ravel(), np.float32([0, 0.2, 1]))


def test_integer_store_without_encoding_attrs_reads_counts(tmp_path):
    path = tmp_path / "counts.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=np.array([0, 7, 300], np.uint16).reshape(1, 1, 1, 3))
        f.attrs.update(events_to_tensor="histo_quantized", delta_t=1000, event_input_height=1, event_input_width=3)
    np.testing.assert_array_equal(TensorH5Reader(path).read(0, 1).ravel(), np.float32([0, 7, 300]))


def test_incremental_writer(tmp_path):
    data = tensors(7)
    with TensorH5Writer(tmp_path / "inc.h5", 2, 6, 8, ATTRS) as writer:
        writer.append(data[:3])
        assert not (tmp_path / "inc.h5").exists()  # appears only when closed
        writer.append(torch.from_numpy(data[3:]))
        with pytest.raises(ValueError, match=r"appending tensors of shape \(1, 3, 6, 8\), expected \(n, 2, 6, 8\)"):
            writer.append(np.zeros((1, 3, 6, 8)))
    np.testing.assert_array_equal(TensorH5Reader(tmp_path / "inc.h5").read(0, 7), data)


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), TensorH5Writer(tmp_path / "x.h5", 2, 6, 8, ATTRS) as writer:
        writer.append(tensors(1))
        raise RuntimeError("interrupted")
    with pytest.raises(ValueError, match="attr 'bad'"):
        write_tensor_h5(tmp_path / "y.h5", tensors(1), ATTRS | {"bad": {"a": 1}})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("attrs", "message"), [
    ({k: v for k, v in ATTRS.items() if k != "delta_t"}, "lack delta_t"),
    ({k: v for k, v in ATTRS.items() if k != "events_to_tensor"}, "lack events_to_tensor"),
    (ATTRS | {"shape": [3, 6, 8]}, r"shape=\[3, 6, 8\] does not match"),
])
def test_writer_attr_errors(tmp_path, attrs, message):
    with pytest.raises(ValueError, match=message):
        write_tensor_h5(tmp_path / "a.h5", tensors(1), attrs)
    with pytest.raises(ValueError, match="value_range"):
        write_tensor_h5(tmp_path / "a.h5", tensors(1), ATTRS, store_as_uint8=True)


@pytest.mark.parametrize("missing", ["delta_t", "event_input_height", "event_input_width", "events_to_tensor"])
def test_reader_names_a_missing_attr(tmp_path, missing):
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=np.zeros((1, 2, 6, 8), np.float32))
        f.attrs.update({k: v for k, v in ATTRS.items() if k != missing})
    with pytest.raises(EventFileError, match=rf"m\.h5: missing attr '{missing}'"):
        TensorH5Reader(path)


def test_reader_errors(tmp_path):
    no_data = tmp_path / "nodata.h5"
    with h5py.File(no_data, "w") as f:
        f.create_dataset("tensors", data=np.zeros((1, 2, 6, 8), np.float32))
        f.attrs.update(ATTRS)
    with pytest.raises(EventFileError, match=r"nodata\.h5: no 'data' dataset \(found: tensors\)"):
        TensorH5Reader(no_data)
    flat = tmp_path / "flat.h5"
    with h5py.File(flat, "w") as f:
        f.create_dataset("data", data=np.zeros((4, 8), np.float32))
        f.attrs.update(ATTRS)
    with pytest.raises(EventFileError, match=r"flat\.h5: .*shape \(4, 8\), expected \(N, C, H, W\)"):
        TensorH5Reader(flat)
    not_h5 = tmp_path / "text.h5"
    not_h5.write_text("hello")
    with pytest.raises(EventFileError, match=r"text\.h5: cannot open as HDF5"):
        TensorH5Reader(not_h5)
    with pytest.raises(FileNotFoundError):
        TensorH5Reader(tmp_path / "absent.h5")
    write_tensor_h5(tmp_path / "ok.h5", tensors(2), ATTRS)
    reader = TensorH5Reader(tmp_path / "ok.h5")
    for start, stop in [(-1, 1), (1, 0), (0, 3)]:
        with pytest.raises(IndexError, match=rf"read\({start}, {stop}\) outside \[0, 2\]"):
            reader.read(start, stop)


def test_reader_is_picklable_and_lazy(tmp_path):
    data = tensors(4)
    write_tensor_h5(tmp_path / "p.h5", data, ATTRS)
    reader = TensorH5Reader(tmp_path / "p.h5")
    assert reader._file is None  # nothing held open until the first read
    np.testing.assert_array_equal(reader.read(0, 1), data[:1])
    clone = pickle.loads(pickle.dumps(reader))
    np.testing.assert_array_equal(clone.read(2, 4), data[2:4])
    reader.close()
    np.testing.assert_array_equal(reader.read(3, 4), data[3:4])  # reopens after close
