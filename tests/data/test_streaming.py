"""StreamingDataLoader over RAW / HDF5 / DAT recordings: hand-computed tensors, schedule and padding, n_events slicing,
max_duration, labels, workers owning whole recordings, per-worker seeds, distributed ranks."""

import numpy as np
import pytest
import torch

from evframe.data.streaming import StreamingDataLoader, plan_streams, worker_seed
from evframe.io import EVENT_DTYPE, write_dat, write_hdf5_events, write_raw
from evframe.preprocess import compute

H, W = 8, 16
DT = 1000  # us per bin
T = 2  # bins per batch
KW = {"max_incr_per_pixel": 1000.0}  # histo value = count / 1000, never saturating here


def _recording(n, t0, duration, seed):
    rng = np.random.default_rng(seed)
    events = np.zeros(n, dtype=EVENT_DTYPE)
    events["x"], events["y"], events["p"] = rng.integers(0, W, n), rng.integers(0, H, n), rng.integers(0, 2, n)
    events["t"] = np.sort(rng.integers(t0, t0 + duration, n))
    events["t"][0], events["t"][-1] = t0, t0 + duration - 1
    return events


@pytest.fixture
def recordings(tmp_path):
    """Four recordings in four formats, starting far from 0 like camera streams: {path: events}."""
    specs = [("a_evt3.raw", 300, 10_000_250, 5500), ("b_evt2.raw", 200, 3_000_000, 2000),
             ("c.hdf5", 250, 0, 4100), ("d_td.dat", 100, 777_000, 900)]
    out = {}
    for i, (name, n, t0, duration) in enumerate(specs):
        events = _recording(n, t0, duration, i)
        path = tmp_path / name
        if name.endswith(".raw"):
            write_raw(path, events, H, W, "evt3" if "evt3" in name else "evt2")
        elif name.endswith(".hdf5"):
            write_hdf5_events(path, events, H, W, compression="gzip")
        else:
            write_dat(path, events, H, W)
        out[str(path)] = events
    return out


def _loader(files, **kwargs):
    args = dict(delta_t=DT, preprocess_function_name="histo", array_dim=[T, 2, H, W], batch_size=2,
                preprocess_kwargs=KW)
    args.update(kwargs)
    return StreamingDataLoader(list(files), **args)


def test_hand_computed_histogram(tmp_path):
    events = np.zeros(3, dtype=EVENT_DTYPE)
    events[0] = (3, 2, 1, 5_000_100)  # bin 0 of the batch starting at 5_000_000
    events[1] = (3, 2, 1, 5_000_999)
    events[2] = (0, 7, 0, 5_001_000)  # bin 1
    write_raw(tmp_path / "one.raw", events, H, W)
    loader = _loader([tmp_path / "one.raw"], batch_size=1)
    (batch,) = list(loader)
    x = batch["inputs"]
    assert x.shape == (T, 1, 2, H, W)
    expected = torch.zeros(T, 1, 2, H, W)
    expected[0, 0, 1, 2, 3] = 2 / 1000
    expected[1, 0, 0, 7, 0] = 1 / 1000
    assert torch.equal(x, expected)
    md, start, duration = batch["video_infos"][0]
    assert (start, duration, md.start_ts, md.duration) == (5_000_000, 2000, 5_000_000, 5_001_001)
    assert batch["mask_keep_memory"].tolist() == [0.0]


def test_schedule_tensors_masks_and_padding(recordings):
    files = list(recordings)
    loader = _loader(files)
    # batches per recording: ceil((last + 1 - floor(first / DT) * DT) / (T * DT))
    per_file = [3, 1, 3, 1]  # 5750 us from 10_000_000, 2000 from 3_000_000, 4100 from 0, 900 from 777_000
    assert [r.num_batches for r in loader.recordings] == per_file
    # slot 0: a (3 batches) then d (1); slot 1: b (1), c (3): 4 batches, no padding
    assert len(loader) == 4
    batches = list(loader)
    assert len(batches) == 4
    plays = [[(info[0].path, info[1]) for info in b["video_infos"]] for b in batches]
    a, b, c, d = files
    assert [p[0][0] for p in plays] == [a, a, a, d] and [p[1][0] for p in plays] == [b, c, c, c]
    assert [bt["mask_keep_memory"].tolist() for bt in batches] == [[0, 0], [1, 0], [1, 1], [0, 1]]
    for batch, play in zip(batches, plays, strict=True):
        for slot, (path, start) in enumerate(play):
            events = recordings[path]
            window = events[(events["t"] >= start) & (events["t"] < start + T * DT)]
            assert torch.equal(batch["inputs"][:, slot], compute("histo", window, T, H, W, DT, start, **KW))
    # every event of every recording was played exactly once
    total = sum(float(bt["inputs"].sum()) for bt in batches) * 1000
    assert round(total) == sum(len(e) for e in recordings.values())
    # three slots (a | b, d | c): slot 1 is done after 2 batches and padded with zeros, not labelled
    padded = list(_loader(files, batch_size=3))
    assert len(padded) == 3
    last = padded[-1]
    assert last["video_infos"][1][0].is_padding() and last["mask_keep_memory"][1] == 0
    assert not last["frame_is_labeled"][:, 1].any() and last["inputs"][:, 1].abs().sum() == 0
    assert len(list(_loader(files, batch_size=3, padding=False))) == 2


def test_n_events_mode_and_max_duration(recordings):
    a = list(recordings)[0]
    events = recordings[a]
    loader = _loader([a], batch_size=1, mode="n_events", n_events=40)
    batches = list(loader)
    assert len(batches) == len(loader) == 4  # ceil(300 / (2 bins * 40 events))
    counts = [int(round(float(b["inputs"][t].sum()) * 1000)) for b in batches for t in range(T)]
    assert counts == [40] * 7 + [20]
    md, start, duration = batches[1]["video_infos"][0]
    t = events["t"].astype(int)
    assert start == min(t[79] + 1, t[80]) and start + duration == t[159] + 1
    cut = _loader([a], batch_size=1, max_duration=2500)  # from 10_000_000: 2500 us = 2 batches, the last cut short
    batches = list(cut)
    assert len(batches) == 2
    played = sum(float(b["inputs"].sum()) for b in batches) * 1000
    assert round(played) == int(np.sum(events["t"] < 10_002_500))


def test_labels_hook_receives_each_batch(recordings):
    seen = []

    def load_labels(metadata, start, duration, tensor):
        seen.append((metadata.path, start, duration))
        return [start + i for i in range(T)], np.array([True, False])

    files = list(recordings)[:2]
    batches = list(_loader(files, load_labels=load_labels))
    assert seen[:2] == [(files[0], 10_000_000, 2000), (files[1], 3_000_000, 2000)]
    assert batches[0]["labels"] == [[10_000_000, 3_000_000], [10_000_001, 3_000_001]]
    assert batches[0]["frame_is_labeled"].tolist() == [[True, True], [False, False]]
    assert batches[1]["labels"][0][1] is None  # slot 1 is padding after b's single batch


def test_workers_own_whole_recordings_and_give_the_same_batches(recordings):
    files = list(recordings)
    single = list(_loader(files, batch_size=2, num_workers=0))
    double = list(_loader(files, batch_size=2, num_workers=2))
    assert len(single) == len(double)
    for s, d in zip(single, double, strict=True):
        assert torch.equal(s["inputs"], d["inputs"]) and torch.equal(s["mask_keep_memory"], d["mask_keep_memory"])
    # worker 0 plays slot 0, worker 1 slot 1: no recording is played by two slots
    slots = [{info[0].path for b in double for info in b["video_infos"][i:i + 1]} - {"<padding>"} for i in range(2)]
    assert not slots[0] & slots[1] and slots[0] | slots[1] == set(files)


def test_worker_seeds_are_distinct_and_reproducible(recordings):
    seeds = {worker_seed(0, e, r, w) for e in range(2) for r in range(2) for w in range(3)}
    assert len(seeds) == 12 and worker_seed(0, 1, 1, 2) == worker_seed(0, 1, 1, 2)

    def noisy(metadata, start, duration, tensor):  # a hook drawing from numpy's global generator
        return [float(np.random.random()) for _ in range(T)], np.ones(T, dtype=bool)

    files = list(recordings)[:2]
    loader = _loader(files, load_labels=noisy, num_workers=2, seed=3)
    first = [b["labels"] for b in loader]  # epoch 0
    loader.set_epoch(0)
    assert [b["labels"] for b in loader] == first  # the same run again
    assert [b["labels"] for b in loader] != first  # epoch 1 (the iteration moved on): other draws


def test_distributed_ranks_get_disjoint_recordings_and_equal_lengths(recordings):
    files = list(recordings)
    ranks = [_loader(files, batch_size=1, rank=r, world_size=2, shuffle=True, seed=1) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1])
    played = [{info[0].path for b in loader for info in b["video_infos"]} - {"<padding>"} for loader in ranks]
    assert not played[0] & played[1] and played[0] | played[1] == set(files)
    assert all(len(list(loader)) == len(ranks[0]) for loader in ranks)
    # every epoch, the ranks' shares make up all recordings
    plans = [plan_streams(ranks[0].recordings, 1, epoch, 1, True, True, r, 2) for epoch in (0, 1) for r in (0, 1)]
    assert {c.file_index for s in plans[0].streams for c in s} | {c.file_index for s in plans[1].streams for c in s} \
        == {0, 1, 2, 3}


def test_bad_arguments(recordings, tmp_path):
    files = list(recordings)
    with pytest.raises(ValueError, match=r"a_evt3\.raw: the recording is 8x16 \(height x width\) but the loader "
                                         r"expects 8x32"):
        _loader(files, array_dim=[T, 2, H, 2 * W])
    with pytest.raises(ValueError, match="mode must be one of"):
        _loader(files, mode="frames")
    with pytest.raises(ValueError, match="n_events"):
        _loader(files, mode="n_events", n_events=0)
    with pytest.raises(ValueError, match="array_dim has 3 channels but preprocess 'histo'"):
        _loader(files, array_dim=[T, 3, H, W])
    with pytest.raises(FileNotFoundError, match="missing.raw"):
        _loader([tmp_path / "missing.raw"])
    with pytest.raises(TypeError, match="list of paths"):
        StreamingDataLoader(files[0], DT, "histo", [T, 2, H, W])


def test_dataset_folders_list_raw_and_hdf5_event_recordings(tmp_path) -> None:
    from evframe.data.folder import list_recordings, split_files

    split = tmp_path / "train"
    split.mkdir()
    for name in ("a.raw", "b.hdf5", "c_td.dat", "c.h5", "c_bbox.npy", "d_flow.h5", "notes.txt"):
        (split / name).write_bytes(b"")
    # the precomputed tensor file c.h5 wins over its DAT recording; label files and others are not recordings
    assert [p.name for p in list_recordings(tmp_path, "train")] == ["a.raw", "b.hdf5", "c.h5"]
    listed = {"paths": ["x.raw", "y.raw"], "val_paths": ["z.raw"], "test_paths": None, "max_recordings": None}
    assert [p.name for p in split_files(listed, "train")] == ["x.raw", "y.raw"]
    assert [p.name for p in split_files(listed, "test")] == ["z.raw"]  # test falls back to val, then to train
    assert [p.name for p in split_files({**listed, "val_paths": None}, "val")] == ["x.raw", "y.raw"]


def test_a_pass_cut_short_resumes_with_the_batches_not_yet_played(recordings):
    """A loader restored from the state of a pass interrupted after 2 batches hands out exactly the rest of that
    epoch's batches (same shuffling), the first one with fresh memory; its state then counts the whole pass."""
    full_loader = _loader(recordings, shuffle=True, seed=3)
    full_loader.set_epoch(4)
    full = list(full_loader)
    assert len(full) > 3
    interrupted = _loader(recordings, shuffle=True, seed=3)
    interrupted.set_epoch(4)
    iterator = iter(interrupted)
    next(iterator), next(iterator)
    state = interrupted.state_dict()
    assert state == {"epoch": 4, "num_batches": len(full), "batches_consumed": 2}
    resumed = _loader(recordings, shuffle=True, seed=3)
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert len(rest) == len(full) - 2
    def slots(batch):
        return [(md.path, t) for md, t, _ in batch["video_infos"]]

    for got, expected in zip(rest, full[2:], strict=True):
        assert torch.equal(got["inputs"], expected["inputs"]) and slots(got) == slots(expected)
    assert rest[0]["mask_keep_memory"].eq(0).all() and torch.equal(rest[1]["mask_keep_memory"],
                                                                      full[3]["mask_keep_memory"])
    assert resumed.state_dict()["batches_consumed"] == len(full)
    finished = _loader(recordings)
    finished.load_state_dict({"epoch": 1, "num_batches": 5, "batches_consumed": 5})  # a finished pass: nothing
    assert len(list(finished)) == len(list(_loader(recordings)))
