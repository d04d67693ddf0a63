"""EventSimulator against hand-computed event streams and statistical properties."""

import math

import numpy as np
import pytest
import torch

from evframe.io.dtypes import EVENT_DTYPE
from evframe.sim import EventSimulator, events_to_numpy, simulate_video
from evframe.sim.simulator import MIN_THRESHOLD

EPS = 1e-3  # default log_eps


def image_with_log(values, shape=(1, 1, 1)):
    """Intensities whose log(I + eps) equals ``values`` exactly (up to float32 rounding)."""
    out = np.exp(np.asarray(values, np.float64)) - EPS
    return torch.from_numpy(np.broadcast_to(out, shape).astype(np.float32).copy())


# log-intensity of one pixel at these times (us); threshold 0.2, no mismatch.
#  0 -> 1000: -2.0 -> -1.5, D goes 0 -> 0.5: ON at D=0.2, 0.4 -> s=0.4, 0.8 -> t=400, 800; ref -> -1.6
#  1000 -> 2000: -1.5 -> -1.3, D 0.1 -> 0.3: ON at 0.2 -> s=0.5 -> t=1500; ref -> -1.4
#  2000 -> 4000: -1.3 -> -1.95, D 0.1 -> -0.55: OFF at -0.2, -0.4 -> s=0.3/0.65, 0.5/0.65
#                -> t = 2000 + 2000*0.461538 = 2923.08 -> 2923, 2000 + 2000*0.769231 = 3538.46 -> 3538
RAMP_LOGS = [-2.0, -1.5, -1.3, -1.95]
RAMP_TIMES = [0, 1000, 2000, 4000]
RAMP_EVENTS = [(1, 400), (1, 800), (1, 1500), (0, 2923), (0, 3538)]


def run_ramp(sim, shape=(1, 1, 1)):
    out = []
    for log, t in zip(RAMP_LOGS, RAMP_TIMES, strict=True):
        out.append(sim.sim(image_with_log(log, shape), torch.full((shape[0],), t)))
    return torch.cat(out)


def test_single_pixel_ramp_matches_hand_computed_events():
    sim = EventSimulator(1, 1, threshold_sigma=0.0)
    events = run_ramp(sim)
    assert events.dtype == torch.int64 and events.shape == (5, 5)
    assert events[:, :3].eq(0).all()  # b, x, y
    assert [(int(p), int(t)) for p, t in events[:, 3:].tolist()] == RAMP_EVENTS


def test_first_frame_only_initialises_and_reset_reinitialises():
    sim = EventSimulator(1, 1, threshold_sigma=0.0)
    assert len(sim.sim(image_with_log(-2.0), torch.tensor([0]))) == 0
    assert len(sim.sim(image_with_log(-1.5), torch.tensor([1000]))) == 2
    sim.reset()
    # after a reset, a jump is not an event and time may restart
    assert len(sim.sim(image_with_log(0.0), torch.tensor([0]))) == 0
    assert len(sim.sim(image_with_log(0.25), torch.tensor([1000]))) == 1


def test_reset_mask_only_affects_selected_elements():
    sim = EventSimulator(1, 1, batch_size=2, threshold_sigma=0.0)
    sim.sim(image_with_log(-2.0, (2, 1, 1)), torch.tensor([0, 0]))
    sim.reset(torch.tensor([True, False]))
    events = sim.sim(image_with_log(-1.5, (2, 1, 1)), torch.tensor([1000, 1000]))
    assert events[:, 0].tolist() == [1, 1]


def test_batch_elements_are_independent_and_tagged():
    sim = EventSimulator(2, 3, batch_size=2, threshold_sigma=0.0)
    # element 0: the ramp on pixel (x=2, y=1); element 1: the negated ramp on every pixel
    base = image_with_log(-2.0, (2, 2, 3))
    frames = []
    for log in RAMP_LOGS:
        f = base.clone()
        f[0, 1, 2] = image_with_log(log)[0, 0, 0]
        f[1] = image_with_log(-4.0 - log, (1, 2, 3))[0]
        frames.append(f)
    events = torch.cat([sim.sim(f, torch.tensor([t, t])) for f, t in zip(frames, RAMP_TIMES, strict=True)])
    e0 = events[events[:, 0] == 0]
    assert e0[:, 1].eq(2).all() and e0[:, 2].eq(1).all()
    assert [(int(p), int(t)) for p, t in e0[:, 3:].tolist()] == RAMP_EVENTS
    e1 = events[events[:, 0] == 1]
    assert len(e1) == 6 * len(RAMP_EVENTS)
    # mirrored ramp: same times, flipped polarities, on all 6 pixels
    for x in range(3):
        for y in range(2):
            pixel = e1[(e1[:, 1] == x) & (e1[:, 2] == y)]
            assert [(1 - int(p), int(t)) for p, t in pixel[:, 3:].tolist()] == RAMP_EVENTS


def test_constant_image_gives_no_events():
    sim = EventSimulator(8, 8, batch_size=2)
    img = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(1))
    total = sum(len(sim.sim(img, torch.tensor([t, t]))) for t in range(0, 10000, 1000))
    assert total == 0


def test_uint8_input_equals_float_divided_by_255():
    frames = torch.randint(0, 256, (5, 6, 7), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    a, b = EventSimulator(6, 7, seed=3), EventSimulator(6, 7, seed=3)
    ea = torch.cat([a.sim(frames[i:i + 1], torch.tensor([i * 100])) for i in range(5)])
    eb = torch.cat([b.sim(frames[i:i + 1].float() / 255, torch.tensor([i * 100])) for i in range(5)])
    assert len(ea) > 0 and torch.equal(ea, eb)


@pytest.mark.parametrize("refractory, expected", [
    (500, [(1, 400), (1, 1500), (0, 2923), (0, 3538)]),  # 800 is 400 us after 400: dropped
    (1200, [(1, 400), (0, 2923)]),  # 1500 - 400 < 1200; 3538 - 2923 < 1200 (measured from the last *kept* event)
])
def test_refractory_period_drops_events_after_the_last_kept_one(refractory, expected):
    sim = EventSimulator(1, 1, threshold_sigma=0.0, refractory_period_us=refractory)
    events = run_ramp(sim)
    assert [(int(p), int(t)) for p, t in events[:, 3:].tolist()] == expected


def test_thresholds_are_randomised_per_pixel_with_requested_statistics():
    sim = EventSimulator(100, 100, batch_size=2, contrast_threshold_pos=0.3, contrast_threshold_neg=0.2,
                         threshold_sigma=0.03, seed=5)
    for thr, mean in ((sim.threshold_pos, 0.3), (sim.threshold_neg, 0.2)):
        assert thr.shape == (2, 100, 100)
        assert abs(thr.mean().item() - mean) < 1e-3  # 20000 samples: std of the mean 2e-4
        assert abs(thr.std().item() - 0.03) < 1e-3
    corr = np.corrcoef(sim.threshold_pos.flatten().numpy(), sim.threshold_neg.flatten().numpy())[0, 1]
    assert abs(corr) < 0.05
    wide = EventSimulator(50, 50, threshold_sigma=1.0)
    floor = np.float32(MIN_THRESHOLD)
    assert wide.threshold_pos.min().item() >= floor and wide.threshold_neg.min().item() >= floor
    assert (wide.threshold_pos == floor).float().mean() > 0.35  # 42% of the N(0.2, 1) draws are clamped


def test_per_pixel_threshold_sets_the_event_count():
    sim = EventSimulator(4, 4, threshold_sigma=0.05, seed=7)
    sim.sim(image_with_log(-3.0, (1, 4, 4)), torch.tensor([0]))
    events = sim.sim(image_with_log(-1.0, (1, 4, 4)), torch.tensor([1000]))
    counts = np.zeros((4, 4), int)
    np.add.at(counts, (events[:, 2].numpy(), events[:, 1].numpy()), 1)
    expected = np.floor(2.0 / sim.threshold_pos[0].numpy()).astype(int)
    assert np.array_equal(counts, expected)


def test_shot_noise_rate_and_polarity_balance():
    rate, h, w, seconds = 5.0, 64, 64, 1.0
    sim = EventSimulator(h, w, shot_noise_rate_hz=rate, seed=11)
    img = torch.full((1, h, w), 0.5)
    times = np.linspace(0, seconds * 1e6, 11).astype(np.int64)
    events = torch.cat([sim.sim(img, torch.tensor([t])) for t in times])
    expected = rate * h * w * seconds  # 20480, Poisson std 143
    assert abs(len(events) - expected) < 0.03 * expected
    assert abs(events[:, 3].float().mean().item() - 0.5) < 0.02
    assert events[:, 4].min() > 0 and events[:, 4].max() <= times[-1]
    # spread over the whole sensor: every 8x8 block gets its share (320 expected, std 18)
    blocks = np.zeros((8, 8), int)
    np.add.at(blocks, (events[:, 2].numpy() // 8, events[:, 1].numpy() // 8), 1)
    assert blocks.min() > 200 and blocks.max() < 450


def test_leak_fires_on_events_at_the_leak_rate():
    sim = EventSimulator(16, 16, leak_rate_hz=2.0, threshold_sigma=0.02, seed=3)
    img = torch.full((1, 16, 16), 0.4)
    events = torch.cat([sim.sim(img, torch.tensor([t])) for t in range(0, 2_000_001, 20_000)])
    assert events[:, 3].eq(1).all()
    # the reference drifts by one threshold per 0.5 s from a random phase in [0, 1): 4 events per pixel in 2 s
    counts = np.zeros((16, 16), int)
    np.add.at(counts, (events[:, 2].numpy(), events[:, 1].numpy()), 1)
    assert np.mean(counts == 4) > 0.95 and counts.min() >= 3 and counts.max() <= 5


def test_cutoff_delays_events_but_keeps_their_total():
    def run(cutoff):
        sim = EventSimulator(1, 1, threshold_sigma=0.0, cutoff_hz=cutoff)
        sim.sim(torch.full((1, 1, 1), 0.2), torch.tensor([0]))
        first = sim.sim(torch.full((1, 1, 1), 0.8), torch.tensor([1000]))
        rest = torch.cat([sim.sim(torch.full((1, 1, 1), 0.8), torch.tensor([t])) for t in range(2000, 300_000, 1000)])
        return len(first), len(first) + len(rest)

    expected_total = math.floor((math.log(0.8 + EPS) - math.log(0.2 + EPS)) / 0.2)  # 6
    assert run(0) == (expected_total, expected_total)
    first, total = run(10.0)
    assert first < expected_total / 2 and total == expected_total


def test_output_sorted_by_batch_then_time_and_within_sensor():
    sim = EventSimulator(20, 30, batch_size=3, shot_noise_rate_hz=50, refractory_period_us=50, seed=2)
    gen = torch.Generator().manual_seed(0)
    sim.sim(torch.rand(3, 20, 30, generator=gen), torch.tensor([0, 100, 200]))
    events = sim.sim(torch.rand(3, 20, 30, generator=gen), torch.tensor([10_000, 5_000, 20_000]))
    assert len(events) > 1000
    b, t = events[:, 0].numpy(), events[:, 4].numpy()
    assert np.all(np.diff(b) >= 0)
    assert all(np.all(np.diff(t[b == k]) >= 0) for k in range(3))
    lo, hi = np.array([0, 100, 200]), np.array([10_000, 5_000, 20_000])
    assert np.all(t >= lo[b]) and np.all(t <= hi[b])
    assert events[:, 1].min() >= 0 and events[:, 1].max() < 30 and events[:, 2].max() < 20
    assert set(events[:, 3].tolist()) == {0, 1}


def test_same_seed_same_events_different_seed_different_noise():
    def run(seed):
        sim = EventSimulator(16, 16, shot_noise_rate_hz=100, seed=seed)
        gen = torch.Generator().manual_seed(4)
        frames = torch.rand(5, 16, 16, generator=gen)
        return torch.cat([sim.sim(frames[i:i + 1], torch.tensor([i * 1000])) for i in range(5)])

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


def test_bad_inputs_raise_clear_errors():
    sim = EventSimulator(4, 5, batch_size=2)
    with pytest.raises(ValueError, match=r"shape \(B, H, W\)"):
        sim.sim(torch.zeros(2, 5, 4), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="timestamps must have shape"):
        sim.sim(torch.zeros(2, 4, 5), torch.tensor([0]))
    sim.sim(torch.zeros(2, 4, 5), torch.tensor([10, 10]))
    with pytest.raises(ValueError, match="must increase; batch element 1"):
        sim.sim(torch.zeros(2, 4, 5), torch.tensor([20, 10]))
    with pytest.raises(ValueError, match="contrast_threshold_pos"):
        EventSimulator(4, 5, contrast_threshold_pos=0)
    with pytest.raises(ValueError, match="float in \\[0, 1\\] or uint8"):
        sim.sim(torch.zeros(2, 4, 5, dtype=torch.int32), torch.tensor([30, 30]))


def test_events_to_numpy_selects_batch_element():
    events = torch.tensor([[0, 1, 2, 1, 10], [1, 3, 4, 0, 11], [0, 5, 6, 0, 12]])
    out = events_to_numpy(events, 0)
    assert out.dtype == EVENT_DTYPE
    assert out["x"].tolist() == [1, 5] and out["y"].tolist() == [2, 6]
    assert out["p"].tolist() == [1, 0] and out["t"].tolist() == [10, 12]
    assert len(events_to_numpy(events, 2)) == 0
    with pytest.raises(ValueError, match=r"\(N, 5\)"):
        events_to_numpy(torch.zeros(3, 4), 0)


def test_simulate_video_equals_stepwise_simulation():
    frames = image_with_log(np.array(RAMP_LOGS)[:, None, None], (4, 2, 2))
    events = simulate_video(frames.numpy(), np.array(RAMP_TIMES), threshold_sigma=0.0)
    assert events.dtype == EVENT_DTYPE and len(events) == 4 * len(RAMP_EVENTS)
    assert np.all(np.diff(events["t"]) >= 0)
    pixel = events[(events["x"] == 1) & (events["y"] == 0)]
    assert list(zip(pixel["p"].tolist(), pixel["t"].tolist(), strict=True)) == RAMP_EVENTS


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_cuda_matches_cpu_without_noise():
    def run(device):
        sim = EventSimulator(1, 1, threshold_sigma=0.0, device=device)
        return run_ramp(sim).cpu()

    assert torch.equal(run("cuda"), run("cpu"))


def test_per_element_refractory_periods_give_each_video_its_own_sensor():
    """Three copies of the ramp side by side, refractory 0 / 500 / 1200 us: each element gives the events of a
    simulator with that single value (hand-computed cases above)."""
    sim = EventSimulator(1, 1, batch_size=3, threshold_sigma=0.0, refractory_period_us=[0, 500, 1200])
    events = run_ramp(sim, shape=(3, 1, 1))
    per_element = [[(int(p), int(t)) for p, t in events[events[:, 0] == b][:, 3:].tolist()] for b in range(3)]
    assert per_element[0] == RAMP_EVENTS
    assert per_element[1] == [(1, 400), (1, 1500), (0, 2923), (0, 3538)]
    assert per_element[2] == [(1, 400), (0, 2923)]


def test_per_element_noise_rates_scale_each_videos_noise_and_bad_values_fail():
    rates = [0.0, 5.0, 20.0]
    sim = EventSimulator(32, 32, batch_size=3, shot_noise_rate_hz=rates, leak_rate_hz=[0.0, 0.0, 0.0], seed=4)
    img = torch.full((3, 32, 32), 0.5)
    times = np.linspace(0, 1e6, 6).astype(np.int64)
    events = torch.cat([sim.sim(img, torch.full((3,), int(t))) for t in times])
    counts = [int((events[:, 0] == b).sum()) for b in range(3)]
    assert counts[0] == 0  # no noise, no signal (static image)
    for b in (1, 2):  # rate * pixels * 1 s: 5120 and 20480 expected (Poisson std 72 and 143)
        assert abs(counts[b] - rates[b] * 32 * 32) < 0.05 * rates[b] * 32 * 32
    with pytest.raises(ValueError, match="shot_noise_rate_hz must be one number or batch_size=3 numbers, got 2"):
        EventSimulator(4, 4, batch_size=3, shot_noise_rate_hz=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"refractory_period_us must be >= 0 and finite, got \[-1.0\]"):
        EventSimulator(4, 4, refractory_period_us=-1)
