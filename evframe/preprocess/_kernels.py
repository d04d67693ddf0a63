"""Compiled single-pass loops over events, shared by the built-in preprocessing functions.

Every kernel takes the four field views of an EVENT_DTYPE array (``x``, ``y`` uint16, ``p`` int16, ``t`` int64),
accumulates into a zeroed array ``acc`` of shape ``(num_tbins, C, Ho, Wo)`` and returns the index of the first
event inside the time window ``[start, end)`` whose coordinates or polarity are invalid (``-1`` if none), so the
caller can raise a precise error without a second pass over the events.

The arithmetic follows Metavision ML's numba loops operation by operation (same float64 expressions, same float32
rounding of the stored values, same order of the clipped updates), so the tensors are equal to Metavision's to the
last bit for events sorted by time, which is the order Metavision requires. Times are taken relative to ``start``
(Metavision subtracts the window start from the timestamps before calling its functions).

Why the loops look like this:
  * window: ``t < start`` and ``t >= end`` are tested before ``t - start`` is formed, so no int64 arithmetic can
    overflow (the caller checked that ``end`` and ``end - start`` fit in int64).
  * time bin: events are normally sorted, so the bin ``[lo, hi)`` of the previous event is tried first and the
    integer division only happens when an event leaves it; unsorted input gets the same bins.
  * columns/rows beyond ``(Wo << shift, Ho << shift)`` exist when the sensor size is not a multiple of
    ``2**shift``: those events are valid but have no output pixel and are dropped.
  * histograms count in the smallest integer type that can hold the count at which the value stops changing, so
    the accumulator of one time bin stays small enough for the L2 cache; :func:`lookup` then turns counts into the
    values Metavision's clipped float32 additions reach after that many events.
  * the time surfaces keep the integer range of times of the current micro-bin, so that the exact but slow float
    floor division (Metavision's ``t // d``) runs about once per micro-bin for sorted input.
  * the event cube and time surfaces go in batches: the cell indices and values of up to ``_BATCH`` events are
    computed first into small L1-resident arrays, then the scattered read-modify-writes run in a tight loop (in
    event order), so many cache misses are in flight at once.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_NO_ERROR = -1
_BATCH = 512  # events per batch in the two-phase kernels (index arrays stay in L1)


@njit(inline="always")
def _bin(ti, start, end, dt, b, lo, hi):
    """(bin, lo, hi, inside): the time bin of ``ti`` given the current bin ``b = [lo, hi)``."""
    if ti >= lo and ti < hi:
        return b, lo, hi, True
    if ti < start or ti >= end:
        return b, lo, hi, False
    nbin = (ti - start) // dt
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
def polarity_counts(x, y, p, t, acc, cap, start, end, dt, shift, width, height):
    """acc[bin, p, y >> shift, x >> shift] += 1, saturating at ``cap``. acc: (nb, 2, Ho, Wo) integer array."""
    nb, _, ho, wo = acc.shape
    x_lim = min(width, wo << shift)
    y_lim = min(height, ho << shift)
    b, lo, hi = 0, start, start + dt
    for i in range(t.shape[0]):
        b, lo, hi, inside = _bin(t[i], start, end, dt, b, lo, hi)
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
def signed_counts(x, y, p, t, acc, start, end, dt, shift, width, height):
    """acc[bin, 0, y >> shift, x >> shift] += +1 for ON (p=1), -1 for OFF (p=0). acc: (nb, 1, Ho, Wo) int32.

    No saturation: the caller clips the totals.
    """
    nb, _, ho, wo = acc.shape
    x_lim = min(width, wo << shift)
    y_lim = min(height, ho << shift)
    b, lo, hi = 0, start, start + dt
    for i in range(t.shape[0]):
        b, lo, hi, inside = _bin(t[i], start, end, dt, b, lo, hi)
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
def clipped_increments(x, y, p, t, acc, k, split_polarity, start, end, dt, shift, width, height):
    """Metavision's histogram / diff loop: one clipped float32 update per event, in event order.

    split_polarity (histo): acc (nb, 2, Ho, Wo), channel p, ``v = v + k`` if that stays <= 1, else ``v = 1``.
    Otherwise (diff): acc (nb, 1, Ho, Wo); ON as above; OFF ``v = v - k`` if that stays >= -1, else ``v = -1``.
    ``v + k`` is evaluated in float64 and stored as float32, as Metavision does into its float32 arrays.
    """
    nb, _, ho, wo = acc.shape
    x_lim = min(width, wo << shift)
    y_lim = min(height, ho << shift)
    split = 1 if split_polarity else 0
    steps = np.empty(2, np.float64)
    steps[0] = k if split_polarity else -k
    steps[1] = k
    b, lo, hi = 0, start, start + dt
    for i in range(t.shape[0]):
        b, lo, hi, inside = _bin(t[i], start, end, dt, b, lo, hi)
        if not inside:
            continue
        xi, yi, pi = x[i], y[i], p[i]
        status = _pixel_status(xi, yi, pi, x_lim, y_lim, width, height)
        if status != 0:
            if status == 2:
                return i
            continue
        ys, xs = yi >> shift, xi >> shift
        # branch-free (the polarity of the next event is unpredictable): for ON, clip(v + k, -1, 1) is "v + k if
        # that is <= 1 else 1" since v >= -1; for OFF, clip(v - k, -1, 1) is "v - k if that is >= -1 else -1"
        c = pi * split
        v = np.float64(acc[b, c, ys, xs]) + steps[pi]
        acc[b, c, ys, xs] = min(max(v, -1.0), 1.0)
    return _NO_ERROR


@njit(cache=True, nogil=True)
def saturation_table(k, limit):
    """Values of a cell after n = 0, 1, ... events of :func:`clipped_increments` (split_polarity), float32.

    The sequence stops at the first n whose next value is the same (1.0, or a float32 value that ``+ k`` no longer
    changes): counts saturate there. Returns ``(table, complete)``; ``complete`` is False when ``limit`` entries
    were reached first (the caller then runs :func:`clipped_increments` itself).
    """
    table = np.empty(limit + 1, np.float32)
    table[0] = 0.0
    v = np.float32(0.0)
    for n in range(limit):
        s = np.float64(v) + k
        nxt = np.float32(s) if s <= 1.0 else np.float32(1.0)
        if nxt == v:
            return table[:n + 1], True
        table[n + 1] = nxt
        v = nxt
    return table, False


@njit(cache=True, nogil=True)
def lookup(counts, table, out):
    """out[i] = table[counts[i]] over 1-D views (counts never exceed ``len(table) - 1``)."""
    for i in range(counts.shape[0]):
        out[i] = table[counts[i]]


@njit(cache=True, nogil=True)
def event_cube(x, y, p, t, acc, num_utbins, split_polarity, k, start, end, shift, width, height):
    """Metavision's event cube over the whole window ``[start, end)`` (all time bins of the call).

    With ``nbins = nb * num_utbins`` micro-bins of length ``(end - start) / nbins`` and ``r = t - start``, an event
    has ``u = r * nbins / (end - start) - 0.5`` (int64 product, float64 division) and ``l = floor(u)``; micro-bin
    ``l`` receives ``(1 - (u - l)) * s * k`` and micro-bin ``l + 1`` the rest of the unit weight times ``s * k``,
    each only if it exists (``0 <= bin < nbins``), so an event near a bin edge also feeds the neighbouring bin.
    ``s`` is 1, or -1 for OFF events without polarity split. Each update is ``clip(v + w, -1, 1)`` in float64,
    stored as float32, in event order (left then right neighbour of each event).

    acc: C-contiguous float32 zeros, (nb, 2 * num_utbins, Ho, Wo) with channel ``2 * m + p`` (split_polarity) or
    (nb, num_utbins, Ho, Wo); micro-bin ``l`` is channel block ``l % num_utbins`` of bin ``l // num_utbins``,
    i.e. the array seen as (nbins, 2 or 1, Ho, Wo).
    """
    nb, channels, ho, wo = acc.shape
    flat = acc.reshape(-1)
    plane = ho * wo
    x_lim = min(width, wo << shift)
    y_lim = min(height, ho << shift)
    nbins = nb * num_utbins
    total = end - start
    per_bin = 2 if split_polarity else 1
    cells = np.empty(2 * _BATCH, np.int64)
    weights = np.empty(2 * _BATCH, np.float64)
    n = t.shape[0]
    i = 0
    while i < n:
        q = 0
        while q < 2 * _BATCH - 1 and i < n:
            ti = t[i]
            if ti < start or ti >= end:
                i += 1
                continue
            xi, yi, pi = x[i], y[i], p[i]
            status = _pixel_status(xi, yi, pi, x_lim, y_lim, width, height)
            if status != 0:
                if status == 2:
                    return i
                i += 1
                continue
            u = ((ti - start) * nbins) / total - 0.5
            left_bin = math.floor(u)
            w_left = 1.0 - (u - left_bin)
            w_right = (1.0 - w_left) * k
            w_left = w_left * k
            c = pi
            if not split_polarity:
                c = 0
                if pi == 0:  # Metavision multiplies the weight by -1 before k: the same value
                    w_left = -w_left
                    w_right = -w_right
            pixel = (yi >> shift) * wo + (xi >> shift)
            if left_bin >= 0:
                cells[q] = (left_bin * per_bin + c) * plane + pixel
                weights[q] = w_left
                q += 1
            if left_bin + 1 < nbins:
                cells[q] = ((left_bin + 1) * per_bin + c) * plane + pixel
                weights[q] = w_right
                q += 1
            i += 1
        # the clipped updates, in event order: the clipping makes the result depend on it
        for j in range(q):
            cell = cells[j]
            flat[cell] = min(max(np.float64(flat[cell]) + weights[j], -1.0), 1.0)
    return _NO_ERROR


@njit(inline="always")
def _floor_div(r, d):
    """``int(r // d)`` for an int64 ``r >= 0`` and a float64 ``d > 0``: numba's float ``//`` (Python's, exact:
    the floor of the real quotient), which goes through ``fmod`` and is slow, runs only when the rounded quotient
    ``r / d`` is within its rounding error of an integer; otherwise the floor of the rounded quotient is the same."""
    x = r / d
    q = math.floor(x)
    frac = x - q
    margin = (x + 1.0) * 4.5e-16  # > the rounding error of r / d (half an ulp of x)
    if frac > margin and frac < 1.0 - margin:
        return q
    return int(r // d)


@njit(inline="always")
def _first_r_of(s, d):
    """The smallest int ``r >= 0`` with ``r // d >= s`` (exact), found next to ``ceil(s * d)``."""
    if s <= 0:
        return 0
    c = int(math.ceil(s * d))
    while _floor_div(c, d) < s:
        c += 1
    while c > 0 and _floor_div(c - 1, d) >= s:
        c -= 1
    return c


@njit(cache=True, nogil=True)
def _micro_bin(r, d, nbins, total):
    """(s, lo, hi, s * d): micro-bin ``s = min(r // d, nbins - 1)`` of time ``r`` and the int range ``[lo, hi)`` of
    the times in it (``hi = total`` for the last one). Kept out of line: it runs about once per micro-bin."""
    s = min(_floor_div(r, d), nbins - 1)
    hi = _first_r_of(s + 1, d) if s < nbins - 1 else total
    return s, _first_r_of(s, d), hi, s * d


@njit(cache=True, nogil=True)
def time_surface(x, y, p, t, acc, num_subbins, start, end, shift, width, height):
    """Metavision's (multi-channel) time surface: time since the start of the event's micro-bin / its length.

    The window ``[start, end)`` holds ``nbins = nb * num_subbins`` micro-bins of length ``d = (end - start) /
    nbins`` (float64). With ``r = t - start``: micro-bin ``s = min(r // d, nbins - 1)``, value ``(r - s * d) /
    d`` stored as float32 (events whose value is not in ``[0, d)`` are skipped, as Metavision does) into channel
    ``2 * (s % num_subbins) + p`` of bin ``s // num_subbins``. A cell keeps its largest value, which is the value of
    its latest event (the one Metavision writes last for sorted events); 0 where there is none.

    acc: C-contiguous (nb, 2 * num_subbins, Ho, Wo) float32 of zeros. Batched like :func:`event_cube`.
    """
    nb, channels, ho, wo = acc.shape
    flat = acc.reshape(-1)
    plane = ho * wo
    x_lim = min(width, wo << shift)
    y_lim = min(height, ho << shift)
    nbins = nb * num_subbins
    total = end - start
    d = float(total) / nbins
    cells = np.empty(_BATCH, np.int64)
    values = np.empty(_BATCH, np.float32)
    # the times [lo, hi) of the current micro-bin s (empty at first); base = s * d
    s, lo, hi, base = 0, start + 1, start, 0.0
    n = t.shape[0]
    i = 0
    while i < n:
        q = 0
        while q < _BATCH and i < n:
            ti = t[i]
            if ti < lo or ti >= hi:
                if ti < start or ti >= end:
                    i += 1
                    continue
                s, lo_r, hi_r, base = _micro_bin(ti - start, d, nbins, total)
                lo, hi = start + lo_r, start + hi_r
            xi, yi, pi = x[i], y[i], p[i]
            status = _pixel_status(xi, yi, pi, x_lim, y_lim, width, height)
            if status != 0:
                if status == 2:
                    return i
                i += 1
                continue
            i += 1
            value = (ti - start) - base
            if not (value >= 0 and value < d):
                continue
            cells[q] = (2 * s + pi) * plane + (yi >> shift) * wo + (xi >> shift)
            values[q] = np.float32(value / d)
            q += 1
        for j in range(q):
            flat[cells[j]] = max(flat[cells[j]], values[j])
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
