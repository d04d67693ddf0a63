"""Event volumes of B streams built from the simulator's output where it lives.

:func:`event_volume` is ``evframe.preprocess``'s ``event_cube`` computed for B streams at once with tensor ops (no
copy to the CPU): each time bin of ``delta_t`` is split into ``depth`` micro bins and every event is shared
between its two nearest micro-bin centres with linear (bilinear in time) weights. With ``split_polarity=False`` (the
event-to-video input) ON events add and OFF events subtract; values are divided by ``max_incr_per_pixel *
4**downsample`` and clipped, exactly as the CPU function does (tested against it).

:func:`build_event_volume` picks the fastest exact path for the events' device: the tensor ops on a GPU, evframe's
compiled ``event_cube`` kernel per stream on the CPU (about twice the tensor ops' throughput there, see
``experiments/benchmarks/bench_e2v.py``).
"""

from __future__ import annotations

import numpy as np
import torch


def event_volume(events: torch.Tensor, batch_size: int, num_tbins: int, depth: int, height: int, width: int,
                 start_ts: torch.Tensor | int, delta_t: int, max_incr_per_pixel: float = 5.0,
                 split_polarity: bool = False, downsample: int = 0) -> torch.Tensor:
    """Event volumes of B streams.

    Args:
        events: int64 ``(N, 5)`` rows ``(b, x, y, p, t)`` (the :class:`~evframe.sim.EventSimulator` layout), any
            order; ``p`` in {0, 1}.
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
    device = events.device
    out_h, out_w = height >> downsample, width >> downsample
    channels = depth * (2 if split_polarity else 1)
    acc = torch.zeros(num_tbins * batch_size * channels * out_h * out_w, dtype=torch.float32, device=device)
    if events.shape[0]:
        b, x, y, p, t = events.unbind(1)
        if bool(((b < 0) | (b >= batch_size)).any()):
            raise ValueError(f"event_volume: batch index outside [0, {batch_size})")
        if bool(((x < 0) | (x >= width) | (y < 0) | (y >= height) | (p < 0) | (p > 1)).any()):
            raise ValueError(f"event_volume: events outside the {height}x{width} sensor or polarity not in {{0, 1}}")
        start = torch.as_tensor(start_ts, dtype=torch.int64, device=device).reshape(-1)
        rel = t - (start[b] if start.numel() > 1 else start)
        k = torch.div(rel, delta_t, rounding_mode="floor")
        xs, ys = x >> downsample, y >> downsample
        keep = (rel >= 0) & (k < num_tbins) & (xs < out_w) & (ys < out_h)
        if not bool(keep.all()):
            b, xs, ys, p, rel, k = b[keep], xs[keep], ys[keep], p[keep], rel[keep], k[keep]
        # position in micro-bin units relative to the first centre; the event lies between centres m0 and m0 + 1.
        # float32 is exact enough: tau < delta_t < 2**24 and the weights are rounded to float32 anyway
        pos = (rel - k * delta_t).to(torch.float32) * (depth / delta_t) - 0.5
        m0f = torch.floor(pos)
        w_right = pos - m0f
        m0 = m0f.to(torch.int64)
        # branch-free edges (as the compiled kernel): a missing neighbour gets weight 0 on a valid channel
        w_left = torch.where(m0 >= 0, 1.0 - w_right, 0.0)
        w_right = torch.where(m0 + 1 < depth, w_right, 0.0)
        m_left, m_right = m0.clamp(min=0), (m0 + 1).clamp(max=depth - 1)
        if split_polarity:
            m_left, m_right = 2 * m_left + p, 2 * m_right + p
        else:
            sign = (2 * p - 1).to(torch.float32)
            w_left, w_right = w_left * sign, w_right * sign
        plane = out_h * out_w
        base = (k * batch_size + b) * channels * plane + ys * out_w + xs
        # one scatter of both neighbours
        acc.index_add_(0, torch.cat([base + m_left * plane, base + m_right * plane]), torch.cat([w_left, w_right]))
    acc = acc.view(num_tbins, batch_size, channels, out_h, out_w)
    acc = acc / (float(max_incr_per_pixel) * 4 ** downsample)
    return acc.clamp_(0.0 if split_polarity else -1.0, 1.0)


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
    makes this a lower bound in very busy pixels.

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
