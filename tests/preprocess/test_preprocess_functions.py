"""Each built-in function on the hand-built scene, with the expected tensors written out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from preprocess_helpers import DELTA_T, HEIGHT, NUM_TBINS, WIDTH, make_events

from evframe.preprocess import compute


def run(name, events, **kwargs):
    return compute(name, events, NUM_TBINS, HEIGHT, WIDTH, DELTA_T, **kwargs)


def check(actual: torch.Tensor, expected, atol: float = 1e-6) -> None:
    assert actual.dtype == torch.float32
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=torch.float32), rtol=0, atol=atol)


_ = 0.0
Z = [[_, _, _, _], [_, _, _, _], [_, _, _, _]]  # an empty 3 x 4 channel


def test_histo(scene):
    # 1 event = 1/5; pixel (0, 1) has two ON events in bin 0
    check(run("histo", scene), [
        [  # bin 0
            [[_, _, _, _], [_, _, _, _], [_, .2, _, _]],    # OFF
            [[.2, .4, _, _], [_, _, _, _], [_, _, _, _]],   # ON
        ],
        [  # bin 1
            [[_, _, _, _], [_, _, _, _], [_, _, .2, _]],
            [[_, _, _, _], [_, _, _, .2], [_, _, _, _]],
        ],
    ])


def test_histo_max_incr_and_clipping():
    events = make_events([(0, 0, 1, t) for t in range(3)] + [(1, 0, 0, t) for t in range(2)])
    out = compute("histo", events, 1, 1, 2, 10, max_incr_per_pixel=2.5)
    check(out, [[[[0.0, 0.8]], [[1.0, 0.0]]]])  # 3 ON events / 2.5 -> clipped to 1; 2 OFF -> 0.8


def _chain(k: float, count: int, low: float = 0.0) -> float:
    """Value after ``count`` clipped float32 additions of k (Metavision's histogram update), by hand."""
    v = np.float32(0.0)
    for _ in range(count):
        v = np.float32(float(v) + k) if float(v) + k <= 1 else np.float32(1.0)
    return float(v)


@pytest.mark.parametrize(("max_incr", "count", "expected"), [
    (100, 300, 1.0),     # saturates after 100 events: exactly 1
    (1000, 300, 0.3),    # uint16 counters
    (1e5, 300, 0.003),   # saturation beyond 65535 events: the float loop itself
])
def test_histo_values_are_the_clipped_float32_additions(max_incr, count, expected):
    events = make_events([(0, 0, 1, t % 10) for t in range(count)])
    out = compute("histo", events, 1, 1, 1, 10, max_incr_per_pixel=max_incr)
    assert out[0, 1, 0, 0].item() == _chain(1 / max_incr, count)  # bit for bit
    assert out[0, 1, 0, 0].item() == pytest.approx(expected, rel=1e-4)


def test_histo_fifth_increments_reach_exactly_one():
    # 0.2 in float32 accumulates to 1.0000000119 > 1 at the fifth event: Metavision then stores 1
    events = make_events([(0, 0, 1, 0)] * 4 + [(1, 0, 1, 0)] * 5)
    out = compute("histo", events, 1, 1, 2, 10)
    assert out[0, 1, 0].tolist() == [_chain(0.2, 4), 1.0]
    assert _chain(0.2, 4) == float(np.float32(0.8))


def test_diff(scene):
    check(run("diff", scene), [
        [[[.2, .4, _, _], [_, _, _, _], [_, -.2, _, _]]],
        [[[_, _, _, _], [_, _, _, .2], [_, _, -.2, _]]],
    ])


def test_diff_clips_at_each_event_in_event_order():
    # k = 0.2: 7 ON then 6 OFF saturate at 1 and come down to -0.2; 6 OFF then 7 ON go to -1 and up to 0.4
    on7 = [(0, 0, 1, t) for t in range(7)]
    off7 = [(1, 0, 0, t) for t in range(7)]
    on_then_off = [(2, 0, 1, t) for t in range(7)] + [(2, 0, 0, 7 + t) for t in range(6)]
    off_then_on = [(3, 0, 0, t) for t in range(6)] + [(3, 0, 1, 6 + t) for t in range(7)]
    out = compute("diff", make_events(on7 + off7 + on_then_off + off_then_on), 1, 1, 4, 20)
    check(out, [[[[1.0, -1.0, -0.2, 0.4]]]])


def test_event_cube_scene(scene):
    # 2 bins x 3 micro-bins of 100/3 us over the call [0, 200): u = t * 6 / 200 - 0.5, l = floor(u); micro-bin l
    # gets 1 - (u - l), l + 1 gets u - l. Micro-bin j is channel 2 * (j % 3) + p of bin j // 3; values / 5.
    expected = np.zeros((2, 6, 3, 4), dtype=np.float32)
    expected[0, 1, 0, 0] = 0.5 / 5          # t 0: u -0.5, only micro-bin 0 exists: 0.5
    expected[0, 1, 0, 1] = 0.8 / 5          # t 10: u -0.2 -> micro-bin 0 gets 0.8
    expected[0, 2, 2, 1] = 0.7 / 5          # t 60 (OFF): u 1.3 -> micro-bins 1 and 2 get 0.7 and 0.3
    expected[0, 4, 2, 1] = 0.3 / 5
    expected[0, 5, 0, 1] = 0.53 / 5         # t 99: u 2.47 -> micro-bin 2 (bin 0) gets 0.53 ...
    expected[1, 1, 0, 1] = 0.47 / 5         # ... and micro-bin 3 (first of bin 1) gets 0.47
    expected[1, 3, 1, 3] = 1.0 / 5          # t 150: u 4.0, exactly on the centre of micro-bin 4
    expected[1, 4, 2, 2] = 0.53 / 5         # t 199 (OFF): u 5.47 -> micro-bin 5; micro-bin 6 does not exist
    check(run("event_cube", scene), expected)


@pytest.mark.parametrize(("t", "weights"), [
    (0, [0.5, 0, 0, 0, 0, 0]),          # start of the call: half a triangle (micro-bin -1 does not exist)
    (50, [1, 0, 0, 0, 0, 0]),           # centre of micro-bin 0
    (100, [0.5, 0.5, 0, 0, 0, 0]),      # boundary between micro-bins 0 and 1
    (125, [0.25, 0.75, 0, 0, 0, 0]),
    (250, [0, 0, 1, 0, 0, 0]),          # centre of the last micro-bin of bin 0
    (275, [0, 0, 0.75, 0.25, 0, 0]),    # end of bin 0: a quarter goes to the first micro-bin of bin 1
    (299, [0, 0, 0.51, 0.49, 0, 0]),
    (300, [0, 0, 0.5, 0.5, 0, 0]),      # the bin edge itself: shared equally
    (310, [0, 0, 0.4, 0.6, 0, 0]),      # start of bin 1: 0.4 goes back to the last micro-bin of bin 0
    (550, [0, 0, 0, 0, 0, 1]),
    (599, [0, 0, 0, 0, 0, 0.51]),       # end of the call: micro-bin 6 does not exist
])
@pytest.mark.parametrize("split_polarity", [True, False])
def test_event_cube_weights_cross_bin_edges(t, weights, split_polarity):
    # 2 bins of 300 us, 3 micro-bins of 100 us each (centres 50, 150, ..., 550); max_incr_per_pixel 1 shows the
    # raw weights. The ON event gives +weights, the OFF event (other pixel) -weights or +weights in channel 2m.
    events = make_events([(0, 0, 1, t), (1, 0, 0, t)])
    out = compute("event_cube", events, 2, 1, 2, 300, max_incr_per_pixel=1, split_polarity=split_polarity)
    w = torch.tensor(weights, dtype=torch.float32).view(2, 3)
    if split_polarity:
        assert out.shape == (2, 6, 1, 2)
        torch.testing.assert_close(out[:, 1::2, 0, 0], w, rtol=0, atol=1e-6)    # ON at x=0
        torch.testing.assert_close(out[:, 0::2, 0, 1], w, rtol=0, atol=1e-6)    # OFF at x=1
        assert out[:, 0::2, 0, 0].abs().sum() == 0 and out[:, 1::2, 0, 1].abs().sum() == 0
    else:
        assert out.shape == (2, 3, 1, 2)
        torch.testing.assert_close(out[:, :, 0, 0], w, rtol=0, atol=1e-6)
        torch.testing.assert_close(out[:, :, 0, 1], -w, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("num_tbins", "num_utbins", "t", "expected"), [
    # one micro-bin per bin of 100 us (centres 50, 150, 250): an event shares its weight with the next bin
    (3, 1, 10, [0.6, 0, 0]),
    (3, 1, 90, [0.6, 0.4, 0]),
    (3, 1, 130, [0.2, 0.8, 0]),
    (3, 1, 299, [0, 0, 0.51]),
    # 4 bins x 2 micro-bins of 50 us (centres 25, 75, ...): t 190 -> u 3.3, micro-bins 3 and 4 (bins 1 and 2)
    (4, 2, 190, [0, 0, 0, 0.7, 0.3, 0, 0, 0]),
])
def test_event_cube_other_bin_counts(num_tbins, num_utbins, t, expected):
    out = compute("event_cube", make_events([(0, 0, 1, t)]), num_tbins, 1, 1, 100, num_utbins=num_utbins,
                  max_incr_per_pixel=1)
    torch.testing.assert_close(out[:, 1::2, 0, 0].reshape(-1), torch.tensor(expected), rtol=0, atol=1e-6)


def test_event_cube_without_polarity_split(scene):
    out = run("event_cube", scene, split_polarity=False)
    expected = np.zeros((2, 3, 3, 4), dtype=np.float32)
    expected[0, 0, 0, 0] = 0.5 / 5
    expected[0, 0, 0, 1] = 0.8 / 5
    expected[0, 2, 0, 1] = 0.53 / 5
    expected[1, 0, 0, 1] = 0.47 / 5   # across the bin edge
    expected[0, 1, 2, 1] = -0.7 / 5   # OFF subtracts
    expected[0, 2, 2, 1] = -0.3 / 5
    expected[1, 1, 1, 3] = 1.0 / 5
    expected[1, 2, 2, 2] = -0.53 / 5
    check(out, expected)


def test_event_cube_clips_each_update_in_event_order():
    # 1 bin, 2 micro-bins of 50 us; t 25 is the centre of micro-bin 0 (weight 1, k = 0.2 per event).
    # x=0: 7 ON then 6 OFF; x=1: 6 OFF then 7 ON
    on, off = (1, 25), (0, 25)
    events = make_events([(0, 0, *on)] * 7 + [(0, 0, *off)] * 6 + [(1, 0, *off)] * 6 + [(1, 0, *on)] * 7)
    split = compute("event_cube", events, 1, 1, 2, 100, num_utbins=2)
    check(split, [[[[1.0, 1.0]], [[1.0, 1.0]], [[0.0, 0.0]], [[0.0, 0.0]]]])    # 6 or 7 events * 0.2: clipped to 1
    unsplit = compute("event_cube", events, 1, 1, 2, 100, num_utbins=2, split_polarity=False)
    # +1 (clipped from 1.4) then -1.2 -> -0.2; -1 (clipped from -1.2) then +1.4 -> 0.4 (a final clip would give
    # +0.2 and -0.2)
    check(unsplit, [[[[-0.2, 0.4]], [[0.0, 0.0]]]])
    off_only = compute("event_cube", events[7:13], 1, 1, 2, 100, num_utbins=2, split_polarity=False)
    check(off_only, [[[[-1.0, 0.0]], [[0.0, 0.0]]]])


def test_event_cube_clipping_of_an_event_feeding_two_bins():
    # 2 bins of 100 us, 1 micro-bin each; t 100 sits on the edge: 0.5 to each bin, clipped separately at 1
    events = make_events([(0, 0, 1, 50)] * 3 + [(0, 0, 1, 100)] * 4)
    out = compute("event_cube", events, 2, 1, 1, 100, num_utbins=1, max_incr_per_pixel=2)
    check(out[:, 1, 0, 0], [1.0, 1.0])  # bin 0: 3 * 0.5 + 4 * 0.25 -> 1; bin 1: 4 * 0.25 = 1
    out = compute("event_cube", events[3:], 2, 1, 1, 100, num_utbins=1, max_incr_per_pixel=4)
    check(out[:, 1, 0, 0], [0.5, 0.5])


@pytest.mark.parametrize("order", [[0, 1], [1, 0]])
def test_event_cube_per_bin_keeps_each_bin_to_its_own_events(order):
    # 2 bins of 40 us, 2 micro-bins each, k = 1. A at (0, 0), t 35: in a 2-bin call u = 35 * 4 / 80 - 0.5 = 1.25,
    # 0.75 to micro-bin 1 (bin 0) and 0.25 to micro-bin 2 (bin 1, micro 0). B at (1, 0), t 42: u = 1.6, 0.4 to bin 0
    # micro 1 and 0.6 to bin 1 micro 0. Per bin (a 1-bin call each) what crosses the bin edge is dropped.
    events = make_events([(0, 0, 1, 35), (1, 0, 1, 42)])[order]
    kwargs = dict(num_utbins=2, max_incr_per_pixel=1)
    window = compute("event_cube", events, 2, 1, 2, 40, **kwargs)
    per_bin = compute("event_cube_per_bin", events, 2, 1, 2, 40, **kwargs)
    assert window.shape == per_bin.shape == (2, 4, 1, 2)
    check(window[0, 3, 0], [0.75, 0.4])  # channel 2 * micro + polarity
    check(window[1, 1, 0], [0.25, 0.6])
    check(per_bin[0, 3, 0], [0.75, 0.0])
    check(per_bin[1, 1, 0], [0.0, 0.6])
    assert float(window.sum()) == pytest.approx(2.0) and float(per_bin.sum()) == pytest.approx(1.35)
    for i in range(2):  # the same as Metavision's event_cube called on each bin alone
        alone = compute("event_cube", events, 1, 1, 2, 40, start_ts=40 * i, **kwargs)
        assert torch.equal(per_bin[i:i + 1], alone)


def test_timesurface(scene):
    # (t_last - bin_start) / delta_t; the event at tau 0 gives 0, like an empty pixel
    check(run("timesurface", scene), [
        [
            [[_, _, _, _], [_, _, _, _], [_, .6, _, _]],
            [[_, .99, _, _], [_, _, _, _], [_, _, _, _]],
        ],
        [
            [[_, _, _, _], [_, _, _, _], [_, _, .99, _]],
            [[_, _, _, _], [_, _, _, .5], [_, _, _, _]],
        ],
    ])


def test_multi_channel_timesurface(scene):
    # micro-bins of d = 200 / 6 = 100/3 us over the call; value = (t - micro-bin start) / d; channel 2 * m + p
    # t 10 -> micro-bin 0, 10 / d = 0.3; t 60 -> 1, 26.67 / d = 0.8; t 99 -> 2, 0.97; t 150 -> 4, 0.5; t 199 -> 5
    check(run("multi_channel_timesurface", scene), [
        [
            Z,                                                  # micro-bin 0 OFF
            [[_, .3, _, _], [_, _, _, _], [_, _, _, _]],        # micro-bin 0 ON (t 0 -> 0 at (0, 0))
            [[_, _, _, _], [_, _, _, _], [_, .8, _, _]],        # micro-bin 1 OFF
            Z,                                                  # micro-bin 1 ON
            Z,                                                  # micro-bin 2 OFF
            [[_, .97, _, _], [_, _, _, _], [_, _, _, _]],       # micro-bin 2 ON
        ],
        [
            Z, Z, Z,
            [[_, _, _, _], [_, _, _, .5], [_, _, _, _]],
            [[_, _, _, _], [_, _, _, _], [_, _, .97, _]],
            Z,
        ],
    ])
    assert run("multi_channel_timesurface", scene, num_subbins=1).equal(run("timesurface", scene))


@pytest.mark.parametrize(("num_subbins", "t", "channel", "value"), [
    (2, 0, 1, 0.0),        # start of micro-bin 0
    (2, 49, 1, 0.98),      # end of micro-bin 0 (50 us long)
    (2, 50, 3, 0.0),       # start of micro-bin 1
    (2, 75, 3, 0.5),
    (4, 30, 3, 0.2),       # micro-bins of 25 us: t 30 is 5 us into micro-bin 1
    (3, 99, 5, 0.97),      # micro-bins of 33.33 us: 99 - 66.67 = 32.33 us into micro-bin 2
])
def test_multi_channel_timesurface_is_relative_to_the_micro_bin(num_subbins, t, channel, value):
    out = compute("multi_channel_timesurface", make_events([(0, 0, 1, 100 + t)]), 2, 1, 1, 100, start_ts=100,
                  num_subbins=num_subbins)
    expected = torch.zeros(2, 2 * num_subbins)
    expected[0, channel] = value
    torch.testing.assert_close(out[:, :, 0, 0], expected, rtol=0, atol=1e-6)


def test_time_surfaces_keep_the_latest_event_of_a_cell():
    events = make_events([(0, 0, 1, 10), (0, 0, 1, 30), (0, 0, 1, 20)])  # not sorted: the latest is t 30
    assert compute("timesurface", events, 1, 1, 1, 100)[0, 1, 0, 0].item() == pytest.approx(0.3)
    assert compute("multi_channel_timesurface", events, 1, 1, 1, 100, num_subbins=2)[0, 1, 0, 0].item() == \
        pytest.approx(0.6)


def test_histo_quantized(scene):
    counts = run("histo_quantized", scene)
    check(counts, [
        [
            [[_, _, _, _], [_, _, _, _], [_, 1, _, _]],
            [[1, 2, _, _], [_, _, _, _], [_, _, _, _]],
        ],
        [
            [[_, _, _, _], [_, _, _, _], [_, _, 1, _]],
            [[_, _, _, _], [_, _, _, 1], [_, _, _, _]],
        ],
    ])
    check(run("histo_quantized", scene, normalization=True), counts.numpy() / 255)
    # one bit: counts clip to 1
    assert run("histo_quantized", scene, bit_length=1)[0, 1, 0, 1].item() == 1.0


def test_histo_quantized_clips_at_bit_range():
    events = make_events([(0, 0, 1, 0)] * 300 + [(1, 0, 0, 0)] * 5)
    check(compute("histo_quantized", events, 1, 1, 2, 10), [[[[0, 5]], [[255, 0]]]])
    check(compute("histo_quantized", events, 1, 1, 2, 10, bit_length=2), [[[[0, 3]], [[3, 0]]]])
    check(compute("histo_quantized", events, 1, 1, 2, 10, bit_length=9), [[[[0, 5]], [[300, 0]]]])
    check(compute("histo_quantized", events, 1, 1, 2, 10, bit_length=2, normalization=True),
          [[[[0, 1]], [[1, 0]]]])


def test_diff_quantized():
    events = make_events([(0, 0, 1, 0)] * 3 + [(1, 0, 0, 0)] * 3 + [(2, 0, 1, 0), (2, 0, 0, 0), (2, 0, 0, 0)])
    check(compute("diff_quantized", events, 1, 1, 3, 10), [[[[3, -3, -1]]]])
    # 2 bits: range [-2, 1]
    check(compute("diff_quantized", events, 1, 1, 3, 10, bit_length=2), [[[[1, -2, -1]]]])
    check(compute("diff_quantized", events, 1, 1, 3, 10, bit_length=2, normalization=True), [[[[0.5, -1, -0.5]]]])
    many = make_events([(0, 0, 0, 0)] * 200)
    check(compute("diff_quantized", many, 1, 1, 1, 10), [[[[-128]]]])


def test_diff_quantized_scene(scene):
    check(run("diff_quantized", scene), [
        [[[1, 2, _, _], [_, _, _, _], [_, -1, _, _]]],
        [[[_, _, _, _], [_, _, _, 1], [_, _, -1, _]]],
    ])


@pytest.mark.parametrize(("name", "kwargs", "message"), [
    ("histo", {"max_incr_per_pixel": 0}, "max_incr_per_pixel"),
    ("diff", {"max_incr_per_pixel": -1}, "max_incr_per_pixel"),
    ("event_cube", {"num_utbins": 0}, "num_utbins"),
    ("event_cube", {"split_polarity": "no"}, "split_polarity"),
    ("multi_channel_timesurface", {"num_subbins": 0}, "num_subbins"),
    ("histo_quantized", {"bit_length": 0}, "bit_length"),
    ("histo_quantized", {"bit_length": 17}, "bit_length"),
    ("diff_quantized", {"bit_length": 1}, "bit_length"),
])
def test_bad_options(scene, name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        run(name, scene, **kwargs)
