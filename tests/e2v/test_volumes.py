"""Event volumes in torch: hand-computed weights and equality with evframe.preprocess's event_cube."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evframe.io import EVENT_DTYPE
from evframe.preprocess import compute
from evframe.tasks.e2v.volumes import build_event_volume, event_volume, signed_event_counts


def _rows(*events: tuple[int, int, int, int, int]) -> torch.Tensor:
    return torch.tensor(events, dtype=torch.int64).reshape(-1, 5)


def test_linear_time_weights_by_hand() -> None:
    # delta_t 1000 us, depth 4: micro bins of u = 250 us with centres at 125, 375, 625, 875
    events = _rows((0, 1, 0, 1, 0),      # tau 0: half weight on micro bin 0 (before the first centre)
                   (0, 2, 0, 1, 125),    # on the first centre: full weight on bin 0
                   (0, 3, 0, 0, 250),    # OFF, halfway between centres 0 and 1: -0.5 each
                   (1, 0, 1, 1, 1500),   # stream 1, second time bin, tau 500: 0.5 on micro bins 1 and 2
                   (0, 0, 0, 1, 2000))   # outside the 2 bins: ignored
    vol = event_volume(events, batch_size=2, num_tbins=2, depth=4, height=2, width=4, start_ts=0, delta_t=1000,
                       max_incr_per_pixel=1.0)
    assert vol.shape == (2, 2, 4, 2, 4)
    assert vol[0, 0, :, 0, 1].tolist() == [0.5, 0, 0, 0]
    assert vol[0, 0, :, 0, 2].tolist() == [1.0, 0, 0, 0]
    assert vol[0, 0, :, 0, 3].tolist() == [-0.5, -0.5, 0, 0]
    assert vol[1, 1, :, 1, 0].tolist() == [0, 0.5, 0.5, 0]
    assert float(vol.abs().sum()) == pytest.approx(0.5 + 1 + 1 + 1)


@pytest.mark.parametrize("split_polarity,downsample", [(False, 0), (True, 0), (False, 1)])
def test_matches_event_cube_of_each_stream(split_polarity: bool, downsample: int) -> None:
    rng = np.random.default_rng(0)
    n, height, width, starts = 3000, 12, 18, [1, 40_001]
    events = torch.stack([torch.from_numpy(rng.integers(0, 2, n)), torch.from_numpy(rng.integers(0, width, n)),
                          torch.from_numpy(rng.integers(0, height, n)), torch.from_numpy(rng.integers(0, 2, n)),
                          torch.from_numpy(rng.integers(0, 200_000, n))], 1)
    events = events[torch.argsort(events[:, 4], stable=True)]  # time order, as the simulator emits them
    vol = event_volume(events, 2, 3, 5, height, width, torch.tensor(starts), 50_000, max_incr_per_pixel=2.0,
                       split_polarity=split_polarity, downsample=downsample)
    # the CPU path GPUEBSIM takes (compiled kernel per stream) gives the same volumes as the tensor ops
    cpu_path = build_event_volume(events, 2, 3, 5, height, width, torch.tensor(starts), 50_000, max_incr_per_pixel=2.0,
                                  split_polarity=split_polarity, downsample=downsample)
    torch.testing.assert_close(cpu_path, vol, atol=1e-6, rtol=1e-5)
    for b, start in enumerate(starts):
        rows = events[events[:, 0] == b].numpy()
        rows = rows[np.argsort(rows[:, 4], kind="stable")]
        ev = np.zeros(len(rows), EVENT_DTYPE)
        ev["x"], ev["y"], ev["p"], ev["t"] = rows[:, 1], rows[:, 2], rows[:, 3], rows[:, 4]
        expected = compute("event_cube", ev, 3, height, width, 50_000, start_ts=start, downsample=downsample,
                           num_utbins=5, split_polarity=split_polarity, max_incr_per_pixel=2.0)
        torch.testing.assert_close(vol[:, b], expected, atol=1e-6, rtol=1e-5)


def test_weights_cross_bin_edges_and_updates_clip_in_row_order() -> None:
    # 2 bins of 1000 us, depth 2 (micro bins of 500 us, centres 250, 750, 1250, 1750), max_incr_per_pixel 1
    events = _rows((0, 0, 0, 1, 900),    # u = 1.3: 0.7 on micro bin 1 (bin 0), 0.3 on micro bin 2 (bin 1)
                   (0, 1, 0, 0, 1100),   # OFF, u = 1.7: -0.3 on micro bin 1 (bin 0), -0.7 on micro bin 2
                   *[(0, 2, 0, 1, 250)] * 3, *[(0, 2, 0, 0, 250)] * 2,   # +3 clipped to 1, then -2: -1
                   *[(0, 3, 0, 0, 250)] * 2, *[(0, 3, 0, 1, 250)] * 3)   # -2 clipped to -1, then +3: 1
    for split in (False, True):
        vol = event_volume(events, 1, 2, 2, 1, 4, 0, 1000, max_incr_per_pixel=1.0, split_polarity=split)
        cpu = build_event_volume(events, 1, 2, 2, 1, 4, 0, 1000, max_incr_per_pixel=1.0, split_polarity=split)
        torch.testing.assert_close(vol, cpu, rtol=0, atol=1e-7)
        if not split:
            expected = torch.tensor([[[0.0, 0, -1, 1], [0.7, -0.3, 0, 0]], [[0.3, -0.7, 0, 0], [0, 0, 0, 0]]])
            torch.testing.assert_close(vol[:, 0, :, 0], expected, rtol=0, atol=1e-7)
        else:  # ON and OFF apart: every cell only grows and clips at 1
            assert vol[0, 0, 1, 0, 2].item() == 1.0 and vol[0, 0, 0, 0, 2].item() == 1.0
            assert vol[1, 0, 1, 0, 0].item() == pytest.approx(0.3) and vol[0, 0, 2, 0, 1].item() == pytest.approx(0.3)


def test_bad_events_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="outside the 2x4 sensor"):
        event_volume(_rows((0, 4, 0, 1, 10)), 1, 1, 2, 2, 4, 0, 100)
    with pytest.raises(ValueError, match="batch index"):
        event_volume(_rows((3, 0, 0, 1, 10)), 1, 1, 2, 2, 4, 0, 100)
    assert event_volume(torch.zeros((0, 5), dtype=torch.int64), 2, 1, 3, 2, 4, 0, 100).abs().sum() == 0


def test_signed_counts_read_back_from_inputs() -> None:
    cube = torch.zeros(1, 1, 6, 1, 1)
    cube[0, 0, 1] = 0.4   # ON, micro bin 0
    cube[0, 0, 2] = 0.2   # OFF, micro bin 1
    counts = signed_event_counts(cube, "event_cube", {"split_polarity": True, "max_incr_per_pixel": 5})
    assert float(counts) == pytest.approx((0.4 - 0.2) * 5)
    histo = torch.tensor([0.2, 0.6]).view(1, 1, 2, 1, 1)
    assert float(signed_event_counts(histo, "histo", {"max_incr_per_pixel": 10})) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="timesurface"):
        signed_event_counts(cube, "timesurface")
