"""Events -> dense tensors for neural networks (Metavision ML preprocessing functions, by name).

Usage::

    from evframe.preprocess import compute, num_channels
    x = compute("event_cube", events, num_tbins=5, height=480, width=640, delta_t=10_000)  # (5, 6, 480, 640)

Built-ins (see :mod:`evframe.preprocess.functions`): ``histo`` (C=2), ``diff`` (1), ``event_cube`` (6, or 3 with
``split_polarity=False``), ``timesurface`` (2), ``multi_channel_timesurface`` (2 * num_subbins),
``histo_quantized`` (2), ``diff_quantized`` (1). The first five return Metavision ML's tensors to the last bit (for
events sorted by time). Add your own with :func:`register` or, from a config, :func:`register_from_string`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from evframe.preprocess import functions as _functions  # noqa: F401  (registers the built-ins)
from evframe.preprocess.registry import (
    PreprocessEntry,
    available,
    check_kwargs,
    entry,
    get,
    num_channels,
    register,
    register_from_string,
    unregister,
)
from evframe.preprocess.validation import as_event_array, check_events_numpy, check_geometry, check_tensor_size

__all__ = [
    "PreprocessEntry", "available", "compute", "entry", "get", "num_channels", "register", "register_from_string",
    "unregister",
]


def compute(name: str, events: np.ndarray, num_tbins: int, height: int, width: int, delta_t: int, start_ts: int = 0,
            downsample: int = 0, **kwargs: Any) -> torch.Tensor:
    """Turns events into a tensor with the preprocessing function registered as ``name``.

    Args:
        name: registered function ("histo", "event_cube", ... see :func:`available`).
        events: (N,) EVENT_DTYPE structured array (x, y, p, t in us), normally sorted by t (not required).
        num_tbins: T >= 1 (an int), number of time bins of ``delta_t`` us starting at ``start_ts``; events outside
            ``[start_ts, start_ts + num_tbins * delta_t)`` are ignored. That window must lie inside the int64
            range (its end at most ``2**63 - 1``).
        height, width: sensor size, ints in [1, 65536] (coordinates are uint16); events inside the window must
            have x < width, y < height, p in {0, 1}.
        delta_t: bin duration in us, an int >= 1. start_ts: an int (us).
        downsample: k >= 0, coordinates are shifted right by k (output ``(height >> k, width >> k)``).
        **kwargs: options of the function (e.g. ``max_incr_per_pixel``).

    Integer arguments must be ints (Python or numpy), not floats (even ``2.0``) nor bools.

    Returns:
        torch.float32 tensor (num_tbins, C, height >> downsample, width >> downsample), C = num_channels(name,
        **kwargs).
    Raises:
        KeyError: unknown name (lists the available ones). TypeError: an option the function does not take.
        ValueError: bad events dtype, events outside the sensor, bad geometry or option values (each naming the
        argument and the expected type or range), an output larger than this machine's memory, or a user function
        returning the wrong shape. All arguments are checked before anything is allocated.
    """
    item = entry(name)
    check_kwargs(name, kwargs)
    channels = num_channels(name, **kwargs)
    geometry = check_geometry(num_tbins, height, width, delta_t, start_ts, downsample)
    check_tensor_size(geometry, channels)
    events = as_event_array(events)
    if not item.checks_bounds:
        check_events_numpy(events, geometry)
    result = item.function(events, geometry.num_tbins, geometry.height, geometry.width, geometry.delta_t,
                           start_ts=geometry.start_ts, downsample=geometry.downsample, **kwargs)
    if isinstance(result, np.ndarray):
        result = torch.from_numpy(np.ascontiguousarray(result))
    if not isinstance(result, torch.Tensor):
        raise ValueError(f"preprocess '{name}' returned a {type(result).__name__}, expected a tensor or ndarray")
    expected = (geometry.num_tbins, channels, geometry.out_height, geometry.out_width)
    if tuple(result.shape) != expected:
        raise ValueError(f"preprocess '{name}' returned shape {tuple(result.shape)}, expected (num_tbins, C, H, W) = "
                         f"{expected}")
    return result.to(torch.float32)
