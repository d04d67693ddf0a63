"""Hand-built events and Metavision's algorithms as plain Python loops, shared by the preprocess tests."""

from __future__ import annotations

import math

import numpy as np

from evframe.io.dtypes import EVENT_DTYPE

# A 3 x 4 (height x width) sensor, 2 bins of 100 us.
HEIGHT, WIDTH, DELTA_T, NUM_TBINS = 3, 4, 100, 2


def make_events(rows: list[tuple[int, int, int, int]]) -> np.ndarray:
    """(x, y, p, t) tuples -> EVENT_DTYPE array."""
    events = np.zeros(len(rows), dtype=EVENT_DTYPE)
    for i, (x, y, p, t) in enumerate(rows):
        events[i] = (x, y, p, t)
    return events


def random_events(n: int, height: int, width: int, t_max: int, seed: int = 0, t_min: int = 0) -> np.ndarray:
    """n uniformly random events, sorted by t in [t_min, t_max)."""
    rng = np.random.default_rng(seed)
    events = np.zeros(n, dtype=EVENT_DTYPE)
    events["x"] = rng.integers(0, width, n)
    events["y"] = rng.integers(0, height, n)
    events["p"] = rng.integers(0, 2, n)
    events["t"] = np.sort(rng.integers(t_min, t_max, n))
    return events


def metavision_loops(name: str, events: np.ndarray, num_tbins: int, height: int, width: int, delta_t: int,
                     start_ts: int = 0, downsample: int = 0, **kw) -> np.ndarray:
    """Metavision ML's algorithms as plain Python loops over events sorted by t (the specification the compiled
    functions must meet to the last bit): the events of the window with ``t - start_ts`` as timestamps, a float32
    output array, ``total_tbins_delta_t = num_tbins * delta_t``, time bins found by Metavision's advancing
    threshold (it assumes sorted events), each update ``float32(float64 value + increment)``. Events whose
    downsampled pixel lies outside the output grid are dropped (evframe's convention for sensor sizes that are not
    a multiple of ``2**downsample``).

    Returns:
        float32 (num_tbins, C, height >> downsample, width >> downsample).
    """
    ho, wo = height >> downsample, width >> downsample
    total = num_tbins * delta_t
    rows = []
    columns = (events[f].tolist() for f in "xypt")
    for x, y, p, t in zip(*columns, strict=True):
        if start_ts <= t < start_ts + total and (x >> downsample) < wo and (y >> downsample) < ho:
            rows.append((x >> downsample, y >> downsample, p, t - start_ts))
    k = 1.0 / (kw.get("max_incr_per_pixel", 5.0) * 4**downsample)

    if name in ("histo", "diff"):
        out = np.zeros((num_tbins, 2 if name == "histo" else 1, ho, wo), np.float32)
        dt = float(total) / num_tbins
        ti, threshold = 0, math.ceil(dt)
        for x, y, p, t in rows:
            if t >= threshold and ti + 1 < num_tbins:
                ti = int(t // dt)
                threshold = math.ceil((ti + 1) * dt)
            c = p if name == "histo" else 0
            v = float(out[ti, c, y, x])
            if name == "histo" or p == 1:
                out[ti, c, y, x] = v + k if v + k <= 1 else 1.0
            else:
                out[ti, c, y, x] = v - k if v - k >= -1 else -1.0
        return out

    if name == "event_cube":
        nu, split = kw.get("num_utbins", 3), kw.get("split_polarity", True)
        nbins = num_tbins * nu
        cube = np.zeros((nbins, 2 if split else 1, ho, wo), np.float32)
        for x, y, p, t in rows:
            u = t * nbins / total - 0.5
            left = math.floor(u)
            w_left = max(0.0, 1 - abs(left - u))
            w_right = 1 - w_left
            c = p
            if not split:
                sign = 1 if p else -1
                w_left, w_right, c = w_left * sign, w_right * sign, 0
            for b, w in ((left, w_left), (left + 1, w_right)):
                if 0 <= b < nbins:
                    cube[b, c, y, x] = max(-1.0, min(float(cube[b, c, y, x]) + w * k, 1.0))
        return cube.reshape(num_tbins, -1, ho, wo)

    if name in ("timesurface", "multi_channel_timesurface"):
        ns = kw.get("num_subbins", 3) if name == "multi_channel_timesurface" else 1
        nbins = num_tbins * ns
        surface = np.zeros((nbins, 2, ho, wo), np.float32)
        dt = float(total) / nbins
        tbin, threshold = 0, math.ceil(dt)
        for x, y, p, t in rows:
            if t >= threshold and tbin + 1 < nbins:
                tbin = int(t // dt)
                threshold = math.ceil((tbin + 1) * dt)
            value = t - tbin * dt
            if 0 <= value < dt:
                surface[tbin, p, y, x] = value / dt
        return surface.reshape(num_tbins, -1, ho, wo)
    raise AssertionError(name)
