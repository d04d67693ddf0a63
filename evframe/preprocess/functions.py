"""The built-in preprocessing functions (Metavision ML definitions), registered by name on import.

Common to all: events ``(N,)`` EVENT_DTYPE; time bin ``i`` covers ``[start_ts + i * delta_t, start_ts + (i + 1) *
delta_t)`` and events outside the ``num_tbins`` bins are ignored; with ``downsample = k`` an event at ``(x, y)``
lands on pixel ``(x >> k, y >> k)`` of a ``(height >> k, width >> k)`` grid (rows/columns left over when the sensor
size is not a multiple of ``2**k`` are dropped); events inside the window but outside the ``height x width`` sensor,
or with ``p`` not in {0, 1}, raise ValueError. Every function returns a torch float32 tensor
``(num_tbins, C, height >> k, width >> k)``; polarity channels are ordered OFF (p=0) then ON (p=1).

``histo``, ``diff``, ``event_cube``, ``timesurface`` and ``multi_channel_timesurface`` equal Metavision ML's
functions of the same name called on the events of the window with ``t - start_ts`` as timestamps and
``total_tbins_delta_t = num_tbins * delta_t``, for events sorted by time (Metavision's requirement): the same
values to the last bit, the clipped updates applied in event order as Metavision does. Like Metavision's, the
event cube of a call depends on the call's window (an event near a bin edge also feeds the neighbouring bin of the
same call), so tensors computed bin by bin (``num_tbins=1`` per call, as Metavision's HDF5 tool and
``evframe.preprocess.precompute`` do) differ from one call over the same bins near the bin edges.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from evframe.preprocess import _kernels
from evframe.preprocess.registry import register
from evframe.preprocess.validation import (
    INT64_MAX,
    Geometry,
    as_bool,
    as_event_array,
    as_int,
    as_positive_float,
    check_geometry,
    check_tensor_size,
    raise_bad_event,
)

#: largest count :func:`histo` keeps in a uint16 counter before running the float loop itself
_HISTO_TABLE_LIMIT = 2**16 - 1


def _prepare(events: Any, num_tbins: Any, height: Any, width: Any, delta_t: Any, start_ts: Any,
             downsample: Any) -> tuple[np.ndarray, Geometry]:
    return as_event_array(events), check_geometry(num_tbins, height, width, delta_t, start_ts, downsample)


def _raise_if_bad(bad: int, events: np.ndarray, g: Geometry) -> None:
    """Turns a kernel's error index into the ValueError describing that event."""
    if bad >= 0:
        raise_bad_event(events, int(bad), g.height, g.width)


def _accumulate(kernel: Any, events: np.ndarray, g: Geometry, acc: np.ndarray, *params: Any) -> np.ndarray:
    """Runs a binned kernel (one taking ``start, end, dt``) over the events into ``acc``."""
    bad = kernel(events["x"], events["y"], events["p"], events["t"], acc, *params, g.start_ts, g.end_ts, g.delta_t,
                 g.downsample, g.width, g.height)
    _raise_if_bad(bad, events, g)
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
    check_tensor_size(g, channels, np.dtype(dtype).itemsize)
    return np.zeros((g.num_tbins, channels, g.out_height, g.out_width), dtype=dtype)


def _increment(max_incr_per_pixel: Any, downsample: int) -> float:
    """Metavision's per-event increment ``1 / (max_incr_per_pixel * 4**downsample)``."""
    return 1.0 / (as_positive_float("max_incr_per_pixel", max_incr_per_pixel) * 4 ** downsample)


# ------------------------------------------------------------------------------------------------------ histograms
@functools.lru_cache(maxsize=64)
def _histo_table(k: float) -> tuple[np.ndarray, bool]:
    """:func:`_kernels.saturation_table` of increment ``k`` (read-only), computed once per ``k``."""
    table, complete = _kernels.saturation_table(k, _HISTO_TABLE_LIMIT)
    table = table.copy()  # a view of the 65536-entry buffer otherwise
    table.flags.writeable = False
    return table, bool(complete)


@register("histo", 2, checks_bounds=True)
def histo(events: np.ndarray, num_tbins: int, height: int, width: int, delta_t: int, start_ts: int = 0,
          downsample: int = 0, max_incr_per_pixel: float = 5.0) -> torch.Tensor:
    """Per-polarity event histogram, C=2 (channel 0: OFF, 1: ON), as Metavision's ``histo``.

    With ``k = 1 / (max_incr_per_pixel * 4**downsample)``, each event of the cell does ``v = v + k`` when that
    stays <= 1, else ``v = 1`` (float64 sum stored as float32), so a pixel saturates at 1 after about
    ``max_incr_per_pixel`` events at full resolution.

    Returns:
        float32 tensor (num_tbins, 2, height >> downsample, width >> downsample), values in [0, 1].
    """
    ev, g = _prepare(events, num_tbins, height, width, delta_t, start_ts, downsample)
    k = _increment(max_incr_per_pixel, g.downsample)
    # the value after n events depends on n only: count (small integers, cache friendly), then look the values up
    table, complete = _histo_table(k)
    if not complete:  # more than 65535 events before saturation: Metavision's float loop itself
        return torch.from_numpy(_accumulate(_kernels.clipped_increments, ev, g, _zeros(g, 2, np.float32), k, True))
    cap = len(table) - 1
    dtype = _count_dtype(cap)
    counts = _accumulate(_kernels.polarity_counts, ev, g, _zeros(g, 2, dtype), dtype.type(cap))
    out = np.empty(counts.shape, np.float32)
    _kernels.lookup(counts.reshape(-1), table, out.reshape(-1))
    return torch.from_numpy(out)


@register("diff", 1, checks_bounds=True)
def diff(events: np.ndarray, num_tbins: int, height: int, width: int, delta_t: int, start_ts: int = 0,
         downsample: int = 0, max_incr_per_pixel: float = 5.0) -> torch.Tensor:
    """ON minus OFF histogram, C=1, as Metavision's ``diff``.

    With ``k = 1 / (max_incr_per_pixel * 4**downsample)``, in event order an ON event does ``v = v + k`` when that
    stays <= 1, else ``v = 1``; an OFF event ``v = v - k`` when that stays >= -1, else ``v = -1``. The clipping
    happens at each event, so the order matters: 6 ON then 6 OFF events with k = 0.2 give 1, then about -0.2 (a sum
    clipped at the end would give 0).

    Returns:
        float32 tensor (num_tbins, 1, height >> downsample, width >> downsample), values in [-1, 1].
    """
    ev, g = _prepare(events, num_tbins, height, width, delta_t, start_ts, downsample)
    k = _increment(max_incr_per_pixel, g.downsample)
    return torch.from_numpy(_accumulate(_kernels.clipped_increments, ev, g, _zeros(g, 1, np.float32), k, False))


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
    """Event cube (Metavision's ``event_cube``): linear time weights over the micro-bins of the whole call.

    The window ``[start_ts, start_ts + num_tbins * delta_t)`` holds ``nbins = num_tbins * num_utbins`` micro-bins
    (``num_utbins`` per time bin). An event at time ``t`` has ``u = (t - start_ts) * nbins / (num_tbins *
    delta_t) - 0.5`` and ``l = floor(u)``: micro-bin ``l`` receives ``(1 - (u - l)) * s * k`` and micro-bin
    ``l + 1`` receives ``(u - l) * s * k``, each only if it exists in the call (``0 <= bin < nbins``). So an event
    near the end of bin ``i`` also feeds the first micro-bin of bin ``i + 1`` and the reverse, while the first half
    micro-bin of the call and the last one keep only part of the weight (an event at ``t = start_ts`` adds ``0.5 *
    k`` to micro-bin 0). ``k = 1 / (max_incr_per_pixel * 4**downsample)``; ``s = 1``, except ``s = -1`` for OFF
    events when ``split_polarity=False``. Each update is clipped, ``v = clip(v + w, -1, 1)`` in event order.

    split_polarity=True: C = 2 * num_utbins, micro-bin ``m`` of a bin in channels ``2 * m + p``, values in [0, 1].
    split_polarity=False: C = num_utbins, ON adds and OFF subtracts, values in [-1, 1].

    Returns:
        float32 tensor (num_tbins, C, height >> downsample, width >> downsample).
    Raises:
        ValueError: also when ``num_tbins * delta_t * nbins`` exceeds int64 (``(t - start_ts) * nbins`` is formed in
        int64, as in Metavision).
    """
    ev, g = _prepare(events, num_tbins, height, width, delta_t, start_ts, downsample)
    num_utbins = _num_utbins(num_utbins)
    split = as_bool("split_polarity", split_polarity)
    k = _increment(max_incr_per_pixel, g.downsample)
    nbins = g.num_tbins * num_utbins
    if g.num_tbins * g.delta_t * nbins > INT64_MAX:
        raise ValueError(f"event_cube: (num_tbins * delta_t) * (num_tbins * num_utbins) must be <= 2**63 - 1 (int64 "
                         f"time arithmetic), got num_tbins={g.num_tbins}, delta_t={g.delta_t}, num_utbins={num_utbins}")
    acc = _zeros(g, num_utbins * (2 if split else 1), np.float32)
    bad = _kernels.event_cube(ev["x"], ev["y"], ev["p"], ev["t"], acc, num_utbins, split, k, g.start_ts, g.end_ts,
                              g.downsample, g.width, g.height)
    _raise_if_bad(bad, ev, g)
    return torch.from_numpy(acc)


#: registered names computing each bin alone -> the function they call per bin. A tensor file holds one tensor per
#: bin computed from that bin alone (``precompute``, Metavision's HDF5 tool), so its tensors are the same under both.
PER_BIN_OF: dict[str, str] = {"event_cube_per_bin": "event_cube"}


def tensor_file_name(name: str) -> str:
    """The name under which the tensors of a precomputed file (one bin per tensor) of ``name`` are the same ones:
    ``event_cube_per_bin`` -> ``event_cube``; any other name -> itself."""
    return PER_BIN_OF.get(name, name)


@register("event_cube_per_bin", _event_cube_channels, checks_bounds=True)
def event_cube_per_bin(events: np.ndarray, num_tbins: int, height: int, width: int, delta_t: int, start_ts: int = 0,
                       downsample: int = 0, num_utbins: int = 3, split_polarity: bool = True,
                       max_incr_per_pixel: float = 5.0) -> torch.Tensor:
    """Metavision's :func:`event_cube` computed one bin at a time: bin ``i`` is ``event_cube(events, num_tbins=1,
    start_ts=start_ts + i * delta_t)``, so each bin's tensor depends on its own events only.

    What it is for: the tensors Metavision's HDF5 feature files and evframe's ``precompute`` hold (computed bin by
    bin) and what Metavision's flow training reads from them; and a stream of tensors that is the same at every
    bin edge. :func:`event_cube` called over several bins lets an event near a bin edge feed the neighbouring bin
    inside the call but not across calls, so a loader playing ``num_tbins`` bins per call gives edges that differ
    every ``num_tbins`` bins; here none does, whatever the call's length. Same arguments, channels and values in
    the interior of each bin as :func:`event_cube`; the first and last half micro-bin of each bin keep only the
    weight that stays inside the bin.

    Returns:
        float32 tensor (num_tbins, C, height >> downsample, width >> downsample).
    """
    ev, g = _prepare(events, num_tbins, height, width, delta_t, start_ts, downsample)
    t = ev["t"]
    edges = g.start_ts + g.delta_t * np.arange(g.num_tbins + 1, dtype=np.int64)
    if len(t) < 2 or bool(np.all(t[1:] >= t[:-1])):  # sorted (the usual case): each bin is a slice
        bounds = np.searchsorted(t, edges, side="left")
        parts = [ev[bounds[i]:bounds[i + 1]] for i in range(g.num_tbins)]
    else:
        parts = [ev[(t >= edges[i]) & (t < edges[i + 1])] for i in range(g.num_tbins)]
    return torch.cat([event_cube(part, 1, g.height, g.width, g.delta_t, int(edges[i]), g.downsample, num_utbins,
                                 split_polarity, max_incr_per_pixel) for i, part in enumerate(parts)])


# ---------------------------------------------------------------------------------------------------- time surfaces
def _time_surface(events: Any, num_tbins: Any, height: Any, width: Any, delta_t: Any, start_ts: Any,
                  downsample: Any, num_subbins: int) -> torch.Tensor:
    ev, g = _prepare(events, num_tbins, height, width, delta_t, start_ts, downsample)
    acc = _zeros(g, 2 * num_subbins, np.float32)
    bad = _kernels.time_surface(ev["x"], ev["y"], ev["p"], ev["t"], acc, num_subbins, g.start_ts, g.end_ts,
                                g.downsample, g.width, g.height)
    _raise_if_bad(bad, ev, g)
    return torch.from_numpy(acc)


@register("timesurface", 2, checks_bounds=True)
def timesurface(events: np.ndarray, num_tbins: int, height: int, width: int, delta_t: int, start_ts: int = 0,
                downsample: int = 0) -> torch.Tensor:
    """Time surface (Metavision's ``timesurface``, normed), C=2 (OFF, ON): ``(t_last - bin_start) / delta_t`` of
    the latest event of each pixel and polarity in the bin, 0 where there is none (an event exactly at the bin
    start also gives 0).

    Returns:
        float32 tensor (num_tbins, 2, height >> downsample, width >> downsample), values in [0, 1).
    """
    return _time_surface(events, num_tbins, height, width, delta_t, start_ts, downsample, 1)


def _num_subbins(value: Any) -> int:
    return as_int("num_subbins", value, 1)


def _multi_channel_timesurface_channels(num_subbins: int = 3, **_: Any) -> int:
    return 2 * _num_subbins(num_subbins)


@register("multi_channel_timesurface", _multi_channel_timesurface_channels, checks_bounds=True)
def multi_channel_timesurface(events: np.ndarray, num_tbins: int, height: int, width: int, delta_t: int,
                              start_ts: int = 0, downsample: int = 0, num_subbins: int = 3) -> torch.Tensor:
    """Time surfaces of ``num_subbins`` equal micro-bins per bin (Metavision's ``multi_channel_timesurface``),
    C = 2 * num_subbins.

    The window holds ``num_tbins * num_subbins`` micro-bins of ``d = delta_t / num_subbins`` us (a float). An event
    at ``r = t - start_ts`` is in micro-bin ``s = r // d`` (float floor division; ``s`` is micro-bin ``s %
    num_subbins`` of bin ``s // num_subbins``) and its value is ``(r - s * d) / d``: the time since the start of
    its **micro-bin** divided by the micro-bin length, in [0, 1). Channel ``2 * (s % num_subbins) + p`` of the bin
    holds the value of the latest such event, 0 where there is none.

    Returns:
        float32 tensor (num_tbins, 2 * num_subbins, height >> downsample, width >> downsample).
    """
    return _time_surface(events, num_tbins, height, width, delta_t, start_ts, downsample, _num_subbins(num_subbins))
