"""Generation of the tiny preset: files, contents, determinism, caching."""

import dataclasses
import filecmp
import json

import numpy as np
import pytest

from evframe.data.synthetic import PRESETS, STAMP_NAME, SyntheticConfig, ensure_dataset, generate, is_current
from evframe.data.synthetic import cache as cache_module
from evframe.io import FlowLabelsReader, FramesReader, load_boxes, load_events, load_label_map, open_events

TINY = PRESETS["tiny"]
MICRO = SyntheticConfig(height=32, width=48, splits=(("train", 1),), duration_us=100_000, objects_per_recording=(1, 1))


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synthetic") / "tiny", "tiny", seed=0)


def recordings(root):
    return sorted(root.glob("*/*_td.dat"))


def assert_same_files(first, second, split):
    """Every file of ``first/split`` exists in ``second/split`` with identical bytes."""
    names = [p.name for p in (first / split).iterdir()]
    _, mismatch, errors = filecmp.cmpfiles(first / split, second / split, names, shallow=False)
    assert not mismatch and not errors


def test_writes_the_dataset_layout(tiny_root):
    assert load_label_map(tiny_root / "label_map_dictionary.json") == {0: "car", 1: "pedestrian", 2: "two_wheeler"}
    for split, count in TINY.splits:
        names = sorted(p.name for p in (tiny_root / split).iterdir())
        expected = sorted(f"synth_{split}_{i:03d}{suffix}" for i in range(count)
                          for suffix in ("_td.dat", "_bbox.npy", "_flow.h5", "_frames.h5"))
        assert names == expected
    stamp = json.loads((tiny_root / STAMP_NAME).read_text())
    assert stamp["digest"] == TINY.digest(0) and len(stamp["recordings"]) == 4


def test_events_sorted_within_sensor_and_duration(tiny_root):
    total = 0
    for path in recordings(tiny_root):
        with open_events(path) as reader:
            assert (reader.height, reader.width) == (TINY.height, TINY.width)
        events = load_events(path)
        total += len(events)
        assert len(events) > 1000
        assert np.all(np.diff(events["t"]) >= 0)
        assert events["t"].min() > 0 and events["t"].max() <= TINY.duration_us
        assert events["x"].max() < TINY.width and events["y"].max() < TINY.height
        assert set(np.unique(events["p"]).tolist()) == {0, 1}
        # events come from moving edges everywhere, not from one corner
        assert len(np.unique(events["y"] // 8 * 100 + events["x"] // 8)) > 0.8 * (TINY.height // 8) * (TINY.width // 8)


def test_boxes_inside_frame_with_valid_classes_and_tracks(tiny_root):
    label_times = np.arange(TINY.label_period_us, TINY.duration_us + 1, TINY.label_period_us)
    n_boxes = 0
    for path in recordings(tiny_root):
        boxes = load_boxes(str(path).replace("_td.dat", "_bbox.npy"))
        n_boxes += len(boxes)
        assert np.all(np.isin(boxes["t"], label_times))
        assert np.all(boxes["x"] >= 0) and np.all(boxes["y"] >= 0)
        assert np.all(boxes["x"] + boxes["w"] <= TINY.width) and np.all(boxes["y"] + boxes["h"] <= TINY.height)
        assert np.all(boxes["w"] >= TINY.min_box_size) and np.all(boxes["h"] >= TINY.min_box_size)
        assert np.all(boxes["class_id"] < len(TINY.classes))
        for track in np.unique(boxes["track_id"]):  # a track keeps its class and appears once per label time
            mine = boxes[boxes["track_id"] == track]
            assert len(np.unique(mine["class_id"])) == 1 and len(np.unique(mine["t"])) == len(mine)
    assert n_boxes > 0


def test_flow_and_frame_files(tiny_root):
    for path in recordings(tiny_root):
        flow = FlowLabelsReader(str(path).replace("_td.dat", "_flow.h5"))
        assert flow.attrs["unit"] == "px/s"
        expected_t = np.arange(TINY.label_period_us, TINY.duration_us + 1, TINY.label_period_us)
        assert np.array_equal(flow.timestamps, expected_t)
        values = flow.read(slice(None))
        assert values.shape == (len(expected_t), 2, TINY.height, TINY.width) and np.isfinite(values).all()
        speed = np.hypot(values[:, 0], values[:, 1])
        assert 1.0 < np.median(speed) < 100.0  # camera always moves; tiny preset speeds are ~0.2x default
        frames = FramesReader(str(path).replace("_td.dat", "_frames.h5"))
        assert np.array_equal(frames.timestamps, np.arange(0, TINY.duration_us + 1, TINY.frame_period_us))
        images = frames.read(slice(None))
        assert images.dtype == np.uint8 and images.shape[1:] == (TINY.height, TINY.width)
        assert images.std() > 20  # textured, not blank


def test_generation_is_deterministic_and_seeded(tiny_root, tmp_path):
    again = generate(tmp_path / "again", "tiny", seed=0, num_workers=0)
    for split, _ in TINY.splits:
        assert_same_files(tiny_root, again, split)
    other = generate(tmp_path / "other", dataclasses.replace(TINY, splits=(("train", 1),)), seed=1)
    a = load_events(tiny_root / "train" / "synth_train_000_td.dat")
    b = load_events(other / "train" / "synth_train_000_td.dat")
    assert len(a) != len(b) or not np.array_equal(a, b)


def test_growing_a_split_keeps_its_recordings(tmp_path):
    """A recording depends on (seed, split position, index) only: a larger test split adds recordings and keeps the
    ones it had, so numbers measured on the smaller split stay comparable."""
    small = generate(tmp_path / "small", dataclasses.replace(MICRO, splits=(("train", 1), ("test", 1))))
    large = generate(tmp_path / "large", dataclasses.replace(MICRO, splits=(("train", 1), ("test", 2))))
    for split in ("train", "test"):
        assert_same_files(small, large, split)
    added = load_events(large / "test" / "synth_test_001_td.dat")
    kept = load_events(large / "test" / "synth_test_000_td.dat")
    assert len(added) != len(kept) or not np.array_equal(added, kept)


def test_ensure_dataset_generates_once_and_regenerates_on_change(tmp_path, monkeypatch):
    root = tmp_path / "data"
    assert ensure_dataset(root, MICRO, seed=0) == root.absolute()
    assert is_current(root, MICRO, 0)
    first = load_events(root / "train" / "synth_train_000_td.dat")

    def forbidden(*args, **kwargs):
        raise AssertionError("regenerated a cached dataset")

    monkeypatch.setattr(cache_module, "generate", forbidden)
    ensure_dataset(root, MICRO, seed=0)  # cached: no generation
    monkeypatch.undo()

    changed = dataclasses.replace(MICRO, duration_us=150_000)
    ensure_dataset(root, changed, seed=0)
    assert is_current(root, changed, 0) and not is_current(root, MICRO, 0)
    second = load_events(root / "train" / "synth_train_000_td.dat")
    assert second["t"].max() > first["t"].max()
    ensure_dataset(root, changed, seed=3)  # a new seed is a new dataset too
    assert is_current(root, changed, 3)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".data.")) == [".data.lock"]  # no tmp


def test_ensure_dataset_refuses_to_replace_foreign_folder(tmp_path):
    root = tmp_path / "mine"
    root.mkdir()
    (root / "precious.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="not an evframe synthetic dataset"):
        ensure_dataset(root, MICRO)
    assert (root / "precious.txt").read_text() == "user data"


def test_unknown_preset_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown synthetic dataset preset 'huge'"):
        generate(tmp_path, "huge")


@pytest.mark.slow
def test_worker_processes_give_identical_files(tmp_path):
    config = dataclasses.replace(MICRO, splits=(("train", 2),))
    serial = generate(tmp_path / "serial", config, num_workers=0)
    parallel = generate(tmp_path / "parallel", config, num_workers=2)
    assert_same_files(serial, parallel, "train")
