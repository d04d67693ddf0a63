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


@pytest.mark.parametrize(("max_incr", "count", "expected"), [
    (100, 300, 1.0),     # uint8 counters saturate at 100: still exactly 1
    (1000, 300, 0.3),    # uint16 counters
    (1e5, 300, 0.003),   # uint32 counters
])
def test_histo_counter_types_are_exact(max_incr, count, expected):
    events = make_events([(0, 0, 1, t % 10) for t in range(count)])
    out = compute("histo", events, 1, 1, 1, 10, max_incr_per_pixel=max_incr)
    assert out[0, 1, 0, 0].item() == pytest.approx(expected, rel=1e-6)


def test_diff(scene):
    check(run("diff", scene), [
        [[[.2, .4, _, _], [_, _, _, _], [_, -.2, _, _]]],
        [[[_, _, _, _], [_, _, _, .2], [_, _, -.2, _]]],
    ])


def test_diff_clips_after_summing():
    on7 = [(0, 0, 1, t) for t in range(7)]
    off7 = [(1, 0, 0, t) for t in range(7)]
    mixed = [(2, 0, 1, t) for t in range(7)] + [(2, 0, 0, t) for t in range(6)]
    out = compute("diff", make_events(on7 + off7 + mixed), 1, 1, 3, 10)
    check(out, [[[[1.0, -1.0, 0.2]]]])


def test_event_cube_scene(scene):
    # u = 100/3 us; pos = tau / u + 0.5 in "shifted micro-bin" units: the event lies between centres floor(pos)-1
    # and floor(pos) with weights (1 - frac, frac). Channel = 2 * micro_bin + p; values / max_incr_per_pixel (5).
    expected = np.zeros((2, 6, 3, 4), dtype=np.float32)
    expected[0, 1, 0, 0] = 0.5 / 5          # tau 0: half weight to micro-bin 0 (left neighbour does not exist)
    expected[0, 1, 0, 1] = 0.8 / 5          # tau 10: pos 0.8 -> micro-bin 0 gets 0.8
    expected[0, 5, 0, 1] = 0.53 / 5         # tau 99: pos 3.47 -> micro-bin 2 gets 1 - 0.47
    expected[0, 2, 2, 1] = 0.7 / 5          # tau 60 (OFF): pos 2.3 -> micro-bins 1 and 2 get 0.7 and 0.3
    expected[0, 4, 2, 1] = 0.3 / 5
    expected[1, 3, 1, 3] = 1.0 / 5          # tau 50: exactly on the centre of micro-bin 1
    expected[1, 4, 2, 2] = 0.53 / 5         # tau 99 (OFF)
    check(run("event_cube", scene), expected)


@pytest.mark.parametrize(("tau", "weights"), [
    (0, [0.5, 0, 0]),        # bin start: half a triangle (the other half would belong to the previous bin)
    (50, [1, 0, 0]),         # centre of micro-bin 0
    (100, [0.5, 0.5, 0]),    # boundary between micro-bins 0 and 1
    (125, [0.25, 0.75, 0]),
    (250, [0, 0, 1]),        # centre of the last micro-bin
    (275, [0, 0, 0.75]),     # after the last centre the weight decays
    (299, [0, 0, 0.51]),
])
def test_event_cube_linear_weights(tau, weights):
    # delta_t 300, 3 micro-bins of u = 100 with centres 50, 150, 250; max_incr_per_pixel 1 shows the raw weights
    events = make_events([(0, 0, 1, tau)])
    out = compute("event_cube", events, 1, 1, 1, 300, max_incr_per_pixel=1)
    assert out.shape == (1, 6, 1, 1)
    torch.testing.assert_close(out[0, 1::2, 0, 0], torch.tensor(weights, dtype=torch.float32), rtol=0, atol=1e-6)
    assert out[0, 0::2].abs().sum() == 0  # OFF channels untouched


def test_event_cube_without_polarity_split(scene):
    out = run("event_cube", scene, split_polarity=False)
    expected = np.zeros((2, 3, 3, 4), dtype=np.float32)
    expected[0, 0, 0, 0] = 0.5 / 5
    expected[0, 0, 0, 1] = 0.8 / 5
    expected[0, 2, 0, 1] = 0.53 / 5
    expected[0, 1, 2, 1] = -0.7 / 5   # OFF subtracts
    expected[0, 2, 2, 1] = -0.3 / 5
    expected[1, 1, 1, 3] = 1.0 / 5
    expected[1, 2, 2, 2] = -0.53 / 5
    check(out, expected)


def test_event_cube_clipping_and_num_utbins():
    # 12 ON and 12 OFF events at a micro-bin centre: split -> 12/5 clipped to 1; unsplit -> 0
    events = make_events([(0, 0, p, 25) for p in (0, 1) for _ in range(12)])
    split = compute("event_cube", events, 1, 1, 1, 100, num_utbins=2)
    check(split, [[[[1.0]], [[1.0]], [[0.0]], [[0.0]]]])
    unsplit = compute("event_cube", events, 1, 1, 1, 100, num_utbins=2, split_polarity=False)
    check(unsplit, [[[[0.0]], [[0.0]]]])
    on_only = compute("event_cube", events[12:], 1, 1, 1, 100, num_utbins=2, split_polarity=False)
    check(on_only, [[[[1.0]], [[0.0]]]])
    off_only = compute("event_cube", events[:12], 1, 1, 1, 100, num_utbins=2, split_polarity=False)
    check(off_only, [[[[-1.0]], [[0.0]]]])


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
    # 3 sub-bins of 100/3 us: tau 0, 10 -> sub-bin 0; 50, 60 -> 1; 99 -> 2; channel 2 * sub_bin + p
    check(run("multi_channel_timesurface", scene), [
        [
            Z,                                                  # sub-bin 0 OFF
            [[_, .1, _, _], [_, _, _, _], [_, _, _, _]],        # sub-bin 0 ON (tau 0 -> 0 at (0, 0))
            [[_, _, _, _], [_, _, _, _], [_, .6, _, _]],        # sub-bin 1 OFF
            Z,                                                  # sub-bin 1 ON
            Z,                                                  # sub-bin 2 OFF
            [[_, .99, _, _], [_, _, _, _], [_, _, _, _]],       # sub-bin 2 ON
        ],
        [
            Z, Z, Z,
            [[_, _, _, _], [_, _, _, .5], [_, _, _, _]],
            [[_, _, _, _], [_, _, _, _], [_, _, .99, _]],
            Z,
        ],
    ])
    assert run("multi_channel_timesurface", scene, num_subbins=1).equal(run("timesurface", scene))


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
