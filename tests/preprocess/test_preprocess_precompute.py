"""precompute CLI end to end on a tiny folder of DAT files with labels."""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
from preprocess_helpers import random_events

from evframe.io import load_boxes, save_boxes, write_dat
from evframe.io.dtypes import empty_boxes
from evframe.preprocess import compute
from evframe.preprocess.h5_tensors import TensorH5Reader
from evframe.preprocess.precompute import main, parse_kwarg

HEIGHT, WIDTH = 12, 16


@pytest.fixture
def dataset(tmp_path):
    """ROOT/{train/a_td.dat + a_bbox.npy + a_flow.h5, val/b_td.dat, label_map_dictionary.json}."""
    root = tmp_path / "in"
    (root / "train").mkdir(parents=True)
    (root / "val").mkdir()
    a = random_events(3000, HEIGHT, WIDTH, 4321, seed=1)   # last t < 4321 -> ceil((t_last + 1) / 1000) = 5 bins
    a["t"][-1] = 4320
    b = random_events(500, HEIGHT, WIDTH, 1000, seed=2)
    b["t"][-1] = 1000                                       # exactly on a bin edge: bin 1 holds it -> 2 bins
    write_dat(root / "train" / "a_td.dat", a, HEIGHT, WIDTH)
    write_dat(root / "val" / "b_td.dat", b, HEIGHT, WIDTH)
    boxes = empty_boxes(2)
    boxes["t"] = [1000, 2000]
    boxes["w"] = 3
    save_boxes(root / "train" / "a_bbox.npy", boxes)
    (root / "train" / "a_flow.h5").write_bytes(b"flow labels stand-in")
    (root / "label_map_dictionary.json").write_text(json.dumps({"0": "car", "1": "pedestrian"}))
    return root, {"train/a": a, "val/b": b}


def test_end_to_end_event_cube_in_chunks(dataset, tmp_path, capsys):
    root, events = dataset
    out = tmp_path / "out"
    code = main([str(root), str(out), "--preprocess", "event_cube", "--delta-t", "1000", "--kwarg", "num_utbins=2",
                 "--kwarg", "max_incr_per_pixel=2.5", "--chunk-bins", "2"])
    assert code == 0
    for rel, num_bins in (("train/a", 5), ("val/b", 2)):
        reader = TensorH5Reader(out / f"{rel}.h5")
        assert reader.shape == (num_bins, 4, HEIGHT, WIDTH)
        # each tensor computed from its own bin alone, as Metavision's generate_hdf5 does
        expected = torch.cat([compute("event_cube", events[rel], 1, HEIGHT, WIDTH, 1000, start_ts=1000 * i,
                                      num_utbins=2, max_incr_per_pixel=2.5) for i in range(num_bins)])
        torch.testing.assert_close(torch.from_numpy(reader.read(0, num_bins)), expected, rtol=0, atol=0)
        # one call over all the bins differs: events near an inner bin edge feed both bins; the first micro-bin of
        # the first bin and the last micro-bin of the last bin have no such neighbour and are the same
        whole = compute("event_cube", events[rel], num_bins, HEIGHT, WIDTH, 1000, num_utbins=2, max_incr_per_pixel=2.5)
        assert not torch.equal(whole, expected)
        assert torch.equal(whole[0, 0:2], expected[0, 0:2]) and torch.equal(whole[-1, 2:4], expected[-1, 2:4])
        assert (reader.preprocess_name, reader.delta_t, reader.height, reader.width) == ("event_cube", 1000, 12, 16)
        assert reader.kwargs == {"num_utbins": 2, "split_polarity": True, "max_incr_per_pixel": 2.5}
        with h5py.File(out / f"{rel}.h5") as f:
            assert list(f.attrs["shape"]) == [4, HEIGHT, WIDTH]
            assert f.attrs["downsample"] == 0
    np.testing.assert_array_equal(load_boxes(out / "train" / "a_bbox.npy"), load_boxes(root / "train" / "a_bbox.npy"))
    assert (out / "train" / "a_flow.h5").read_bytes() == b"flow labels stand-in"
    assert json.loads((out / "label_map_dictionary.json").read_text()) == {"0": "car", "1": "pedestrian"}
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "label_map_dictionary.json", "train", "train/a.h5", "train/a_bbox.npy", "train/a_flow.h5", "val", "val/b.h5"]
    printed = capsys.readouterr().out
    assert "summary: 2 converted, 0 skipped, 0 failed; 7 tensors from 3500 events" in printed

    # a second run skips existing outputs; --overwrite recomputes them
    assert main([str(root), str(out), "--preprocess", "event_cube", "--delta-t", "1000"]) == 0
    assert "0 converted, 2 skipped" in capsys.readouterr().out
    assert TensorH5Reader(out / "val" / "b.h5").shape[1] == 4  # untouched
    assert main([str(root), str(out), "--preprocess", "event_cube", "--delta-t", "1000", "--overwrite"]) == 0
    assert TensorH5Reader(out / "val" / "b.h5").shape[1] == 6


def test_downsample_max_duration_and_uint8(dataset, tmp_path):
    root, events = dataset
    out = tmp_path / "out"
    assert main([str(root), str(out), "--preprocess", "histo", "--delta-t", "1000", "--downsample", "1",
                 "--max-duration", "2500", "--store-as-uint8", "--compression", "gzip"]) == 0
    reader = TensorH5Reader(out / "train" / "a.h5")
    assert reader.shape == (3, 2, HEIGHT // 2, WIDTH // 2)  # ceil(2500 / 1000) tensors
    assert reader.downsample == 1
    expected = compute("histo", events["train/a"], 3, HEIGHT, WIDTH, 1000, downsample=1)
    torch.testing.assert_close(torch.from_numpy(reader.read(0, 3)), expected, rtol=0, atol=0.5 / 255)
    with h5py.File(out / "train" / "a.h5") as f:
        assert f["data"].dtype == np.uint8


def test_failures_are_reported_and_others_still_converted(dataset, tmp_path, capsys):
    root, _ = dataset
    (root / "val" / "broken_td.dat").write_bytes(b"% Height 12\n% Width 16\n\x00\x05garbage")
    out = tmp_path / "out"
    assert main([str(root), str(out), "--preprocess", "histo", "--delta-t", "1000"]) == 1
    captured = capsys.readouterr()
    assert "FAILED  val/broken_td.dat" in captured.err and "broken_td.dat" in captured.err
    assert (out / "train" / "a.h5").is_file() and (out / "val" / "b.h5").is_file()
    assert not (out / "val" / "broken.h5").exists()
    assert not list(out.rglob(".*.tmp"))


@pytest.mark.parametrize(("args", "message"), [
    (["--preprocess", "nope", "--delta-t", "1000"], "not registered; available:.*histo"),
    (["--preprocess", "histo", "--delta-t", "0"], "--delta-t must be positive"),
    (["--preprocess", "histo", "--delta-t", "1000", "--kwarg", "max_incr=2"], "does not take the argument"),
    (["--preprocess", "histo", "--delta-t", "1000", "--kwarg", "max_incr_per_pixel=-2"], "positive number"),
    (["--preprocess", "histo", "--delta-t", "1000", "--kwarg", "novalue"], "key=value"),
])
def test_argument_errors(dataset, tmp_path, capsys, args, message):
    root, _ = dataset
    with pytest.raises(SystemExit) as exc:
        main([str(root), str(tmp_path / "out"), *args])
    assert exc.value.code == 2
    import re

    assert re.search(message, capsys.readouterr().err)


def test_parse_kwarg():
    assert parse_kwarg("a=2.5") == ("a", 2.5)
    assert parse_kwarg("split_polarity=false") == ("split_polarity", False)
    assert parse_kwarg("flag=True") == ("flag", True)
    assert parse_kwarg("n=3") == ("n", 3)
    assert parse_kwarg("name=hello") == ("name", "hello")


@pytest.mark.slow
def test_module_entry_point(dataset, tmp_path):
    root, _ = dataset
    result = subprocess.run([sys.executable, "-m", "evframe.preprocess.precompute", str(root), str(tmp_path / "o"),
                             "--preprocess", "diff", "--delta-t", "1000"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "2 converted" in result.stdout
    assert TensorH5Reader(tmp_path / "o" / "val" / "b.h5").preprocess_name == "diff"
