"""compute(): downsampling, time window, input validation, unsorted input, and a numpy reference on random events."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from preprocess_helpers import DELTA_T, HEIGHT, NUM_TBINS, WIDTH, make_events, random_events

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


@pytest.mark.parametrize("name", BUILTINS)
def test_unsorted_input_gives_the_same_tensor(name):
    events = random_events(3000, 6, 7, 500, seed=1)
    shuffled = events[np.random.default_rng(2).permutation(len(events))]
    sorted_out = compute(name, events, 4, 6, 7, 100, start_ts=50, downsample=1)
    shuffled_out = compute(name, shuffled, 4, 6, 7, 100, start_ts=50, downsample=1)
    torch.testing.assert_close(shuffled_out, sorted_out, rtol=0, atol=1e-6)


# ------------------------------------------------------------------------- independent numpy reference (np.add.at)
def reference(name, events, num_tbins, height, width, delta_t, start_ts, k, **kw):
    """Slow, obviously-correct numpy versions of the definitions."""
    t = events["t"].astype(np.int64)
    keep = (t >= start_ts) & (t < start_ts + num_tbins * delta_t)
    ho, wo = height >> k, width >> k
    x, y = events["x"].astype(np.int64) >> k, events["y"].astype(np.int64) >> k
    keep &= (x < wo) & (y < ho)
    x, y, p, t = x[keep], y[keep], events["p"][keep].astype(np.int64), t[keep]
    b = (t - start_ts) // delta_t
    tau = (t - start_ts) - b * delta_t
    if name in ("histo", "histo_quantized"):
        out = np.zeros((num_tbins, 2, ho, wo))
        np.add.at(out, (b, p, y, x), 1)
        if name == "histo":
            return np.clip(out / kw.get("max_incr_per_pixel", 5) / 4**k, 0, 1)
        return np.minimum(out, 2 ** kw.get("bit_length", 8) - 1)
    if name in ("diff", "diff_quantized"):
        out = np.zeros((num_tbins, 1, ho, wo))
        np.add.at(out, (b, 0, y, x), 2 * p - 1)
        if name == "diff":
            return np.clip(out / kw.get("max_incr_per_pixel", 5) / 4**k, -1, 1)
        half = 2 ** (kw.get("bit_length", 8) - 1)
        return np.clip(out, -half, half - 1)
    if name == "event_cube":
        nu, split = kw.get("num_utbins", 3), kw.get("split_polarity", True)
        out = np.zeros((num_tbins, nu * (2 if split else 1), ho, wo))
        u = delta_t / nu
        for m in range(nu):
            w = np.maximum(0, 1 - np.abs(tau - (m + 0.5) * u) / u)
            if split:
                np.add.at(out, (b, 2 * m + p, y, x), w)
            else:
                np.add.at(out, (b, m, y, x), w * (2 * p - 1))
        return np.clip(out / kw.get("max_incr_per_pixel", 5) / 4**k, 0 if split else -1, 1)
    if name in ("timesurface", "multi_channel_timesurface"):
        ns = kw.get("num_subbins", 3) if name == "multi_channel_timesurface" else 1
        out = np.zeros((num_tbins, 2 * ns, ho, wo))
        sub = tau * ns // delta_t
        np.maximum.at(out, (b, 2 * sub + p, y, x), tau / delta_t)
        return out
    raise AssertionError(name)


@pytest.mark.parametrize(("name", "kwargs"), [
    ("histo", {}), ("histo", {"max_incr_per_pixel": 2.5}), ("diff", {}), ("diff", {"max_incr_per_pixel": 1}),
    ("event_cube", {}), ("event_cube", {"num_utbins": 4, "split_polarity": False, "max_incr_per_pixel": 2}),
    ("timesurface", {}), ("multi_channel_timesurface", {"num_subbins": 4}),
    ("histo_quantized", {"bit_length": 3}), ("diff_quantized", {"bit_length": 3}),
])
@pytest.mark.parametrize("downsample", [0, 1, 2])
def test_matches_numpy_reference(name, kwargs, downsample):
    # odd sensor size (13 x 11), start_ts not 0, events before and after the window, dense enough to clip
    height, width, delta_t, num_tbins, start = 13, 11, 997, 3, 1500
    events = random_events(4000, height, width, start + 4 * delta_t, seed=downsample, t_min=start - 300)
    out = compute(name, events, num_tbins, height, width, delta_t, start_ts=start, downsample=downsample, **kwargs)
    expected = reference(name, events, num_tbins, height, width, delta_t, start, downsample, **kwargs)
    torch.testing.assert_close(out, torch.from_numpy(expected).float(), rtol=0, atol=1e-5)


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
    ({"num_tbins": 0}, "num_tbins must be >= 1"),
    ({"delta_t": 0}, "delta_t must be >= 1"),
    ({"delta_t": 2.5}, "delta_t must be an integer"),
    ({"height": 0}, "height must be >= 1"),
    ({"downsample": -1}, "downsample must be >= 0"),
    ({"downsample": 2}, r"downsample=2 leaves no pixel.*3 >> 2 = 0"),
])
def test_bad_geometry(scene, kwargs, message):
    args = {"num_tbins": NUM_TBINS, "height": HEIGHT, "width": WIDTH, "delta_t": DELTA_T} | kwargs
    with pytest.raises(ValueError, match=message):
        compute("histo", scene, **args)


def test_integral_float_geometry_from_configs_is_accepted(scene):
    assert compute("histo", scene, 2.0, 3, 4, 100.0).equal(compute("histo", scene, 2, 3, 4, 100))


def test_unknown_option_is_a_clear_type_error(scene):
    with pytest.raises(TypeError, match="'histo' does not take the argument 'max_incr'.*max_incr_per_pixel"):
        compute("histo", scene, NUM_TBINS, HEIGHT, WIDTH, DELTA_T, max_incr=3)
    with pytest.raises(TypeError, match="num_utbin"):
        num_channels("event_cube", num_utbin=4)
