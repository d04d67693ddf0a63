"""Event volumes of B streams built from the simulator's output where it lives.

:func:`event_volume` is ``evframe.preprocess``'s ``event_cube`` (Metavision's definition) computed for B streams at
once with tensor ops (no copy to the CPU): the ``num_tbins`` bins of ``delta_t`` of a call hold ``num_tbins *
depth`` micro bins and every event is shared between its two nearest micro-bin centres with linear (bilinear in
time) weights, across bin edges within the call. With ``split_polarity=False`` (the event-to-video input) ON events
add and OFF events subtract; each update is scaled by ``1 / (max_incr_per_pixel * 4**downsample)`` and clipped to
[-1, 1] in the order of the events, as the CPU function does (tested against it; the sums are formed in another
order here, so values agree to about 1e-6, not to the last bit).

:func:`build_event_volume` picks the fastest path for the events' device: the tensor ops on a GPU, evframe's
compiled ``event_cube`` kernel per stream on the CPU (about twice the tensor ops' throughput there, see
``experiments/benchmarks/bench_e2v.py``).
"""

from __future__ import annotations

import numpy as np
import torch


def _clipped_sums(cells: torch.Tensor, weights: torch.Tensor, size: int, nonnegative: bool) -> torch.Tensor:
    """Final values of ``size`` cells starting at 0 after the updates ``v = clip(v + w, -1, 1)`` applied in the
    order of the arrays (``cells`` int64 and ``weights`` float64, both ``(M,)``). Returns float32 ``(size,)``.

    With ``nonnegative`` weights the result is ``min(sum, 1)``. Otherwise a cell whose updates sum to at most 1 in
    absolute value is never clipped either and gets its plain sum; the other cells need the order:
    ``v -> clip(v + a, lo, hi)`` maps are closed under composition (``g(f(v))`` is ``(a_f + a_g, clip(lo_f + a_g,
    lo_g, hi_g), clip(hi_f + a_g, lo_g, hi_g))``), so their updates, stably sorted by cell, are composed by a
    segmented parallel scan in log2(longest run) steps, in float64.
    """
    acc = torch.zeros(size, dtype=torch.float32, device=cells.device)
    acc.index_add_(0, cells, weights.to(torch.float32))
    if nonnegative:
        return acc.clamp_(max=1.0)
    magnitude = torch.zeros_like(acc).index_add_(0, cells, weights.abs().to(torch.float32))
    over = magnitude > 1.0 - 1e-4  # a margin for the float32 sums: no cell that can clip is missed
    if not bool(over.any()):
        return acc
    risky = over[cells]
    cell, order = torch.sort(cells[risky], stable=True)
    a = weights[risky][order]
    lo = torch.full_like(a, -1.0)
    hi = torch.full_like(a, 1.0)
    longest = int(torch.unique_consecutive(cell, return_counts=True)[1].max())
    step = 1
    while step < longest:
        same = cell[step:] == cell[:-step]  # element i - step is an earlier update of the same cell
        ga, glo, ghi = a[step:], lo[step:], hi[step:]
        na = a[:-step] + ga
        nlo = torch.minimum(torch.maximum(lo[:-step] + ga, glo), ghi)
        nhi = torch.minimum(torch.maximum(hi[:-step] + ga, glo), ghi)
        a = torch.cat([a[:step], torch.where(same, na, ga)])
        lo = torch.cat([lo[:step], torch.where(same, nlo, glo)])
        hi = torch.cat([hi[:step], torch.where(same, nhi, ghi)])
        step *= 2
    last = torch.ones_like(cell, dtype=torch.bool)
    last[:-1] = cell[1:] != cell[:-1]
    # the composed map applied to 0
    acc[cell[last]] = torch.minimum(torch.maximum(a[last], lo[last]), hi[last]).to(torch.float32)
    return acc


def event_volume(events: torch.Tensor, batch_size: int, num_tbins: int, depth: int, height: int, width: int,
                 start_ts: torch.Tensor | int, delta_t: int, max_incr_per_pixel: float = 5.0,
                 split_polarity: bool = False, downsample: int = 0) -> torch.Tensor:
    """Event volumes of B streams (``event_cube`` of each stream's events over its ``num_tbins`` bins).

    Args:
        events: int64 ``(N, 5)`` rows ``(b, x, y, p, t)`` (the :class:`~evframe.sim.EventSimulator` layout); the
            clipped updates of a stream follow the row order (time order for the simulator's output); ``p`` in
            {0, 1}.
        batch_size: B (rows with ``b`` outside ``[0, B)`` are an error).
        num_tbins: T time bins of ``delta_t`` us from ``start_ts``; events outside ``[start, start + T*delta_t)``
            are ignored.
        depth: micro bins per time bin (``num_utbins`` of ``event_cube``).
        height, width: sensor size; the volume is ``(height >> downsample, width >> downsample)``.
        start_ts: ``(B,)`` int64 or one int: start of the first bin of each stream (us).
        delta_t: bin duration (us).
        max_incr_per_pixel, split_polarity, downsample: as ``event_cube``.

    Returns:
        float32 ``(T, B, C, H', W')`` on the events' device, ``C = depth`` (signed, in [-1, 1]) or ``2 * depth``
        (channel ``2 * m + p``, in [0, 1]).
    """
    if events.ndim != 2 or events.shape[1] != 5:
        raise ValueError(f"event_volume: events must be (N, 5) rows (b, x, y, p, t), got {tuple(events.shape)}")
    for name, value in (("batch_size", batch_size), ("num_tbins", num_tbins), ("depth", depth), ("height", height),
                        ("width", width), ("delta_t", delta_t)):
        if int(value) < 1:
            raise ValueError(f"event_volume: {name} must be >= 1, got {value}")
    if downsample < 0 or max_incr_per_pixel <= 0:
        raise ValueError(f"event_volume: downsample must be >= 0 and max_incr_per_pixel > 0, got {downsample}, "
                         f"{max_incr_per_pixel}")
    nbins, total = num_tbins * depth, num_tbins * delta_t
    if total * nbins >= 2**63:
        raise ValueError(f"event_volume: (num_tbins * delta_t) * (num_tbins * depth) must be < 2**63 (int64 time "
                         f"arithmetic), got num_tbins={num_tbins}, delta_t={delta_t}, depth={depth}")
    device = events.device
    out_h, out_w = height >> downsample, width >> downsample
    channels = depth * (2 if split_polarity else 1)
    size = num_tbins * batch_size * channels * out_h * out_w
    if not events.shape[0]:
        return torch.zeros((num_tbins, batch_size, channels, out_h, out_w), dtype=torch.float32, device=device)
    b, x, y, p, t = events.unbind(1)
    if bool(((b < 0) | (b >= batch_size)).any()):
        raise ValueError(f"event_volume: batch index outside [0, {batch_size})")
    if bool(((x < 0) | (x >= width) | (y < 0) | (y >= height) | (p < 0) | (p > 1)).any()):
        raise ValueError(f"event_volume: events outside the {height}x{width} sensor or polarity not in {{0, 1}}")
    start = torch.as_tensor(start_ts, dtype=torch.int64, device=device).reshape(-1)
    rel = t - (start[b] if start.numel() > 1 else start)
    xs, ys = x >> downsample, y >> downsample
    keep = (rel >= 0) & (rel < total) & (xs < out_w) & (ys < out_h)
    if not bool(keep.all()):
        b, xs, ys, p, rel = b[keep], xs[keep], ys[keep], p[keep], rel[keep]
    # the operations of the compiled kernel: int64 product, float64 division, floor
    u = (rel * nbins).to(torch.float64) / total - 0.5
    left_bin = torch.floor(u).to(torch.int64)
    w_left = 1.0 - (u - left_bin)
    w_right = 1.0 - w_left
    if split_polarity:
        per_bin, c = 2, p
    else:
        sign = (2 * p - 1).to(torch.float64)
        per_bin, c = 1, torch.zeros_like(p)
        w_left, w_right = w_left * sign, w_right * sign
    k = 1.0 / (float(max_incr_per_pixel) * 4**downsample)
    plane = out_h * out_w
    pixel = ys * out_w + xs

    def cell_of(micro: torch.Tensor) -> torch.Tensor:
        # micro-bin j is micro-bin j % depth of time bin j // depth; layout (T, B, C, H', W')
        tbin, m = torch.div(micro, depth, rounding_mode="floor"), micro.remainder(depth)
        return ((tbin * batch_size + b) * channels + m * per_bin + c) * plane + pixel

    # updates in event order, left neighbour first (the order of the compiled kernel); a neighbour outside the call
    # gets weight 0 on a valid cell (branch-free; adding 0 changes no value, clipped or not)
    right_bin = left_bin + 1
    w_left = torch.where(left_bin >= 0, w_left * k, 0.0)
    w_right = torch.where(right_bin < nbins, w_right * k, 0.0)
    cells = torch.stack([cell_of(left_bin.clamp(min=0)), cell_of(right_bin.clamp(max=nbins - 1))], 1).reshape(-1)
    weights = torch.stack([w_left, w_right], 1).reshape(-1)
    acc = _clipped_sums(cells, weights, size, nonnegative=split_polarity)
    return acc.view(num_tbins, batch_size, channels, out_h, out_w)


def build_event_volume(events: torch.Tensor, batch_size: int, num_tbins: int, depth: int, height: int, width: int,
                       start_ts: torch.Tensor | int, delta_t: int, max_incr_per_pixel: float = 5.0,
                       split_polarity: bool = False, downsample: int = 0) -> torch.Tensor:
    """:func:`event_volume` (same arguments and result), computed by the compiled CPU kernel for CPU events."""
    if events.device.type != "cpu":
        return event_volume(events, batch_size, num_tbins, depth, height, width, start_ts, delta_t,
                            max_incr_per_pixel, split_polarity, downsample)
    from evframe.io import EVENT_DTYPE
    from evframe.preprocess import compute

    if events.ndim != 2 or events.shape[1] != 5:
        raise ValueError(f"event_volume: events must be (N, 5) rows (b, x, y, p, t), got {tuple(events.shape)}")
    rows = events.numpy()
    starts = np.broadcast_to(torch.as_tensor(start_ts, dtype=torch.int64).reshape(-1).numpy(), (batch_size,))
    if len(rows) and (rows[:, 0].min() < 0 or rows[:, 0].max() >= batch_size):
        raise ValueError(f"event_volume: batch index outside [0, {batch_size})")
    # a stable sort by stream keeps each stream's events in time order (the kernel is fastest on sorted input)
    order = np.argsort(rows[:, 0], kind="stable")
    bounds = np.searchsorted(rows[order, 0], np.arange(batch_size + 1))
    volumes = []
    for b in range(batch_size):
        sel = rows[order[bounds[b]:bounds[b + 1]]]
        ev = np.empty(len(sel), EVENT_DTYPE)
        ev["x"], ev["y"], ev["p"], ev["t"] = sel[:, 1], sel[:, 2], sel[:, 3], sel[:, 4]
        volumes.append(compute("event_cube", ev, num_tbins, height, width, delta_t, start_ts=int(starts[b]),
                               downsample=downsample, num_utbins=depth, split_polarity=split_polarity,
                               max_incr_per_pixel=max_incr_per_pixel))
    return torch.stack(volumes, dim=1)


def signed_event_counts(inputs: torch.Tensor, preprocess: str, kwargs: dict | None = None) -> torch.Tensor:
    """Signed event count per pixel and bin (ON minus OFF, per sensor pixel) read back from input tensors.

    Used by the event-integration baseline. Supports ``event_cube`` (both polarity layouts), ``histo`` and ``diff``
    (their increments are ``1 / max_incr_per_pixel`` per event and per sensor pixel); the clipping of the inputs
    makes this a lower bound in very busy pixels, and an ``event_cube`` event near a bin edge shares its unit
    weight with the neighbouring bin (or loses part of it at the edges of the call).

    Args:
        inputs: ``(T, B, C, H, W)``.
    Returns:
        ``(T, B, 1, H, W)``.
    Raises:
        ValueError: another preprocessing.
    """
    kwargs = dict(kwargs or {})
    scale = float(kwargs.get("max_incr_per_pixel", 5.0))
    if preprocess == "event_cube":
        if kwargs.get("split_polarity", True):
            signed = inputs[:, :, 1::2] - inputs[:, :, 0::2]
        else:
            signed = inputs
    elif preprocess == "histo":
        signed = inputs[:, :, 1:2] - inputs[:, :, 0:1]
    elif preprocess == "diff":
        signed = inputs
    else:
        raise ValueError(f"signed_event_counts: cannot read event counts from preprocess '{preprocess}'; "
                         "supported: event_cube, histo, diff")
    return signed.sum(dim=2, keepdim=True) * scale
