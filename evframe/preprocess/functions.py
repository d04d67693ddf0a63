"""The built-in preprocessing functions (Metavision ML definitions), registered by name on import.

Common to all: events ``(N,)`` EVENT_DTYPE; time bin ``i`` covers ``[start_ts + i * delta_t, start_ts + (i + 1) *
delta_t)`` and events outside the ``num_tbins`` bins are ignored; with ``downsample = k`` an event at ``(x, y)``
lands on pixel ``(x >> k, y >> k)`` of a ``(height >> k, width >> k)`` grid (rows/columns left over when the sensor
size is not a multiple of ``2**k`` are dropped); events inside the window but outside the ``height x width`` sensor,
or with ``p`` not in {0, 1}, raise ValueError. Every function returns a torch float32 tensor
``(num_tbins, C, height >> k, width >> k)``; polarity channels are ordered OFF (p=0) then ON (p=1).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from evframe.preprocess import _kernels
from evframe.preprocess.registry import register
from evframe.preprocess.validation import (
    Geometry,
    as_bool,
    as_event_array,
    as_int,
    as_positive_float,
    check_geometry,
    raise_bad_event,
)


def _prepare(events: Any, num_tbins: Any, height: Any, width: Any, delta_t: Any, start_ts: Any,
             downsample: Any) -> tuple[np.ndarray, Geometry]:
    return as_event_array(events), check_geometry(num_tbins, height, width, delta_t, start_ts, downsample)


def _accumulate(kernel: Callable, events: np.ndarray, g: Geometry, acc: np.ndarray, *params: Any) -> np.ndarray:
    """Runs ``kernel`` over the events into ``acc`` and turns its error index into a ValueError."""
    bad = kernel(events["x"], events["y"], events["p"], events["t"], acc, *params, g.start_ts, g.delta_t,
                 g.downsample, g.width, g.height)
    if bad >= 0:
        raise_bad_event(events, int(bad), g.height, g.width)
    return acc


def _finish(acc: np.ndarray, scale: float, low: float, high: float) -> torch.Tensor:
    """float32 tensor of clip(acc * scale, low, high) with acc's shape (in place when acc is float32)."""
    out = acc if acc.dtype == np.float32 else np.empty(acc.shape, dtype=np.float32)
    _kernels.scale_clip(acc.reshape(-1), out.reshape(-1), float(scale), float(low), float(high))
    return torch.from_numpy(out)


def _count_dtype(cap: int) -> np.dtype:
    """Smallest unsigned type whose range holds ``cap`` (counts saturate there: see _kernels)."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if cap <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.int64)


def _zeros(g: Geometry, channels: int, dtype: Any) -> np.ndarray:
    return np.zeros((g.num_tbins, channels, g.out_height, g.out_width), dtype=dtype)


# ------------------------------------------------------------------------------------------------------ histograms
@register("histo", 2, checks_bounds=True)
def histo(events: np.ndarray, num_tbins: int, height: int, width: int, delta_t: int, start_ts: int = 0,
          downsample: int = 0, max_incr_per_pixel: float = 5.0) -> torch.Tensor:
    """Per-polarity event histogram, C=2 (channel 0: OFF, 1: ON).

    Each event adds ``1 / max_incr_per_pixel / 4**downsample`` to its pixel; values are clipped to [0, 1] (so a
    pixel saturates after ``max_incr_per_pixel`` events at full resolution).

    Returns:
        float32 tensor (num_tbins, 2, height >> downsample, width >> downsample).
    """
    ev, g = _prepare(events, num_tbins, height, width, delta_t, start_ts, downsample)
    threshold = as_positive_float("max_incr_per_pixel", max_incr_per_pixel) * 4 ** g.downsample
    cap = min(math.ceil(threshold), 2**62)  # counts beyond this all clip to 1
    dtype = _count_dtype(cap)
    acc = _accumulate(_kernels.polarity_counts, ev, g, _zeros(g, 2, dtype), dtype.type(cap))
    return _finish(acc, 1.0 / threshold, 0.0, 1.0)


@register("diff", 1, checks_bounds=True)
def diff(events: np.ndarray, num_tbins: int, height: int, width: int, delta_t: int, start_ts: int = 0,
         downsample: int = 0, max_incr_per_pixel: float = 5.0) -> torch.Tensor:
    """ON minus OFF histogram, C=1: ON adds ``+1 / max_incr_per_pixel / 4**downsample``, OFF the opposite;
    clipped to [-1, 1] after summing.

    Returns:
        float32 tensor (num_tbins, 1, height >> downsample, width >> downsample).
    """
    ev, g = _prepare(events, num_tbins, height, width, delta_t, start_ts, downsample)
    threshold = as_positive_float("max_incr_per_pixel", max_incr_per_pixel) * 4 ** g.downsample
    acc = _accumulate(_kernels.signed_counts, ev, g, _zeros(g, 1, np.int32))
    return _finish(acc, 1.0 / threshold, -1.0, 1.0)


def _bit_length(value: Any, minimum: int) -> int:
    bits = as_int("bit_length", value, minimum)
    if bits > 16:
        raise ValueError(f"bit_length must be <= 16, got {bits}")
    return bits


@register("histo_quantized", 2, checks_bounds=True)
def histo_quantized(events: np.ndarray, num_tbins: int, height: int, width: int, delta_t: int, start_ts: int = 0,
                    downsample: int = 0, bit_length: int = 8, normalization: bool = False) -> torch.Tensor:
    """Integer event counts per polarity (C=2, OFF then ON) clipped to ``2**bit_length - 1`` (1 <= bits <= 16).

    Counts are not divided by ``4**downsample`` (they are integers). ``normalization=True`` divides them by
    ``2**bit_length - 1`` (values in [0, 1]); otherwise the float32 values are the counts themselves.

    Returns:
        float32 tensor (num_tbins, 2, height >> downsample, width >> downsample).
    """
    ev, g = _prepare(events, num_tbins, height, width, delta_t, start_ts, downsample)
    cap = 2 ** _bit_length(bit_length, 1) - 1
    normalization = as_bool("normalization", normalization)
    dtype = _count_dtype(cap)
    acc = _accumulate(_kernels.polarity_counts, ev, g, _zeros(g, 2, dtype), dtype.type(cap))
    return _finish(acc, 1.0 / cap if normalization else 1.0, 0.0, float(cap))


@register("diff_quantized", 1, checks_bounds=True)
def diff_quantized(events: np.ndarray, num_tbins: int, height: int, width: int, delta_t: int, start_ts: int = 0,
                   downsample: int = 0, bit_length: int = 8, normalization: bool = False) -> torch.Tensor:
    """Signed count ON - OFF (C=1) clipped to ``[-2**(bit_length-1), 2**(bit_length-1) - 1]`` (2 <= bits <= 16).

    ``normalization=True`` divides by ``2**(bit_length-1)`` (values in [-1, 1)); otherwise the values are counts.

    Returns:
        float32 tensor (num_tbins, 1, height >> downsample, width >> downsample).
    """
    ev, g = _prepare(events, num_tbins, height, width, delta_t, start_ts, downsample)
    half = 2 ** (_bit_length(bit_length, 2) - 1)
    normalization = as_bool("normalization", normalization)
    acc = _accumulate(_kernels.signed_counts, ev, g, _zeros(g, 1, np.int32))
    scale = 1.0 / half if normalization else 1.0
    return _finish(acc, scale, -half * scale, (half - 1) * scale)


# ------------------------------------------------------------------------------------------------------ event cube
def _num_utbins(value: Any) -> int:
    return as_int("num_utbins", value, 1)


def _event_cube_channels(num_utbins: int = 3, split_polarity: bool = True, **_: Any) -> int:
    return _num_utbins(num_utbins) * (2 if as_bool("split_polarity", split_polarity) else 1)


@register("event_cube", _event_cube_channels, checks_bounds=True)
def event_cube(events: np.ndarray, num_tbins: int, height: int, width: int, delta_t: int, start_ts: int = 0,
               downsample: int = 0, num_utbins: int = 3, split_polarity: bool = True,
               max_incr_per_pixel: float = 5.0) -> torch.Tensor:
    """Event cube: each time bin split into ``num_utbins`` micro-bins with linear (triangle) time weights.

    With ``u = delta_t / num_utbins`` and ``tau`` the event time from its bin start, micro-bin ``m`` (centre
    ``(m + 0.5) * u``) receives ``max(0, 1 - |tau - (m + 0.5) * u| / u) / max_incr_per_pixel / 4**downsample``:
    the event is shared linearly between its two nearest centres. Only micro-bins of the event's own bin receive
    weight, so events before the first centre or after the last keep only the weight of the nearest one (an event
    at ``tau = 0`` adds 0.5 to micro-bin 0; at ``tau = u / 2`` it adds 1).

    split_polarity=True: C = 2 * num_utbins, channel ``2 * m + p``, clipped to [0, 1].
    split_polarity=False: C = num_utbins, ON adds and OFF subtracts, clipped to [-1, 1].

    Returns:
        float32 tensor (num_tbins, C, height >> downsample, width >> downsample).
    """
    ev, g = _prepare(events, num_tbins, height, width, delta_t, start_ts, downsample)
    num_utbins = _num_utbins(num_utbins)
    split = as_bool("split_polarity", split_polarity)
    threshold = as_positive_float("max_incr_per_pixel", max_incr_per_pixel) * 4 ** g.downsample
    acc = _zeros(g, num_utbins * (2 if split else 1), np.float32)
    _accumulate(_kernels.event_cube, ev, g, acc, num_utbins, split)
    return _finish(acc, 1.0 / threshold, 0.0 if split else -1.0, 1.0)


# ---------------------------------------------------------------------------------------------------- time surfaces
@register("timesurface", 2, checks_bounds=True)
def timesurface(events: np.ndarray, num_tbins: int, height: int, width: int, delta_t: int, start_ts: int = 0,
                downsample: int = 0) -> torch.Tensor:
    """Time surface, C=2 (OFF, ON): ``(t_last - bin_start) / delta_t`` of the most recent event of each pixel and
    polarity in the bin, 0 where there is none (an event exactly at the bin start also gives 0).

    Returns:
        float32 tensor (num_tbins, 2, height >> downsample, width >> downsample), values in [0, 1).
    """
    ev, g = _prepare(events, num_tbins, height, width, delta_t, start_ts, downsample)
    acc = _accumulate(_kernels.time_surface, ev, g, _zeros(g, 2, np.float32), 1)
    return torch.from_numpy(acc)


def _num_subbins(value: Any) -> int:
    return as_int("num_subbins", value, 1)


def _multi_channel_timesurface_channels(num_subbins: int = 3, **_: Any) -> int:
    return 2 * _num_subbins(num_subbins)


@register("multi_channel_timesurface", _multi_channel_timesurface_channels, checks_bounds=True)
def multi_channel_timesurface(events: np.ndarray, num_tbins: int, height: int, width: int, delta_t: int,
                              start_ts: int = 0, downsample: int = 0, num_subbins: int = 3) -> torch.Tensor:
    """Time surfaces of ``num_subbins`` equal sub-bins of each bin, C = 2 * num_subbins.

    Channel ``2 * s + p`` holds ``(t_last - bin_start) / delta_t`` of the latest event of polarity ``p`` in
    sub-bin ``s`` (``s = (t - bin_start) * num_subbins // delta_t``), 0 where there is none. Values are relative to
    the start of the whole bin, so sub-bin ``s`` spans ``[s / num_subbins, (s + 1) / num_subbins)``.

    Returns:
        float32 tensor (num_tbins, 2 * num_subbins, height >> downsample, width >> downsample).
    """
    ev, g = _prepare(events, num_tbins, height, width, delta_t, start_ts, downsample)
    num_subbins = _num_subbins(num_subbins)
    acc = _accumulate(_kernels.time_surface, ev, g, _zeros(g, 2 * num_subbins, np.float32), num_subbins)
    return torch.from_numpy(acc)
