"""Compiled single-pass loops over events, shared by the built-in preprocessing functions.

Every kernel takes the four field views of an EVENT_DTYPE array (``x``, ``y`` uint16, ``p`` int16, ``t`` int64),
accumulates into a zeroed array ``acc`` of shape ``(num_tbins, C, Ho, Wo)`` and returns the index of the first
event inside the time window whose coordinates or polarity are invalid (``-1`` if none), so the caller can raise a
precise error without a second pass over the events.

Why the loops look like this:
  * time bin: events are normally sorted, so the bin ``[lo, hi)`` of the previous event is tried first and the
    integer division only happens when an event leaves it. Unsorted input is still handled exactly (the bin is
    recomputed for any event outside ``[lo, hi)``).
  * columns/rows beyond ``(Wo << shift, Ho << shift)`` exist when the sensor size is not a multiple of
    ``2**shift``: those events are valid but have no output pixel and are dropped.
  * histograms count in the smallest integer type that can hold the clip threshold and saturate there, so the
    accumulator of one time bin stays small enough for the L2 cache (4x smaller than float32 for uint8); the
    float conversion, scaling and clipping happen once per cell in :func:`scale_clip`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_NO_ERROR = -1
_BATCH = 512  # events per batch in the two-phase kernels (index arrays stay in L1)


@njit(inline="always")
def _bin(ti, start, dt, nb, b, lo, hi):
    """(bin, lo, hi, inside): the time bin of ``ti`` given the current bin ``b = [lo, hi)``."""
    if ti >= lo and ti < hi:
        return b, lo, hi, True
    r = ti - start
    if r < 0:
        return b, lo, hi, False
    nbin = r // dt
    if nbin >= nb:
        return b, lo, hi, False
    lo = start + nbin * dt
    return nbin, lo, lo + dt, True


@njit(inline="always")
def _pixel_status(xi, yi, pi, x_lim, y_lim, width, height):
    """0: usable; 1: valid but outside the downsampled grid (dropped); 2: invalid event."""
    if xi < x_lim and yi < y_lim and pi >= 0 and pi <= 1:
        return 0
    if xi >= width or yi >= height or pi < 0 or pi > 1:
        return 2
    return 1


@njit(cache=True, nogil=True)
def polarity_counts(x, y, p, t, acc, cap, start, dt, shift, width, height):
    """acc[bin, p, y >> shift, x >> shift] += 1, saturating at ``cap``. acc: (nb, 2, Ho, Wo) integer array."""
    nb, _, ho, wo = acc.shape
    x_lim = min(width, wo << shift)
    y_lim = min(height, ho << shift)
    b, lo, hi = 0, start, start + dt
    for i in range(t.shape[0]):
        b, lo, hi, inside = _bin(t[i], start, dt, nb, b, lo, hi)
        if not inside:
            continue
        xi, yi, pi = x[i], y[i], p[i]
        status = _pixel_status(xi, yi, pi, x_lim, y_lim, width, height)
        if status != 0:
            if status == 2:
                return i
            continue
        ys, xs = yi >> shift, xi >> shift
        v = acc[b, pi, ys, xs]
        acc[b, pi, ys, xs] = v + (v < cap)  # branch-free saturation: whether a pixel is full is unpredictable
    return _NO_ERROR


@njit(cache=True, nogil=True)
def signed_counts(x, y, p, t, acc, start, dt, shift, width, height):
    """acc[bin, 0, y >> shift, x >> shift] += +1 for ON (p=1), -1 for OFF (p=0). acc: (nb, 1, Ho, Wo) int32.

    No saturation: a signed sum is not monotonic, so clipping must wait for the total.
    """
    nb, _, ho, wo = acc.shape
    x_lim = min(width, wo << shift)
    y_lim = min(height, ho << shift)
    b, lo, hi = 0, start, start + dt
    for i in range(t.shape[0]):
        b, lo, hi, inside = _bin(t[i], start, dt, nb, b, lo, hi)
        if not inside:
            continue
        xi, yi, pi = x[i], y[i], p[i]
        status = _pixel_status(xi, yi, pi, x_lim, y_lim, width, height)
        if status != 0:
            if status == 2:
                return i
            continue
        acc[b, 0, yi >> shift, xi >> shift] += 2 * pi - 1
    return _NO_ERROR


@njit(cache=True, nogil=True)
def event_cube(x, y, p, t, acc, num_utbins, split_polarity, start, dt, shift, width, height):
    """Linear (triangle) time weights to the two nearest micro-bins of the event's time bin.

    Micro-bin m of a bin of length dt has its centre at (m + 0.5) * dt / num_utbins; with tau the event time
    relative to the bin start and u = dt / num_utbins, its weight is max(0, 1 - |tau - centre_m| / u). Only
    micro-bins of the event's own bin receive weight, so events in the first or last half micro-bin lose part of
    it (an event at tau = 0 adds 0.5 to micro-bin 0 and nothing elsewhere).

    acc: C-contiguous (nb, 2 * num_utbins, Ho, Wo) float32, channel 2 * m + p (split_polarity), or
    (nb, num_utbins, Ho, Wo) with +weight for ON and -weight for OFF.

    Events go in batches: first their two cell indices and weights are computed into small L1-resident arrays,
    then the scattered read-modify-writes run in tight loops, so many cache misses are in flight at once (twice
    the throughput of one loop doing both on a 480x640 sensor, where the accumulator does not fit in L2).
    """
    nb, channels, ho, wo = acc.shape
    flat = acc.reshape(-1)
    plane = ho * wo
    x_lim = min(width, wo << shift)
    y_lim = min(height, ho << shift)
    b, lo, hi = 0, start, start + dt
    per_us = num_utbins / dt
    zero = np.float32(0.0)
    cell_left = np.empty(_BATCH, np.int64)
    cell_right = np.empty(_BATCH, np.int64)
    weight_left = np.empty(_BATCH, np.float32)
    weight_right = np.empty(_BATCH, np.float32)
    n = t.shape[0]
    i = 0
    while i < n:
        k = 0
        batch_bin = -1
        while k < _BATCH and i < n:
            ti = t[i]
            b, lo, hi, inside = _bin(ti, start, dt, nb, b, lo, hi)
            if not inside:
                i += 1
                continue
            # a batch never spans two bins, so the order of the float additions inside a bin (hence the result,
            # to the last bit) does not depend on which events precede the bin: computing a recording in chunks of
            # bins gives exactly the same tensors as computing it at once
            if b != batch_bin:
                if k > 0:
                    break
                batch_bin = b
            xi, yi, pi = x[i], y[i], p[i]
            status = _pixel_status(xi, yi, pi, x_lim, y_lim, width, height)
            if status != 0:
                if status == 2:
                    return i
                i += 1
                continue
            # pos - 0.5 is the event time in micro-bin units relative to the first centre; shifting by +1 keeps pos
            # positive so int() is floor(): the event lies between centres j - 1 and j.
            pos = (ti - lo) * per_us + 0.5
            j = min(int(pos), num_utbins)
            w_right = np.float32(pos - j)
            w_left = np.float32(1.0) - w_right
            m_left = j - 1
            m_right = j
            # branch-free edges: a missing neighbour gets weight 0 on a valid channel
            if m_left < 0:
                m_left = 0
                w_left = zero
            if m_right >= num_utbins:
                m_right = num_utbins - 1
                w_right = zero
            if split_polarity:
                m_left = 2 * m_left + pi
                m_right = 2 * m_right + pi
            else:
                sign = np.float32(2 * pi - 1)
                w_left *= sign
                w_right *= sign
            pixel = (yi >> shift) * wo + (xi >> shift)
            cell_left[k] = (b * channels + m_left) * plane + pixel
            cell_right[k] = (b * channels + m_right) * plane + pixel
            weight_left[k] = w_left
            weight_right[k] = w_right
            k += 1
            i += 1
        # two separate loops: each is a stream of independent scattered adds
        for q in range(k):
            flat[cell_left[q]] += weight_left[q]
        for q in range(k):
            flat[cell_right[q]] += weight_right[q]
    return _NO_ERROR


@njit(cache=True, nogil=True)
def time_surface(x, y, p, t, acc, num_subbins, start, dt, shift, width, height):
    """acc[bin, 2 * s + p, y, x] = max over events of (t - bin start) / dt, s = sub-bin of the event.

    acc: C-contiguous (nb, 2 * num_subbins, Ho, Wo) float32 of zeros. The maximum (not "the last written") keeps
    unsorted input correct; for sorted input it is the most recent event. Batched like :func:`event_cube`.
    """
    nb, channels, ho, wo = acc.shape
    flat = acc.reshape(-1)
    plane = ho * wo
    x_lim = min(width, wo << shift)
    y_lim = min(height, ho << shift)
    b, lo, hi = 0, start, start + dt
    inv_dt = 1.0 / dt
    cells = np.empty(_BATCH, np.int64)
    values = np.empty(_BATCH, np.float32)
    n = t.shape[0]
    i = 0
    while i < n:
        k = 0
        while k < _BATCH and i < n:
            ti = t[i]
            b, lo, hi, inside = _bin(ti, start, dt, nb, b, lo, hi)
            if not inside:
                i += 1
                continue
            xi, yi, pi = x[i], y[i], p[i]
            status = _pixel_status(xi, yi, pi, x_lim, y_lim, width, height)
            if status != 0:
                if status == 2:
                    return i
                i += 1
                continue
            tau = ti - lo
            sub = 0
            if num_subbins > 1:
                sub = (tau * num_subbins) // dt  # exact integer sub-bin edges
            cells[k] = (b * channels + 2 * sub + pi) * plane + (yi >> shift) * wo + (xi >> shift)
            values[k] = np.float32(tau * inv_dt)
            k += 1
            i += 1
        for q in range(k):
            flat[cells[q]] = max(flat[cells[q]], values[q])
    return _NO_ERROR


@njit(cache=True, nogil=True)
def scale_clip(acc, out, scale, low, high):
    """out[i] = clip(acc[i] * scale, low, high) over 1-D views (acc integer or float, out float32; may alias)."""
    for i in range(acc.shape[0]):
        v = acc[i] * scale
        if v > high:
            v = high
        elif v < low:
            v = low
        out[i] = v
