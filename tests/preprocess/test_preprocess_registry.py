"""Registry: custom functions, unknown names, register_from_string, channel counts."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch
from preprocess_helpers import DELTA_T, HEIGHT, NUM_TBINS, WIDTH, make_events

from evframe.preprocess import (
    available,
    compute,
    entry,
    get,
    num_channels,
    register,
    register_from_string,
    unregister,
)
from evframe.preprocess.functions import histo


@pytest.fixture
def cleanup():
    """Names registered by a test, removed afterwards so tests stay independent."""
    names: list[str] = []
    yield names
    for name in names:
        if name in available():
            unregister(name)


def count_events(events, num_tbins, height, width, delta_t, start_ts=0, downsample=0, scale=1.0):
    """A user function: one channel holding scale * (number of events of the window) everywhere."""
    t = events["t"]
    n = int(((t >= start_ts) & (t < start_ts + num_tbins * delta_t)).sum())
    return np.full((num_tbins, 1, height >> downsample, width >> downsample), scale * n, dtype=np.float64)


def test_register_custom_function(cleanup, scene):
    cleanup.append("count_events")
    register("count_events", 1)(count_events)
    assert "count_events" in available()
    assert get("count_events") is count_events
    assert num_channels("count_events", scale=2.0) == 1
    out = compute("count_events", scene, NUM_TBINS, HEIGHT, WIDTH, DELTA_T, start_ts=100, scale=0.5)
    assert out.dtype == torch.float32 and out.shape == (2, 1, 3, 4)
    assert torch.all(out == 1.0)  # 2 events in [100, 300), times 0.5


def test_register_as_decorator_with_callable_channels(cleanup, scene):
    cleanup.append("stack")

    @register("stack", lambda copies=2, **_: 2 * copies)
    def stack(events, num_tbins, height, width, delta_t, start_ts=0, downsample=0, copies=2):
        base = histo(events, num_tbins, height, width, delta_t, start_ts, downsample)
        return torch.cat([base] * copies, dim=1)

    assert num_channels("stack") == 4
    assert num_channels("stack", copies=3) == 6
    assert compute("stack", scene, NUM_TBINS, HEIGHT, WIDTH, DELTA_T, copies=3).shape == (2, 6, 3, 4)


def test_compute_checks_bounds_for_user_functions(cleanup):
    cleanup.append("count_events")
    register("count_events", 1)(count_events)
    with pytest.raises(ValueError, match=r"x=9 is outside the sensor width 4"):
        compute("count_events", make_events([(9, 0, 1, 5)]), NUM_TBINS, HEIGHT, WIDTH, DELTA_T)


def test_user_function_with_wrong_shape_is_reported(cleanup, scene):
    cleanup.append("wrong")
    register("wrong", 3)(count_events)  # says 3 channels, returns 1
    with pytest.raises(ValueError, match=r"'wrong' returned shape \(2, 1, 3, 4\), expected .*\(2, 3, 3, 4\)"):
        compute("wrong", scene, NUM_TBINS, HEIGHT, WIDTH, DELTA_T)


def test_unknown_name_lists_the_available_ones(scene):
    with pytest.raises(KeyError, match="unknown preprocess function 'histogram'; available: .*histo"):
        compute("histogram", scene, NUM_TBINS, HEIGHT, WIDTH, DELTA_T)
    with pytest.raises(KeyError, match="event_cube"):
        num_channels("nope")
    with pytest.raises(KeyError, match="available"):
        get("nope")


def test_duplicate_registration(cleanup):
    cleanup.append("dup")
    register("dup", 1)(count_events)
    register("dup", 1)(count_events)  # same function again: fine (e.g. a config registering twice)
    with pytest.raises(ValueError, match="'dup' is already registered"):
        register("dup", 1)(histo)
    register("dup", 2, overwrite=True)(histo)
    assert get("dup") is histo and num_channels("dup") == 2


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "2"])
def test_bad_channel_specs(bad):
    with pytest.raises((TypeError, ValueError), match="num_channels"):
        register("bad_channels", bad)(count_events)
    assert "bad_channels" not in available()


def test_callable_channels_must_return_a_positive_int(cleanup):
    cleanup.append("zero")
    register("zero", lambda **_: 0)(count_events)
    with pytest.raises(ValueError, match="positive int"):
        num_channels("zero")


def test_register_from_string(cleanup, tmp_path, monkeypatch, scene):
    module = tmp_path / "my_features.py"
    module.write_text(textwrap.dedent("""
        import numpy as np

        def ones(events, num_tbins, height, width, delta_t, start_ts=0, downsample=0):
            return np.ones((num_tbins, 2, height >> downsample, width >> downsample), dtype=np.float32)

        class Tools:
            @staticmethod
            def zeros(events, num_tbins, height, width, delta_t, start_ts=0, downsample=0):
                return np.zeros((num_tbins, 1, height, width), dtype=np.float32)

        NOT_CALLABLE = 3
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    cleanup.extend(["ones", "zeros", "histo_alias"])
    fn = register_from_string("ones", "my_features:ones", 2)
    assert get("ones") is fn
    assert not entry("ones").checks_bounds  # compute validates the events itself for user functions
    assert torch.all(compute("ones", scene, NUM_TBINS, HEIGHT, WIDTH, DELTA_T, downsample=1) == 1)
    register_from_string("zeros", "my_features:Tools.zeros", 1)
    assert compute("zeros", scene, NUM_TBINS, HEIGHT, WIDTH, DELTA_T).abs().sum() == 0
    register_from_string("histo_alias", "evframe.preprocess.functions:histo", 2)
    assert compute("histo_alias", scene, 2, 3, 4, 100).equal(compute("histo", scene, 2, 3, 4, 100))


@pytest.mark.parametrize(("target", "message"), [
    ("my_features.ones", "must look like 'package.module:function'"),
    ("a:b:c", "must look like"),
    (":ones", "must look like"),
    ("no_such_module_xyz:fn", "cannot import module 'no_such_module_xyz'"),
    ("evframe.preprocess.functions:nothing_here", "has no attribute 'nothing_here'"),
    ("evframe.preprocess.precompute:LABEL_MAP", "is a str, not a callable"),
])
def test_register_from_string_errors(target, message):
    with pytest.raises(ValueError, match=message):
        register_from_string("from_string_error", target, 1)
    assert "from_string_error" not in available()
