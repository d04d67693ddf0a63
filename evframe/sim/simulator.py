"""Batched event-camera simulator (ESIM-style) in torch, running on CPU or CUDA.

Every pixel keeps a reference log intensity. Between two consecutive frames the log intensity is assumed to
change linearly in time; each crossing of ``reference ± k * threshold`` emits one event, timestamped by linear
interpolation between the two frame times, and the reference moves by the crossed thresholds.
Sensor non-idealities (per-pixel threshold mismatch, refractory period, pixel bandwidth, leak and shot noise)
follow the usual v2e / Metavision GPU simulator conventions, in simplified form.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

#: Minimum contrast threshold after randomisation (log units): a zero or negative threshold would emit
#: infinitely many events.
MIN_THRESHOLD = 0.01


class EventSimulator:
    """Converts batches of frames into events, keeping per-pixel state between calls.

    Args:
        height, width: sensor size in pixels.
        batch_size: number of independent videos simulated side by side (B).
        contrast_threshold_pos, contrast_threshold_neg: mean ON / OFF thresholds in log-intensity units.
        threshold_sigma: standard deviation of the per-pixel threshold mismatch (drawn once, fixed for the
            simulator's life, clamped to at least ``MIN_THRESHOLD``).
        refractory_period_us: after an event, a pixel cannot emit another one for this long (events falling
            inside are dropped; the reference still moves, so no burst follows the refractory period).
        cutoff_hz: pixel bandwidth; if > 0 the log intensity goes through a first-order low-pass filter
            whose cutoff scales with the pixel's intensity (dark pixels are slower, as in v2e).
        leak_rate_hz: rate at which the reference drifts down by one ON threshold, producing spontaneous ON
            events even in a static scene (phase randomised per pixel).
        shot_noise_rate_hz: Poisson rate per pixel of random ON/OFF noise events (independent of the signal;
            they do not move the reference).
            ``refractory_period_us``, ``leak_rate_hz`` and ``shot_noise_rate_hz`` are one value for the whole batch
            or a sequence of B values, one per video (per-clip randomised sensors, as GPUEBSIM draws them).
        log_eps: intensities map to ``log(I + log_eps)``; keeps black pixels finite.
        seed: seeds thresholds, leak phases and noise (same seed, same inputs -> same events).
        device: torch device of every state tensor and of the output.

    Output of :meth:`sim`: int64 tensor ``(N, 5)`` with columns ``(b, x, y, p, t)``, polarity ``p`` in
    ``{0, 1}`` (1 = ON, intensity increased), ``t`` in microseconds, sorted by ``b`` then ``t`` (stable).
    """

    def __init__(self, height: int, width: int, batch_size: int = 1, contrast_threshold_pos: float = 0.2,
                 contrast_threshold_neg: float = 0.2, threshold_sigma: float = 0.03,
                 refractory_period_us: float | Sequence[float] = 0, cutoff_hz: float = 0,
                 leak_rate_hz: float | Sequence[float] = 0, shot_noise_rate_hz: float | Sequence[float] = 0,
                 log_eps: float = 1e-3, seed: int = 0,
                 device: str | torch.device = "cpu") -> None:
        for name, value in (("height", height), ("width", width), ("batch_size", batch_size)):
            if int(value) <= 0:
                raise ValueError(f"EventSimulator: {name} must be a positive integer, got {value!r}")
        for name, value in (("contrast_threshold_pos", contrast_threshold_pos),
                            ("contrast_threshold_neg", contrast_threshold_neg), ("log_eps", log_eps)):
            if not value > 0:
                raise ValueError(f"EventSimulator: {name} must be > 0, got {value!r}")
        for name, value in (("threshold_sigma", threshold_sigma), ("cutoff_hz", cutoff_hz)):
            if value < 0:
                raise ValueError(f"EventSimulator: {name} must be >= 0, got {value!r}")
        self.height, self.width, self.batch_size = int(height), int(width), int(batch_size)
        self.device = torch.device(device)
        # (B,) tensors on the device; the flags skip the work of a non-ideality no batch element has
        self.refractory_period_us = self._per_element("refractory_period_us", refractory_period_us)
        self.leak_rate_hz = self._per_element("leak_rate_hz", leak_rate_hz)
        self.shot_noise_rate_hz = self._per_element("shot_noise_rate_hz", shot_noise_rate_hz)
        self._has_refractory = bool((self.refractory_period_us > 0).any())
        self._has_leak = bool((self.leak_rate_hz > 0).any())
        self._has_shot_noise = bool((self.shot_noise_rate_hz > 0).any())
        self.cutoff_hz = float(cutoff_hz)
        self.log_eps = float(log_eps)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(int(seed))

        shape = (self.batch_size, self.height, self.width)
        self.threshold_pos = self._random_thresholds(contrast_threshold_pos, threshold_sigma, shape)
        self.threshold_neg = self._random_thresholds(contrast_threshold_neg, threshold_sigma, shape)
        # state: reference level, last (filtered) log intensity, last frame time, last event time per pixel
        self.log_ref = torch.zeros(shape, dtype=torch.float32, device=self.device)
        self.log_prev = torch.zeros(shape, dtype=torch.float32, device=self.device)
        self.t_prev = torch.zeros(self.batch_size, dtype=torch.int64, device=self.device)
        self.initialized = torch.zeros(self.batch_size, dtype=torch.bool, device=self.device)
        self.last_event_t = torch.full(shape, torch.iinfo(torch.int64).min // 2, dtype=torch.int64,
                                       device=self.device)

    def _per_element(self, name: str, value: float | Sequence[float]) -> torch.Tensor:
        """One float64 value per batch element from a number or a sequence of ``batch_size`` numbers, all >= 0."""
        values = torch.as_tensor(value, dtype=torch.float64).reshape(-1)
        if values.numel() == 1:
            values = values.expand(self.batch_size)
        if values.numel() != self.batch_size:
            raise ValueError(f"EventSimulator: {name} must be one number or batch_size={self.batch_size} numbers, "
                             f"got {values.numel()}")
        if bool((values < 0).any()) or not bool(torch.isfinite(values).all()):
            raise ValueError(f"EventSimulator: {name} must be >= 0 and finite, got {values.tolist()}")
        return values.to(self.device).contiguous()

    def _random_thresholds(self, mean: float, sigma: float, shape: tuple[int, int, int]) -> torch.Tensor:
        noise = torch.randn(shape, generator=self.generator, device=self.device)
        return (mean + sigma * noise).clamp_(min=MIN_THRESHOLD)

    def reset(self, mask: torch.Tensor | None = None) -> None:
        """Forgets the state of the batch elements where ``mask`` (B,) is True (all if None).

        Their next frame only re-initialises the reference (no events). Thresholds are kept: they belong to
        the sensor, not to the video.
        """
        if mask is None:
            mask = torch.ones(self.batch_size, dtype=torch.bool, device=self.device)
        mask = torch.as_tensor(mask, device=self.device).reshape(-1).bool()
        if mask.numel() != self.batch_size:
            raise ValueError(f"EventSimulator.reset: mask must have batch_size={self.batch_size} elements, "
                             f"got {mask.numel()}")
        self.initialized &= ~mask
        self.last_event_t[mask] = torch.iinfo(torch.int64).min // 2

    def _to_log(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Validates (B, H, W) frames; returns (intensity in [0, 1], log intensity), float32 on device."""
        images = torch.as_tensor(images)
        if images.ndim == 2 and self.batch_size == 1:
            images = images[None]
        if tuple(images.shape) != (self.batch_size, self.height, self.width):
            raise ValueError(f"EventSimulator.sim: images must have shape (B, H, W) = "
                             f"{(self.batch_size, self.height, self.width)}, got {tuple(images.shape)}")
        if images.dtype == torch.uint8:
            images = images.to(self.device, torch.float32) / 255.0
        elif images.is_floating_point():
            images = images.to(self.device, torch.float32)
        else:
            raise ValueError(f"EventSimulator.sim: images must be float in [0, 1] or uint8, got {images.dtype}")
        return images, torch.log(images.clamp(min=0) + self.log_eps)

    def _low_pass(self, intensity: torch.Tensor, log_new: torch.Tensor, dt_s: torch.Tensor) -> torch.Tensor:
        """First-order low-pass of the log intensity; brighter pixels have a higher cutoff (photoreceptor)."""
        tau = 1.0 / (2 * math.pi * self.cutoff_hz)
        # cutoff proportional to intensity, floored so that dark pixels still respond (v2e-like)
        tau_eff = tau / (0.1 + 0.9 * intensity.clamp(0, 1))
        alpha = 1.0 - torch.exp(-dt_s.view(-1, 1, 1) / tau_eff)
        return self.log_prev + alpha * (log_new - self.log_prev)

    def sim(self, images: torch.Tensor, timestamps: torch.Tensor) -> torch.Tensor:
        """Feeds one frame per batch element and returns the events since each element's previous frame.

        Args:
            images: (B, H, W) float in [0, 1] or uint8 (divided by 255).
            timestamps: (B,) int64 microseconds; must increase strictly for every initialised element.

        Returns:
            int64 tensor (N, 5) of ``(b, x, y, p, t)`` sorted by (b, t), on ``self.device``.
        """
        intensity, log_new = self._to_log(images)
        t_new = torch.as_tensor(timestamps, device=self.device).reshape(-1).to(torch.int64)
        if t_new.numel() != self.batch_size:
            raise ValueError(f"EventSimulator.sim: timestamps must have shape (B,) = ({self.batch_size},), "
                             f"got {tuple(torch.as_tensor(timestamps).shape)}")
        init = self.initialized
        dt = t_new - self.t_prev
        if bool((init & (dt <= 0)).any()):
            bad = torch.nonzero(init & (dt <= 0))[0, 0].item()
            raise ValueError(f"EventSimulator.sim: timestamps must increase; batch element {bad} went from "
                             f"{self.t_prev[bad].item()} to {t_new[bad].item()} us")
        dt_s = dt.clamp(min=0).to(torch.float32) * 1e-6
        log_cur = log_new
        if self.cutoff_hz > 0:
            log_cur = torch.where(init.view(-1, 1, 1), self._low_pass(intensity, log_new, dt_s), log_new)

        # D(s) = log(s) - ref(s), linear in s over the interval; the leak lowers the reference linearly
        leak = (self.leak_rate_hz.to(torch.float32) * dt_s).view(-1, 1, 1) * self.threshold_pos
        d0 = self.log_prev - self.log_ref
        d1 = log_cur - self.log_ref + leak
        k_pos = torch.floor(d1 / self.threshold_pos).clamp_(min=0)
        k_neg = torch.floor(-d1 / self.threshold_neg).clamp_(min=0)
        k_pos = k_pos * init.view(-1, 1, 1)
        k_neg = k_neg * init.view(-1, 1, 1)
        events = self._crossings(k_pos, k_neg, d0, d1, t_new)

        # state update; uninitialised elements (first frame or after reset) start from the current frame
        new_ref = self.log_ref - leak + k_pos * self.threshold_pos - k_neg * self.threshold_neg
        start_ref = log_cur
        if self._has_leak and not bool(init.all()):
            # random leak phase so that static pixels do not all fire at the same instant
            phase = torch.rand(log_cur.shape, generator=self.generator, device=self.device)
            start_ref = log_cur - phase * self.threshold_pos
        keep = init.view(-1, 1, 1)
        self.log_ref = torch.where(keep, new_ref, start_ref)
        self.log_prev = log_cur
        if self._has_shot_noise:
            events = torch.cat([events, self._shot_noise(dt, t_new, init)])
        self.t_prev = t_new.clone()
        self.initialized = torch.ones_like(init)
        return _sort_events(events)

    def _crossings(self, k_pos: torch.Tensor, k_neg: torch.Tensor, d0: torch.Tensor, d1: torch.Tensor,
                   t_new: torch.Tensor) -> torch.Tensor:
        """Events of every threshold crossing, one row per crossing, generated without per-event loops."""
        k = (k_pos + k_neg).to(torch.int64)
        flat = torch.nonzero(k.reshape(-1) > 0).squeeze(1)
        if flat.numel() == 0:
            return torch.zeros((0, 5), dtype=torch.int64, device=self.device)
        hw = self.height * self.width
        b, pix = flat // hw, flat % hw
        y, x = pix // self.width, pix % self.width
        counts = k.reshape(-1)[flat]
        is_on = k_pos.reshape(-1)[flat] > 0
        thr = torch.where(is_on, self.threshold_pos.reshape(-1)[flat], self.threshold_neg.reshape(-1)[flat])
        sign = torch.where(is_on, 1.0, -1.0).to(torch.float64)
        # crossing j (1-based) of a pixel happens when D(s) = sign * j * thr
        rep = torch.repeat_interleave(torch.arange(flat.numel(), device=self.device), counts)
        first = torch.cumsum(counts, 0) - counts
        j = torch.arange(rep.numel(), device=self.device) - first[rep] + 1
        # per-pixel quantities first (M pixels), expanded to the events once
        a = d0.reshape(-1)[flat].to(torch.float64)
        inv_slope = 1.0 / (d1.reshape(-1)[flat].to(torch.float64) - a)
        step = sign * thr.to(torch.float64)
        t0 = self.t_prev[b]
        span = (t_new[b] - t0).to(torch.float64)
        s = ((j.to(torch.float64) * step[rep] - a[rep]) * inv_slope[rep]).clamp_(0.0, 1.0)
        t = t0[rep] + torch.round(s * span[rep]).to(torch.int64)
        p = is_on.to(torch.int64)[rep]
        events = torch.stack([b[rep], x[rep], y[rep], p, t], dim=1)
        if self._has_refractory:
            events = self._refractory(events, flat, counts, first, t)
        return events

    def _refractory(self, events: torch.Tensor, flat: torch.Tensor, counts: torch.Tensor, first: torch.Tensor,
                    t: torch.Tensor) -> torch.Tensor:
        """Drops events closer than the refractory period to the pixel's previous *kept* event.

        Sequential per pixel, but vectorised over pixels: one step per crossing index, each over the pixels that
        still have crossings left (events are grouped by pixel, crossing j of pixel i at row first[i] + j).
        """
        # integer times: t >= R  <=>  t >= ceil(R); R of each pixel's batch element
        refractory = torch.ceil(self.refractory_period_us).to(torch.int64)[flat // (self.height * self.width)]
        last = self.last_event_t.view(-1)[flat].clone()
        keep = torch.zeros(t.numel(), dtype=torch.bool, device=self.device)
        pixels = torch.arange(flat.numel(), device=self.device)
        step = 0
        while pixels.numel():
            rows = first[pixels] + step
            ok = (t[rows] - last[pixels]) >= refractory[pixels]
            keep[rows] = ok
            last[pixels] = torch.where(ok, t[rows], last[pixels])
            step += 1
            pixels = pixels[counts[pixels] > step]
        self.last_event_t.view(-1)[flat] = last
        return events[keep]

    def _shot_noise(self, dt: torch.Tensor, t_new: torch.Tensor, init: torch.Tensor) -> torch.Tensor:
        """Poisson noise events: the superposition over pixels is one Poisson process per batch element."""
        rates = self.shot_noise_rate_hz * self.height * self.width * dt.clamp(min=0).to(torch.float64) * 1e-6
        rates = rates * init
        counts = torch.poisson(rates.to(torch.float32), generator=self.generator).to(torch.int64)
        n = int(counts.sum().item())
        if n == 0:
            return torch.zeros((0, 5), dtype=torch.int64, device=self.device)
        b = torch.repeat_interleave(torch.arange(self.batch_size, device=self.device), counts)
        pix = torch.randint(0, self.height * self.width, (n,), generator=self.generator, device=self.device)
        p = torch.randint(0, 2, (n,), generator=self.generator, device=self.device)
        u = torch.rand(n, generator=self.generator, device=self.device, dtype=torch.float64)
        t0 = self.t_prev[b]
        # uniform in (t0, t1]: the same half-open interval the signal events live in
        t = t0 + 1 + torch.floor(u * (t_new[b] - t0).to(torch.float64)).to(torch.int64)
        t = torch.minimum(t, t_new[b])
        return torch.stack([b, pix % self.width, pix // self.width, p, t], dim=1)


def _sort_events(events: torch.Tensor) -> torch.Tensor:
    """Stable sort by (b, t), as one sort on the combined key b * span + (t - t_min)."""
    if events.shape[0] <= 1:
        return events
    t = events[:, 4]
    t_min = t.min()
    span = t.max() - t_min + 1
    order = torch.sort(events[:, 0] * span + (t - t_min), stable=True).indices
    return events[order]
