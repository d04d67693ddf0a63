"""SequentialDataLoader on tiny DAT / HDF5 recordings: batch format, stream scheduling, labels, workers, ranks."""

from pathlib import Path

import numpy as np
import pytest
import torch

from evframe.data.box_processing import clear_box_cache, load_boxes
from evframe.data.labels import load_flow
from evframe.data.sequential import SequentialDataLoader
from evframe.io import BBOX_DTYPE, EVENT_DTYPE, save_boxes, write_dat, write_flow_h5
from evframe.preprocess import compute

HEIGHT, WIDTH = 8, 10
DELTA_T = 1000
NUM_TBINS = 2  # a batch lasts 2000 us


def make_events(last_t: int, seed: int, n: int = 200) -> np.ndarray:
    """``n`` sorted random events in [0, last_t], the last one exactly at ``last_t``."""
    rng = np.random.default_rng(seed)
    ev = np.zeros(n, dtype=EVENT_DTYPE)
    ev["x"] = rng.integers(0, WIDTH, n)
    ev["y"] = rng.integers(0, HEIGHT, n)
    ev["p"] = rng.integers(0, 2, n)
    ev["t"] = np.sort(rng.integers(0, last_t + 1, n))
    ev["t"][-1] = last_t
    return ev


@pytest.fixture
def write_recording(tmp_path):
    """``write_recording(name, events) -> path`` of ``<tmp>/<name>_td.dat``."""

    def write(name: str, events: np.ndarray) -> Path:
        path = tmp_path / f"{name}_td.dat"
        write_dat(path, events, HEIGHT, WIDTH, extra_header={"Date": "2024-01-01 00:00:00"})
        return path

    return write


@pytest.fixture
def recordings(write_recording):
    """Recordings of 3, 2, 1 and 4 batches: {name: (path, events)}."""
    last = {"a": 5999, "b": 3500, "c": 1000, "d": 7999}
    return {name: (write_recording(name, ev), ev)
            for name, ev in ((name, make_events(t, seed=i)) for i, (name, t) in enumerate(last.items()))}


BATCH = NUM_TBINS * DELTA_T
ARRAY_DIM = [NUM_TBINS, 2, HEIGHT, WIDTH]


def loader(files, **kwargs):
    return SequentialDataLoader([str(f) for f in files], DELTA_T, kwargs.pop("preprocess", "histo"),
                                kwargs.pop("array_dim", ARRAY_DIM), **kwargs)


def masks(batches):
    return [b["mask_keep_memory"].tolist() for b in batches]


def slot_plays(batches, slot):
    """(recording name, batch start) played in ``slot`` at each batch, None for padding."""
    out = []
    for b in batches:
        md, start, _ = b["video_infos"][slot]
        out.append(None if md.is_padding() else (md.path.rsplit("/", 1)[-1][:-7], start))
    return out


def test_batch_format_and_inputs_equal_compute(recordings):
    files = [recordings[k][0] for k in "ab"]
    batches = list(loader(files, batch_size=2))
    assert len(batches) == 3
    for batch in batches:
        assert set(batch) == {"inputs", "labels", "mask_keep_memory", "frame_is_labeled", "video_infos"}
        assert batch["inputs"].shape == (NUM_TBINS, 2, 2, HEIGHT, WIDTH)
        assert batch["inputs"].dtype == torch.float32
        assert batch["mask_keep_memory"].shape == (2,) and batch["mask_keep_memory"].dtype == torch.float32
        assert batch["frame_is_labeled"].shape == (NUM_TBINS, 2) and batch["frame_is_labeled"].dtype == torch.bool
        assert len(batch["labels"]) == NUM_TBINS and all(len(lab) == 2 for lab in batch["labels"])
        assert len(batch["video_infos"]) == 2
        for b, (md, start, duration) in enumerate(batch["video_infos"]):
            if md.is_padding():
                continue
            assert duration == BATCH
            events = recordings[md.path.rsplit("/", 1)[-1][:-7]][1]
            expected = compute("histo", events, NUM_TBINS, HEIGHT, WIDTH, DELTA_T, start_ts=start)
            torch.testing.assert_close(batch["inputs"][:, b], expected, rtol=0, atol=0)
    assert slot_plays(batches, 0) == [("a", 0), ("a", 2000), ("a", 4000)]
    assert slot_plays(batches, 1) == [("b", 0), ("b", 2000), None]
    assert batches[0]["video_infos"][0][0].duration == 6000  # last timestamp 5999 + 1


def test_histo_hand_checked(write_recording):
    ev = np.zeros(5, dtype=EVENT_DTYPE)
    ev["x"], ev["y"], ev["p"], ev["t"] = [1, 1, 3, 9, 9], [2, 2, 0, 7, 7], [1, 1, 0, 1, 0], [10, 20, 1500, 2000, 3999]
    path = write_recording("hand", ev)
    # histo adds 1 / max_incr_per_pixel per event: 0.25 here
    batches = list(loader([path], batch_size=1, preprocess_kwargs={"max_incr_per_pixel": 4}))
    assert len(batches) == 2  # duration 4000 us
    expected = torch.zeros(2, NUM_TBINS, 2, HEIGHT, WIDTH)  # (batch, T, C, H, W)
    expected[0, 0, 1, 2, 1] = 0.5  # two ON events at (x=1, y=2) in [0, 1000)
    expected[0, 1, 0, 0, 3] = 0.25  # OFF at (3, 0), t=1500
    expected[1, 0, 1, 7, 9] = 0.25  # t=2000 opens the second batch
    expected[1, 1, 0, 7, 9] = 0.25  # t=3999, last bin
    for k in range(2):
        torch.testing.assert_close(batches[k]["inputs"][:, 0], expected[k], rtol=0, atol=0)


def test_mask_keep_memory_and_padding(recordings):
    files = [recordings[k][0] for k in "ab"]  # 3 and 2 batches
    one = list(loader(files, batch_size=1))
    assert masks(one) == [[0.0], [1.0], [1.0], [0.0], [1.0]]
    assert slot_plays(one, 0) == [("a", 0), ("a", 2000), ("a", 4000), ("b", 0), ("b", 2000)]

    two = list(loader(files, batch_size=2))
    assert masks(two) == [[0.0, 0.0], [1.0, 1.0], [1.0, 0.0]]
    last = two[-1]
    assert torch.count_nonzero(last["inputs"][:, 1]) == 0
    assert not last["frame_is_labeled"][:, 1].any()
    assert [lab[1] for lab in last["labels"]] == [None] * NUM_TBINS

    # three slots, four recordings of 3, 2, 1, 4 batches: slot 2 frees first and takes d
    files = [recordings[k][0] for k in "abcd"]
    three = list(loader(files, batch_size=3))
    assert len(three) == 5
    assert [p and p[0] for p in slot_plays(three, 2)] == ["c", "d", "d", "d", "d"]
    assert [p and p[0] for p in slot_plays(three, 1)] == ["b", "b", None, None, None]
    assert masks(three) == [[0, 0, 0], [1, 1, 0], [1, 0, 1], [0, 0, 1], [0, 0, 1]]

    no_pad = list(loader(files, batch_size=3, padding=False))
    assert len(no_pad) == 2 and masks(no_pad) == masks(three)[:2]


def test_boxes_on_batch_boundaries_counted_once(recordings, tmp_path):
    clear_box_cache()
    path = recordings["a"][0]
    ts = [0, 999, 1000, 1999, 2000, 3999, 4000, 5999]
    boxes = np.zeros(len(ts), dtype=BBOX_DTYPE)
    boxes["t"], boxes["track_id"] = ts, np.arange(len(ts))
    boxes["x"], boxes["y"], boxes["w"], boxes["h"] = 1, 1, 3, 3
    save_boxes(tmp_path / "a_bbox.npy", boxes)
    for max_consecutive_batch in (None, 1):
        batches = list(loader([path], batch_size=1, load_labels=load_boxes,
                              max_consecutive_batch=max_consecutive_batch))
        seen = [(int(box["track_id"]), i, t) for i, b in enumerate(batches) for t in range(NUM_TBINS)
                for box in b["labels"][t][0]]
        assert sorted(s[0] for s in seen) == list(range(len(ts)))
        # bin index = floor(t / delta_t): box at 2000 is in batch 1, bin 0
        assert [(i, t) for _, i, t in sorted(seen)] == [(0, 0), (0, 0), (0, 1), (0, 1), (1, 0), (1, 1), (2, 0),
                                                         (2, 1)]
        assert all(b["frame_is_labeled"].all() for b in batches)


def test_max_consecutive_batch_chunks(recordings):
    files = [recordings[k][0] for k in "ab"]  # 3 and 2 batches
    dl = loader(files, batch_size=1, max_consecutive_batch=2)
    batches = list(dl)
    assert masks(batches) == [[0.0], [1.0], [0.0], [0.0], [1.0]]
    assert slot_plays(batches, 0) == [("a", 0), ("a", 2000), ("a", 4000), ("b", 0), ("b", 2000)]
    dl.set_max_consecutive_batch(1)
    assert masks(list(dl)) == [[0.0]] * 5
    dl.set_max_consecutive_batch(None)
    assert masks(list(dl)) == [[0.0], [1.0], [1.0], [0.0], [1.0]]

    # shuffled chunks: every batch of every recording played exactly once, chunks of at most 2 batches
    dl = loader(files, batch_size=2, max_consecutive_batch=2, shuffle=True, seed=3)
    for epoch in range(3):
        dl.set_epoch(epoch)
        n = len(dl)
        batches = list(dl)
        assert len(batches) == n
        plays = sorted(p for s in range(2) for p in slot_plays(batches, s) if p)
        assert plays == sorted([("a", 0), ("a", 2000), ("a", 4000), ("b", 0), ("b", 2000)])
        for s in range(2):
            run = 0
            for m in (b["mask_keep_memory"][s].item() for b in batches):
                run = run + 1 if m == 1.0 else 1
                assert run <= 2


def _same_batches(x, y):
    assert len(x) == len(y)
    for a, b in zip(x, y, strict=True):
        torch.testing.assert_close(a["inputs"], b["inputs"], rtol=0, atol=0)
        assert torch.equal(a["mask_keep_memory"], b["mask_keep_memory"])
        assert torch.equal(a["frame_is_labeled"], b["frame_is_labeled"])
        assert a["video_infos"] == b["video_infos"]
        for la, lb in zip(a["labels"], b["labels"], strict=True):
            for u, v in zip(la, lb, strict=True):
                assert (u is None and v is None) or np.array_equal(u, v)


def test_workers_give_the_same_batches(recordings, tmp_path):
    files = [recordings[k][0] for k in "abcd"]
    for name in "abcd":
        boxes = np.zeros(2, dtype=BBOX_DTYPE)
        boxes["t"], boxes["w"], boxes["h"] = [500, 2500], 2, 2
        save_boxes(tmp_path / f"{name}_bbox.npy", boxes)
    kwargs = dict(batch_size=3, load_labels=load_boxes, shuffle=True, max_consecutive_batch=2, seed=1)
    ref = list(loader(files, num_workers=0, **kwargs))
    _same_batches(ref, list(loader(files, num_workers=2, **kwargs)))


def test_ranks_are_disjoint_with_equal_lengths(recordings):
    files = [recordings[k][0] for k in "abc"]
    per_rank = []
    for rank in range(2):
        dl = loader(files, batch_size=2, rank=rank, world_size=2, shuffle=True, seed=4)
        batches = list(dl)
        assert len(batches) == len(dl)
        per_rank.append(batches)
    assert len(per_rank[0]) == len(per_rank[1])
    names = [{p[0] for s in range(2) for p in slot_plays(b, s) if p} for b in per_rank]
    assert names[0].isdisjoint(names[1]) and names[0] | names[1] == {"a", "b", "c"}


def test_len_matches_iteration(recordings):
    files = [recordings[k][0] for k in "abcd"]
    configs = [dict(batch_size=1), dict(batch_size=3, padding=False), dict(batch_size=2, max_consecutive_batch=3,
                                                                           shuffle=True),
               dict(batch_size=2, max_duration=3000), dict(batch_size=2, start_ts=2500)]
    for kw in configs:
        if "start_ts" in kw:  # recording c (1001 us) has nothing after 2500 us
            with pytest.warns(UserWarning, match="nothing to play.*c_td.dat"):
                dl = loader(files, **kw)
        else:
            dl = loader(files, **kw)
        for _ in range(2):
            n = len(dl)
            assert n == sum(1 for _ in dl), kw


def test_start_ts_and_max_duration_windows(recordings):
    path, events = recordings["a"]
    batches = list(loader([path], batch_size=1, start_ts=1000, max_duration=2500))
    assert slot_plays(batches, 0) == [("a", 1000), ("a", 3000)]  # [1000, 3500) in two batches
    cut = events[events["t"] < 3500]
    torch.testing.assert_close(batches[1]["inputs"][:, 0],
                               compute("histo", cut, NUM_TBINS, HEIGHT, WIDTH, DELTA_T, start_ts=3000), rtol=0, atol=0)


def test_dat_and_precomputed_h5_give_the_same_inputs(recordings, tmp_path):
    from evframe.preprocess.h5_tensors import write_tensor_h5

    path, events = recordings["b"]  # 3501 us -> 4 tensors of 1000 us (2 batches)
    tensors = compute("histo", events, 4, HEIGHT, WIDTH, DELTA_T).numpy()
    h5 = tmp_path / "b.h5"
    write_tensor_h5(h5, tensors, _tensor_attrs("histo", 2))
    from_dat = list(loader([path], batch_size=1))
    from_h5 = list(loader([h5], batch_size=1))
    assert len(from_dat) == len(from_h5) == 2
    for a, b in zip(from_dat, from_h5, strict=True):
        torch.testing.assert_close(a["inputs"], b["inputs"], rtol=0, atol=0)
        assert a["mask_keep_memory"].tolist() == b["mask_keep_memory"].tolist()
    assert from_h5[0]["video_infos"][0][0].duration == 4000


def _tensor_attrs(name, channels):
    return {"delta_t": DELTA_T, "event_input_height": HEIGHT, "event_input_width": WIDTH,
            "events_to_tensor": name, "shape": [channels, HEIGHT, WIDTH], "max_incr_per_pixel": 5}


def test_clear_errors_for_mismatches(recordings, tmp_path):
    from evframe.preprocess.h5_tensors import write_tensor_h5

    path = recordings["a"][0]
    with pytest.raises(ValueError, match="3 channels"):
        loader([path], array_dim=[NUM_TBINS, 3, HEIGHT, WIDTH])
    with pytest.raises(ValueError, match=f"{path}.*{HEIGHT}x{WIDTH}"):
        loader([path], array_dim=[NUM_TBINS, 2, HEIGHT * 2, WIDTH])
    with pytest.raises(ValueError, match="unknown preprocess"):
        loader([path], preprocess="nope")
    h5 = tmp_path / "x.h5"
    write_tensor_h5(h5, np.zeros((4, 2, HEIGHT, WIDTH), dtype=np.float32), _tensor_attrs("histo", 2))
    with pytest.raises(ValueError, match=r"x\.h5.*shape"):
        loader([h5], array_dim=[NUM_TBINS, 3, HEIGHT, WIDTH])
    with pytest.raises(ValueError, match=r"x\.h5.*delta_t"):
        SequentialDataLoader([h5], DELTA_T * 2, "histo", ARRAY_DIM)
    with pytest.raises(ValueError, match=r"x\.h5.*max_incr_per_pixel=5 in the file, 2 asked"):
        loader([h5], preprocess_kwargs={"max_incr_per_pixel": 2})
    with pytest.raises(ValueError, match=r"x\.h5.*'diff'"):
        loader([h5], preprocess="diff", array_dim=[NUM_TBINS, 1, HEIGHT, WIDTH])
    with pytest.raises(FileNotFoundError):
        loader([tmp_path / "missing_td.dat"])


def test_downsample_and_show(recordings):
    files = [recordings[k][0] for k in "abc"]
    dl = loader(files, batch_size=3, downsample=1)
    batch = next(iter(dl))
    assert batch["inputs"].shape == (NUM_TBINS, 3, 2, HEIGHT // 2, WIDTH // 2)
    frames = list(dl.show())
    assert len(frames) == len(dl) * NUM_TBINS
    assert all(f.shape == (2 * (HEIGHT // 2), 2 * (WIDTH // 2), 3) and f.dtype == np.uint8 for f in frames)
    assert any(f.any() for f in frames)


def test_flow_labels_through_the_loader(recordings, tmp_path):
    path = recordings["a"][0]
    flow = np.zeros((2, 2, HEIGHT, WIDTH), dtype=np.float32)
    flow[:, 0] = 1000.0  # px/s -> 1 px per 1 ms bin
    write_flow_h5(tmp_path / "a_flow.h5", flow, np.array([1500, 2000]))
    batches = list(loader([path], batch_size=1, load_labels=load_flow))
    assert [b["frame_is_labeled"][:, 0].tolist() for b in batches] == [[False, True], [True, False],
                                                                       [False, False]]
    torch.testing.assert_close(batches[1]["labels"][0][0][0], torch.ones(HEIGHT, WIDTH))
    assert batches[0]["labels"][0][0] is None


def test_shuffle_epochs(recordings):
    files = [recordings[k][0] for k in "abcd"]
    dl = loader(files, batch_size=1, shuffle=True, seed=7)
    orders = []
    for epoch in range(4):
        dl.set_epoch(epoch)
        orders.append(tuple(dict.fromkeys(p[0] for p in slot_plays(list(dl), 0))))
    assert all(sorted(o) == list("abcd") for o in orders)
    assert len(set(orders)) > 1
    dl.set_epoch(2)
    assert tuple(dict.fromkeys(p[0] for p in slot_plays(list(dl), 0))) == orders[2]
    assert dl.epoch == 3  # each pass advances the epoch


def _rebinned(events, start, delta_t, stop):
    cut = events[events["t"] < stop]
    return compute("histo", cut, NUM_TBINS, HEIGHT, WIDTH, delta_t, start_ts=start)


def test_delta_t_scales_slow_down_a_recording_in_a_window(recordings):
    path, events = recordings["d"]  # 8000 us: 4 batches of 2 x 1000 us
    dl = loader([path], batch_size=1, delta_t_scales=[0.5], seed=3)
    batches = list(dl)
    # bins of 500 us, a window of half the recording (4000 us) in batches of 1000 us, at a whole-batch offset
    assert len(batches) == len(dl) == 4
    md, first, duration = batches[0]["video_infos"][0]
    assert (md.delta_t, duration, md.max_duration) == (500, 1000, 4000)
    assert first % 1000 == 0 and 0 <= first <= 4000
    assert masks(batches) == [[0.0], [1.0], [1.0], [1.0]]
    for k, batch in enumerate(batches):
        md, start, _ = batch["video_infos"][0]
        assert start == first + 1000 * k
        torch.testing.assert_close(batch["inputs"][:, 0], _rebinned(events, start, 500, first + 4000), rtol=0, atol=0)


def test_delta_t_scales_above_one_play_the_whole_recording(recordings):
    path, events = recordings["a"]  # 6000 us
    batches = list(loader([path], batch_size=1, delta_t_scales=[2.0]))
    assert [b["video_infos"][0][1] for b in batches] == [0, 4000]  # bins of 2000 us, batches of 4000 us
    for batch in batches:
        start = batch["video_infos"][0][1]
        torch.testing.assert_close(batch["inputs"][:, 0], _rebinned(events, start, 2000, 6000), rtol=0, atol=0)


def test_delta_t_scales_are_drawn_per_recording_and_epoch(recordings, tmp_path):
    files = [recordings[k][0] for k in "abcd"]
    dl = loader(files, batch_size=2, delta_t_scales=[0.5, 1.0], shuffle=True, seed=1)
    seen = set()
    for epoch in range(6):
        dl.set_epoch(epoch)
        mds = dl.dataset.epoch_metadatas(epoch)
        seen |= {md.delta_t for md in mds}
        assert mds == dl.dataset.epoch_metadatas(epoch)  # the same draw for every worker and rank
        batches = list(dl)
        assert len(batches) == dl.dataset.plan(epoch).num_batches
        played = {(b["video_infos"][s][0].path, b["video_infos"][s][0].delta_t)
                  for b in batches for s in range(2) if not b["video_infos"][s][0].is_padding()}
        assert played == {(md.path, md.delta_t) for md in mds if md.num_batches > 0}
    assert seen == {500, 1000}
    dl.set_epoch(4)
    with_workers = loader(files, batch_size=2, delta_t_scales=[0.5, 1.0], shuffle=True, seed=1, num_workers=2)
    with_workers.set_epoch(4)
    _same_batches(list(dl), list(with_workers))


def test_delta_t_scales_errors(recordings, tmp_path):
    from evframe.preprocess.h5_tensors import write_tensor_h5

    path, events = recordings["b"]
    with pytest.raises(ValueError, match="positive numbers"):
        loader([path], delta_t_scales=[0.5, 0.0])
    with pytest.raises(ValueError, match="positive numbers"):
        loader([path], delta_t_scales=[])
    h5 = tmp_path / "b.h5"
    write_tensor_h5(h5, compute("histo", events, 4, HEIGHT, WIDTH, DELTA_T).numpy(), _tensor_attrs("histo", 2))
    with pytest.raises(ValueError, match=r"b\.h5 holds precomputed tensors"):
        loader([h5], delta_t_scales=[0.5])


def test_flow_datamodule_slows_down_only_the_training_split(recordings, tmp_path):
    from evframe.tasks.flow.data_module import FlowDataModule

    root = tmp_path / "dataset"
    for split, names in (("train", "ab"), ("val", "cd")):
        (root / split).mkdir(parents=True)
        for name in names:
            (root / split / recordings[name][0].name).symlink_to(recordings[name][0])
    dataset = {"root": str(root), "batch_size": 2, "num_workers": 0, "height": HEIGHT, "width": WIDTH}
    preprocess = {"name": "histo", "delta_t": DELTA_T, "num_tbins": NUM_TBINS, "channels": 2, "downsample": 0}
    datamodule = FlowDataModule(dataset, preprocess, train_delta_t_scales=[0.5])
    train = {b["video_infos"][s][0].delta_t for b in datamodule.make_loader("train") for s in range(2)
             if not b["video_infos"][s][0].is_padding()}
    val = {b["video_infos"][s][0].delta_t for b in datamodule.make_loader("val") for s in range(2)
           if not b["video_infos"][s][0].is_padding()}
    assert (train, val) == ({DELTA_T // 2}, {DELTA_T})
    streaming = FlowDataModule(dict(dataset, loader="streaming"), preprocess, train_delta_t_scales=[0.5])
    with pytest.raises(ValueError, match="train_delta_t_scales needs the sequential loader"):
        streaming.make_loader("train")
