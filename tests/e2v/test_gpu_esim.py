"""GPUEBSIM streaming: target collection, batches and memory masks, events equal to a direct simulation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from evframe.io import EVENT_DTYPE
from evframe.preprocess import compute
from evframe.tasks.e2v.clips import ClipDataset, ClipTiming, collate_clips
from evframe.tasks.e2v.gpu_esim import GPUEBSIM, SimulatorConfig, collect_target_images, make_simulator


def test_collect_target_images_from_concatenated_videos() -> None:
    # two videos of 3 and 2 frames, frame value = 10 * video + index
    gray = torch.tensor([0.0, 1, 2, 10, 11]).view(1, 1, 5).expand(2, 3, 5)
    timestamps = torch.tensor([[0, 5, 9], [0, 7, 0]])
    images, stamps = collect_target_images(gray, timestamps, torch.tensor([3, 2]), torch.tensor([[2, 1], [1, 0]]))
    assert images.shape == (2, 2, 1, 2, 3)
    assert images[:, :, 0, 0, 0].tolist() == [[2, 11], [1, 10]]
    assert stamps.tolist() == [[9, 7], [5, 0]]
    with pytest.raises(ValueError, match="outside the videos"):
        collect_target_images(gray, timestamps, torch.tensor([3, 2]), torch.tensor([[2, 1], [1, 2]]))


def _esim(timing: ClipTiming, batch_times: int, randomize: bool, num_clips: int = 2) -> GPUEBSIM:
    dataset = ClipDataset(20, 28, timing, num_clips, seed=3)
    loader = DataLoader(dataset, batch_size=2, collate_fn=collate_clips, drop_last=True)
    sim = {"threshold_sigma": 0.0, "contrast_threshold_pos": 0.15, "contrast_threshold_neg": 0.15}
    return GPUEBSIM(loader, sim, batch_times, event_volume_depth=3, randomize_noises=randomize, seed=11)


def test_batches_carry_targets_masks_and_the_events_of_a_direct_simulation(timing: ClipTiming) -> None:
    esim = _esim(timing, batch_times=2, randomize=False)
    batches = list(esim)
    assert len(batches) == len(esim) == 2  # one batch of 2 clips of 4 bins -> 2 batches of 2 bins
    assert [b["mask_keep_memory"].tolist() for b in batches] == [[0.0, 0.0], [1.0, 1.0]]
    clips = collate_clips([esim.dataset[0], esim.dataset[1]])
    targets = timing.target_indices()
    for j, batch in enumerate(batches):
        assert batch["inputs"].shape == (2, 2, 3, 20, 28) and batch["images"].shape == (2, 2, 1, 20, 28)
        for t in range(2):
            frame = targets[2 * j + t]
            torch.testing.assert_close(batch["images"][t, :, 0], clips["frames"][:, frame])
            assert batch["timestamps"][t].tolist() == [int(clips["timestamps"][0, frame])] * 2
        assert batch["flow"].shape == (2, 2, 2, 20, 28) and bool(batch["flow_valid"].all())
    # the same frames through one simulator, events binned by evframe.preprocess on the CPU
    sim = make_simulator(esim.simulator, 2, 20, 28, False, esim.group_seed(0, 0), torch.device("cpu"))
    events = torch.cat([sim.sim(clips["frames"][:, i], clips["timestamps"][:, i]) for i in range(timing.num_frames)])
    assert sum(b["num_events"] for b in batches) == events.shape[0] > 0
    for b in range(2):
        rows = events[events[:, 0] == b].numpy()
        ev = np.zeros(len(rows), EVENT_DTYPE)
        ev["x"], ev["y"], ev["p"], ev["t"] = rows[:, 1], rows[:, 2], rows[:, 3], rows[:, 4]
        # bins (k dt, (k+1) dt]: the volume of bin k starts at k dt + 1; each batch of 2 bins is one event_cube
        # call (its micro bins share weights across its inner bin edge, not across batches)
        for j in range(2):
            cube = compute("event_cube", ev, 2, 20, 28, timing.delta_t, start_ts=1 + 2 * j * timing.delta_t,
                           num_utbins=3, split_polarity=False)
            torch.testing.assert_close(batches[j]["inputs"][:, b], cube, atol=1e-6, rtol=1e-5)


def test_epochs_draw_new_clips_and_evaluation_repeats_itself(timing: ClipTiming) -> None:
    esim = _esim(timing, batch_times=4, randomize=True)
    first = next(iter(esim))["inputs"]
    second = next(iter(esim))["inputs"]  # each pass advances the epoch: new clips
    assert not torch.equal(second, first)
    esim.set_epoch(0)
    torch.testing.assert_close(next(iter(esim))["inputs"], first)  # same epoch, same data
    evaluation = _esim(timing, batch_times=4, randomize=False)
    evaluation.vary_with_epoch = False
    torch.testing.assert_close(next(iter(evaluation))["inputs"], next(iter(evaluation))["inputs"])


def test_randomized_thresholds_differ_per_clip_and_stay_in_range() -> None:
    config = SimulatorConfig(threshold_range=(0.1, 0.4), threshold_sigma_range=(0.0, 0.0),
                             threshold_ratio_range=(1.0, 1.0))
    sim = make_simulator(config, 3, 8, 8, True, seed=5, device=torch.device("cpu"))
    means = sim.threshold_pos.mean(dim=(1, 2))
    assert means.unique().numel() == 3 and bool(((means >= 0.1) & (means <= 0.4)).all())
    torch.testing.assert_close(sim.threshold_neg, sim.threshold_pos)  # ratio 1, no mismatch
    fixed = make_simulator(config, 3, 8, 8, False, seed=5, device=torch.device("cpu"))
    assert float(fixed.threshold_pos.mean()) == pytest.approx(0.2, abs=0.01)
    with pytest.raises(ValueError, match="unknown option"):
        SimulatorConfig.from_dict({"threshold": 0.2})


def test_clip_length_must_split_into_batches(timing: ClipTiming) -> None:
    with pytest.raises(ValueError, match="cannot be cut into batches"):
        _esim(timing, batch_times=3, randomize=False)


def test_randomized_noises_are_drawn_per_clip_within_their_ranges() -> None:
    config = SimulatorConfig(refractory_range_us=(100.0, 900.0), leak_range_hz=(0.1, 0.3),
                             shot_noise_range_hz=(1.0, 4.0))
    sim = make_simulator(config, 4, 8, 8, True, seed=9, device=torch.device("cpu"))
    for values, (low, high) in ((sim.refractory_period_us, config.refractory_range_us),
                                (sim.leak_rate_hz, config.leak_range_hz),
                                (sim.shot_noise_rate_hz, config.shot_noise_range_hz)):
        assert values.shape == (4,) and values.unique().numel() == 4  # one draw per clip
        assert bool(((values >= low) & (values <= high)).all())
    fixed = make_simulator(config, 4, 8, 8, False, seed=9, device=torch.device("cpu"))
    assert fixed.refractory_period_us.tolist() == [config.refractory_period_us] * 4


def test_a_pass_cut_short_resumes_with_the_remaining_batches_of_the_same_clips(timing: ClipTiming) -> None:
    """3 clip batches of 2 batches each; interrupted after 3 batches (mid clip batch 1): the resumed loader skips
    clip batch 0 and hands out batches 3..5 exactly as the uninterrupted pass, the first with fresh memory."""
    def esim() -> GPUEBSIM:
        made = _esim(timing, batch_times=2, randomize=True, num_clips=6)
        made.set_epoch(2)
        return made

    full = list(esim())
    assert len(full) == 6
    interrupted = esim()
    iterator = iter(interrupted)
    for _ in range(3):
        next(iterator)
    state = interrupted.state_dict()
    assert state == {"epoch": 2, "num_batches": 6, "batches_consumed": 3}
    resumed = _esim(timing, batch_times=2, randomize=True, num_clips=6)
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert len(rest) == 3
    for got, expected in zip(rest, full[3:], strict=True):
        assert torch.equal(got["inputs"], expected["inputs"]) and torch.equal(got["images"], expected["images"])
    assert rest[0]["mask_keep_memory"].eq(0).all() and full[3]["mask_keep_memory"].eq(1).all()
    assert resumed.state_dict()["batches_consumed"] == 6 and resumed.epoch == 3
