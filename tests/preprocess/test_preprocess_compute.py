"""compute(): downsampling, time window, input validation, unsorted input, and Metavision's loops on random events."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from preprocess_helpers import DELTA_T, HEIGHT, NUM_TBINS, WIDTH, make_events, metavision_loops, random_events

from evframe.io.dtypes import EVENT_DTYPE
from evframe.preprocess import available, compute, num_channels

BUILTINS = ["diff", "diff_quantized", "event_cube", "histo", "histo_quantized", "multi_channel_timesurface",
            "timesurface"]


def test_builtins_are_registered_with_their_channels():
    assert set(BUILTINS) <= set(available())
    assert [num_channels(n) for n in BUILTINS] == [1, 1, 6, 2, 2, 6, 2]
    assert num_channels("event_cube", split_polarity=False) == 3
    assert num_channels("event_cube", num_utbins=4) == 8
    assert num_channels("event_cube", num_utbins=4, split_polarity=False, max_incr_per_pixel=2) == 4
    assert num_channels("multi_channel_timesurface", num_subbins=5) == 10


def test_downsample_shifts_coordinates_and_divides_increments(scene):
    # k=1: 3x4 -> 1x2. Row y=2 >> 1 = 1 does not exist in a 1-row output (3 is not a multiple of 2): dropped.
    out = compute("histo", scene, NUM_TBINS, HEIGHT, WIDTH, DELTA_T, downsample=1)
    step = 1 / 5 / 4
    torch.testing.assert_close(out, torch.tensor([
        [[[0, 0]], [[3 * step, 0]]],   # bin 0: ON events at x=0, 1, 1 of row 0 -> pixel (0, 0)
        [[[0, 0]], [[0, step]]],       # bin 1: ON at x=3, y=1 -> pixel (0, 1); OFF at y=2 dropped
    ], dtype=torch.float32))
    cube = compute("event_cube", scene, NUM_TBINS, HEIGHT, WIDTH, DELTA_T, downsample=1, max_incr_per_pixel=1)
    assert cube.shape == (2, 6, 1, 2)
    assert cube[1, 3, 0, 1].item() == pytest.approx(1 / 4)  # centred event, increment / 4**1
    quantized = compute("histo_quantized", scene, NUM_TBINS, HEIGHT, WIDTH, DELTA_T, downsample=1)
    assert quantized[0, 1, 0, 0].item() == 3  # integer counts are not divided


def test_time_window_and_start_ts():
    events = make_events([(0, 0, 1, 999), (0, 0, 1, 1000), (1, 0, 1, 1199), (1, 0, 1, 1200), (0, 0, 0, 5000)])
    out = compute("histo", events, 2, 1, 2, 100, start_ts=1000, max_incr_per_pixel=1)
    torch.testing.assert_close(out, torch.tensor([[[[0, 0]], [[1, 0]]], [[[0, 0]], [[0, 1]]]], dtype=torch.float32))
    # events outside the window are ignored even when their coordinates are outside the sensor
    bad_outside = make_events([(50, 50, 1, 10), (0, 0, 1, 1000)])
    assert compute("histo", bad_outside, 2, 1, 2, 100, start_ts=1000).sum() > 0


def test_empty_events():
    for name in BUILTINS:
        out = compute(name, np.zeros(0, dtype=EVENT_DTYPE), 3, 4, 5, 10)
        assert out.shape == (3, num_channels(name), 4, 5)
        assert out.abs().sum() == 0


@pytest.mark.parametrize("name", ["histo", "histo_quantized", "diff_quantized", "timesurface",
                                  "multi_channel_timesurface", "event_cube"])
def test_unsorted_input_gives_the_same_tensor(name):
    # these do not depend on the order of the events (event_cube: as long as no update is clipped, up to float
    # rounding; with 3000 events on 3 x 3 pixels x 24 channels no cell reaches 1)
    events = random_events(3000, 6, 7, 500, seed=1)
    shuffled = events[np.random.default_rng(2).permutation(len(events))]
    sorted_out = compute(name, events, 4, 6, 7, 100, start_ts=50, downsample=1)
    shuffled_out = compute(name, shuffled, 4, 6, 7, 100, start_ts=50, downsample=1)
    if name == "event_cube":
        assert sorted_out.abs().max() < 1
    torch.testing.assert_close(shuffled_out, sorted_out, rtol=0, atol=1e-6)


def test_clipped_updates_follow_the_array_order():
    # diff and event_cube clip at each update, in the order of the array (Metavision's loops), sorted or not
    events = make_events([(0, 0, 1, 5)] * 6 + [(0, 0, 0, 1)] * 3)  # 6 ON then 3 OFF, the OFF ones earlier in time
    diff = compute("diff", events, 1, 1, 1, 10)
    assert diff.item() == pytest.approx(0.4)  # 1 (clipped) - 0.6; in time order it would be -0.6 + 1.2 = 0.6
    assert compute("diff", events[np.argsort(events["t"], kind="stable")], 1, 1, 1, 10).item() == pytest.approx(0.6)
    # one 10 us micro-bin (centre 5): weights 1 (t 5) and 0.6 (t 1), k = 0.2 -> 1 (clipped from 1.2) - 3 * 0.12
    cube = compute("event_cube", events, 1, 1, 1, 10, num_utbins=1, split_polarity=False)
    assert cube.item() == pytest.approx(0.64)


# ------------------------------------------------------------ Metavision's loops (tests/preprocess/preprocess_helpers)
CASES = [
    ("histo", {}), ("histo", {"max_incr_per_pixel": 2.5}), ("histo", {"max_incr_per_pixel": 0.3}),
    ("diff", {}), ("diff", {"max_incr_per_pixel": 1}), ("diff", {"max_incr_per_pixel": 3.7}),
    ("event_cube", {}), ("event_cube", {"split_polarity": False}),
    ("event_cube", {"num_utbins": 4, "split_polarity": False, "max_incr_per_pixel": 2}),
    ("event_cube", {"num_utbins": 1, "max_incr_per_pixel": 0.7}), ("event_cube", {"num_utbins": 7}),
    ("timesurface", {}), ("multi_channel_timesurface", {}), ("multi_channel_timesurface", {"num_subbins": 4}),
    ("multi_channel_timesurface", {"num_subbins": 7}),
]


@pytest.mark.parametrize(("name", "kwargs"), CASES)
@pytest.mark.parametrize(("num_tbins", "downsample"), [(1, 0), (3, 0), (3, 1), (5, 2)])
def test_equals_metavision_loops_bit_for_bit(name, kwargs, num_tbins, downsample):
    # odd sensor size (13 x 11) and delta_t (997), start_ts not 0, events before and after the window, dense
    # enough to clip; sorted events, as Metavision requires
    height, width, delta_t, start = 13, 11, 997, 1500
    events = random_events(4000, height, width, start + (num_tbins + 1) * delta_t, seed=num_tbins + downsample,
                           t_min=start - 300)
    out = compute(name, events, num_tbins, height, width, delta_t, start_ts=start, downsample=downsample, **kwargs)
    expected = metavision_loops(name, events, num_tbins, height, width, delta_t, start, downsample, **kwargs)
    assert out.abs().max() > 0
    assert torch.equal(out, torch.from_numpy(expected))


@pytest.mark.parametrize(("name", "kwargs"), [
    ("histo_quantized", {"bit_length": 3}), ("diff_quantized", {"bit_length": 3}), ("histo_quantized", {}),
])
@pytest.mark.parametrize("downsample", [0, 1, 2])
def test_quantized_match_numpy_counts(name, kwargs, downsample):
    height, width, delta_t, num_tbins, start = 13, 11, 997, 3, 1500
    events = random_events(4000, height, width, start + 4 * delta_t, seed=downsample, t_min=start - 300)
    out = compute(name, events, num_tbins, height, width, delta_t, start_ts=start, downsample=downsample, **kwargs)
    t = events["t"]
    ho, wo = height >> downsample, width >> downsample
    x, y = events["x"].astype(np.int64) >> downsample, events["y"].astype(np.int64) >> downsample
    keep = (t >= start) & (t < start + num_tbins * delta_t) & (x < wo) & (y < ho)
    b, p = (t[keep] - start) // delta_t, events["p"][keep].astype(np.int64)
    bits = kwargs.get("bit_length", 8)
    if name == "histo_quantized":
        counts = np.zeros((num_tbins, 2, ho, wo))
        np.add.at(counts, (b, p, y[keep], x[keep]), 1)
        expected = np.minimum(counts, 2**bits - 1)
    else:
        counts = np.zeros((num_tbins, 1, ho, wo))
        np.add.at(counts, (b, 0, y[keep], x[keep]), 2 * p - 1)
        expected = np.clip(counts, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    torch.testing.assert_close(out, torch.from_numpy(expected).float(), rtol=0, atol=0)


# ------------------------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize("name", BUILTINS)
@pytest.mark.parametrize(("row", "message"), [
    ((4, 0, 1, 50), r"events\[1\].*x=4 is outside the sensor width 4"),
    ((0, 3, 1, 50), r"events\[1\].*y=3 is outside the sensor height 3"),
    ((0, 0, 2, 50), r"events\[1\].*p=2 must be 0 \(OFF\) or 1 \(ON\)"),
    ((0, 0, -1, 50), r"p=-1"),
])
def test_out_of_sensor_events_raise(name, row, message):
    events = make_events([(0, 0, 1, 10), row])
    with pytest.raises(ValueError, match=message):
        compute(name, events, NUM_TBINS, HEIGHT, WIDTH, DELTA_T)


@pytest.mark.parametrize(("events", "message"), [
    (np.zeros((5, 4)), "structured"),
    ([1, 2, 3], "got list"),
    (np.zeros(3, dtype=[("x", "<u2"), ("y", "<u2"), ("t", "<i8")]), "lack the field.*p"),
    (np.zeros(3, dtype=[("x", "<f4"), ("y", "<u2"), ("p", "<i2"), ("t", "<i8")]), "field 'x' must be integer"),
    (np.zeros((2, 2), dtype=EVENT_DTYPE), "1-D"),
    (np.array([(-1, 0, 1, 0)], dtype=[("x", "<i4"), ("y", "<i4"), ("p", "<i4"), ("t", "<i8")]), "field 'x'.*-1"),
])
def test_bad_event_arrays(events, message):
    with pytest.raises(ValueError, match=message):
        compute("histo", events, NUM_TBINS, HEIGHT, WIDTH, DELTA_T)


def test_other_integer_field_types_are_converted(scene):
    wide = np.zeros(len(scene), dtype=[("t", ">i8"), ("x", "<i4"), ("y", "<i8"), ("p", "u1")])
    for field in "xypt":
        wide[field] = scene[field]
    for name in ("histo", "event_cube", "timesurface"):
        assert compute(name, wide, NUM_TBINS, HEIGHT, WIDTH, DELTA_T).equal(
            compute(name, scene, NUM_TBINS, HEIGHT, WIDTH, DELTA_T))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"num_tbins": 0}, "num_tbins must be >= 1, got 0"),
    ({"num_tbins": -3}, "num_tbins must be >= 1, got -3"),
    ({"num_tbins": 2.0}, r"num_tbins must be an int, got 2.0 \(float\)"),
    ({"num_tbins": True}, r"num_tbins must be an int, got True \(bool\)"),
    ({"delta_t": 0}, "delta_t must be >= 1, got 0"),
    ({"delta_t": -100}, "delta_t must be >= 1, got -100"),
    ({"delta_t": 2.5}, r"delta_t must be an int, got 2.5 \(float\)"),
    ({"delta_t": 100.0}, r"delta_t must be an int, got 100.0 \(float\)"),
    ({"delta_t": "100"}, r"delta_t must be an int, got '100' \(str\)"),
    ({"height": 0}, "height must be >= 1, got 0"),
    ({"height": 3.0}, r"height must be an int, got 3.0 \(float\)"),
    ({"width": -4}, "width must be >= 1, got -4"),
    ({"width": False}, r"width must be an int, got False \(bool\)"),
    ({"height": 10**6}, "height must be <= 65536, got 1000000"),
    ({"width": 2**40}, "width must be <= 65536, got 1099511627776"),
    ({"start_ts": 0.5}, r"start_ts must be an int, got 0.5 \(float\)"),
    ({"start_ts": 2**63}, "start_ts must be <= 9223372036854775807, got 9223372036854775808"),
    ({"start_ts": -(2**63) - 1}, "start_ts must be >= -9223372036854775808"),
    ({"start_ts": 2**63 - 150}, r"time window \[start_ts, start_ts \+ num_tbins \* delta_t\) = "
                                r"\[9223372036854775658, 9223372036854775858\) must end at or before 2\*\*63 - 1"),
    ({"num_tbins": 2**62, "delta_t": 4, "start_ts": -(2**63)},
     r"time window .* must end at or before 2\*\*63 - 1 and last at most 2\*\*63 - 1 us"),
    ({"downsample": -1}, "downsample must be >= 0, got -1"),
    ({"downsample": 1.0}, r"downsample must be an int, got 1.0 \(float\)"),
    ({"downsample": 2}, r"downsample=2 leaves no pixel.*3 >> 2 = 0"),
    ({"num_tbins": 10**12}, r"output tensor \(num_tbins, C, height >> downsample, width >> downsample\) = "
                            r"\(1000000000000, \d+, 3, 4\) needs .* GiB, more than the .* GiB of memory"),
    ({"height": 65536, "width": 65536, "num_tbins": 10**4}, r"\(10000, \d+, 65536, 65536\) needs .* GiB, more than"),
])
@pytest.mark.parametrize("name", BUILTINS)
def test_bad_geometry(scene, name, kwargs, message):
    args = {"num_tbins": NUM_TBINS, "height": HEIGHT, "width": WIDTH, "delta_t": DELTA_T} | kwargs
    with pytest.raises(ValueError, match=message):
        compute(name, scene, **args)


def test_geometry_from_numpy_integers_is_accepted(scene):
    assert compute("histo", scene, np.int64(2), np.uint16(3), 4, np.int32(100)).equal(
        compute("histo", scene, 2, 3, 4, 100))


@pytest.mark.parametrize("name", BUILTINS)
def test_start_ts_near_the_int64_limits_counts_only_events_of_the_window(name):
    # the event at the most negative timestamp (x=1) lies 2**64 - 25 us before the window: t - start_ts would wrap
    # around to +25 in int64 and land in bin 2 if it were formed before the window test
    top = 2**63 - 1
    start = top - 40
    events = make_events([(1, 0, 1, 0), (0, 0, 1, 0)])
    events["t"] = [-(2**63), start + 15]
    out = compute(name, events, 4, 1, 2, 10, start_ts=start)
    assert out[..., 1].abs().sum() == 0      # nothing from the event before the window
    assert out[..., 0].abs().sum() > 0       # the event of bin 1
    # a window ending exactly at 2**63 - 1 holds an event at 2**63 - 2; one starting at -2**63 an event there
    edge = make_events([(0, 0, 1, 0)])
    edge["t"] = top - 1
    assert compute(name, edge, 2, 1, 1, 20, start_ts=top - 40).abs().sum() > 0
    edge["t"] = -(2**63) + 7
    assert compute(name, edge, 1, 1, 1, 20, start_ts=-(2**63)).abs().sum() > 0


@pytest.mark.parametrize(("name", "kwargs", "message"), [
    ("event_cube", {"num_utbins": 3.0}, r"num_utbins must be an int, got 3.0 \(float\)"),
    ("event_cube", {"num_utbins": True}, r"num_utbins must be an int, got True \(bool\)"),
    ("event_cube", {"num_utbins": 0}, "num_utbins must be >= 1, got 0"),
    ("multi_channel_timesurface", {"num_subbins": 2.0}, r"num_subbins must be an int, got 2.0 \(float\)"),
    ("histo", {"max_incr_per_pixel": True}, "max_incr_per_pixel must be a positive number, got True"),
    ("histo", {"max_incr_per_pixel": float("nan")}, "max_incr_per_pixel must be a positive number, got nan"),
    ("histo_quantized", {"bit_length": 8.0}, r"bit_length must be an int, got 8.0 \(float\)"),
])
def test_bad_option_types(scene, name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        compute(name, scene, NUM_TBINS, HEIGHT, WIDTH, DELTA_T, **kwargs)


def test_event_cube_time_arithmetic_must_fit_int64(scene):
    # (t - start_ts) * nbins is formed in int64 as in Metavision: 2**62 * 2 > 2**63 - 1
    with pytest.raises(ValueError, match=r"event_cube: \(num_tbins \* delta_t\) \* \(num_tbins \* num_utbins\) "
                                         r"must be <= 2\*\*63 - 1.*num_tbins=1, delta_t=4611686018427387904"):
        compute("event_cube", scene, 1, HEIGHT, WIDTH, 2**62, num_utbins=2)
    assert compute("event_cube", scene, 1, HEIGHT, WIDTH, 2**62, num_utbins=1).abs().sum() > 0


def test_unknown_option_is_a_clear_type_error(scene):
    with pytest.raises(TypeError, match="'histo' does not take the argument 'max_incr'.*max_incr_per_pixel"):
        compute("histo", scene, NUM_TBINS, HEIGHT, WIDTH, DELTA_T, max_incr=3)
    with pytest.raises(TypeError, match="num_utbin"):
        num_channels("event_cube", num_utbin=4)
