"""Reconstruction quality: MSE and SSIM of the network's frames, each beside the naive event-integration baseline.

The baseline (:class:`EventIntegrator`) is what one gets without learning: every pixel integrates its signed
events (``contrast_threshold`` of log intensity per event) into a log-intensity change that decays with time
constant ``tau_us`` (a leaky integrator, so noise and the unknown start do not accumulate forever), shown around a
mid-gray: ``frame = clip(gray * exp(L), 0, 1)``. It keeps a state per stream like the recurrent models, reset by
``mask_keep_memory``.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchmetrics import Metric

from evframe.tasks.e2v.losses import ssim_per_image
from evframe.tasks.e2v.volumes import signed_event_counts


class EventIntegrator(nn.Module):
    """Leaky integration of events into frames (the baseline).

    Args:
        preprocess: name of the input tensors' preprocessing (``event_cube``, ``histo`` or ``diff``).
        kwargs: its options (``max_incr_per_pixel``, ``split_polarity``).
        delta_t: time bin duration (us).
        contrast_threshold: log-intensity step of one event.
        tau_us: decay time constant of the integrated log intensity (us).
        gray: intensity shown where no event happened.
    """

    def __init__(self, preprocess: str = "event_cube", kwargs: dict | None = None, delta_t: int = 50_000,
                 contrast_threshold: float = 0.2, tau_us: float = 500_000.0, gray: float = 0.5) -> None:
        super().__init__()
        if delta_t <= 0 or contrast_threshold <= 0 or tau_us <= 0 or not 0 < gray < 1:
            raise ValueError(f"EventIntegrator: delta_t, contrast_threshold, tau_us must be > 0 and gray in (0, 1), "
                             f"got {delta_t}, {contrast_threshold}, {tau_us}, {gray}")
        self.preprocess = str(preprocess)
        self.kwargs = dict(kwargs or {})
        signed_event_counts(torch.zeros(1, 1, 6, 1, 1), self.preprocess, self.kwargs)  # fails early if unsupported
        self.contrast_threshold = float(contrast_threshold)
        self.decay = math.exp(-float(delta_t) / float(tau_us))
        self.gray = float(gray)
        self.state: torch.Tensor | None = None

    def reset(self, mask_keep_memory: torch.Tensor) -> None:
        """Zeroes the state of streams starting a recording (``mask_keep_memory`` (B,) = 0)."""
        if self.state is None:
            return
        mask = torch.as_tensor(mask_keep_memory).to(self.state.device, self.state.dtype).reshape(-1)
        if mask.numel() != self.state.shape[0]:
            self.state = None
            return
        self.state = self.state * mask.view(-1, 1, 1, 1)

    def clear(self) -> None:
        self.state = None

    @torch.no_grad()
    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """``inputs (T, B, C, H, W)`` -> frames ``(T, B, 1, H, W)`` in [0, 1] (state carried to the next call)."""
        counts = signed_event_counts(inputs.float(), self.preprocess, self.kwargs)
        if self.state is None or self.state.shape != counts.shape[1:] or self.state.device != counts.device:
            self.state = counts.new_zeros(counts.shape[1:])
        out = []
        for c in counts.unbind(0):
            self.state = self.decay * self.state + self.contrast_threshold * c
            out.append((self.gray * torch.exp(self.state)).clamp(0.0, 1.0))
        return torch.stack(out)


class ReconstructionMetrics(Metric):
    """Accumulates MSE (per pixel) and SSIM (per frame) of predictions and of the baseline over valid frames.

    ``update(pred, baseline, target, valid)`` with frames ``(T, B, 1, H, W)`` and ``valid (T, B)``; ``compute()``
    returns ``mse``, ``ssim``, ``mse_baseline``, ``ssim_baseline`` and ``num_frames`` (NaN metrics when no frame).
    """

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        for name in ("sq_err", "sq_err_base", "pixels", "ssim", "ssim_base", "frames"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, baseline: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> None:
        valid = valid.bool()
        if not bool(valid.any()):
            return
        p, b, t = pred[valid].float(), baseline[valid].float(), target[valid].float()
        self.sq_err += ((p - t) ** 2).sum().double()
        self.sq_err_base += ((b - t) ** 2).sum().double()
        self.pixels += float(t.numel())
        self.ssim += ssim_per_image(p, t).sum().double()
        self.ssim_base += ssim_per_image(b, t).sum().double()
        self.frames += float(t.shape[0])

    def compute(self) -> dict[str, torch.Tensor]:
        nan = torch.tensor(float("nan"), dtype=torch.float64, device=self.frames.device)
        if float(self.frames) == 0:
            return {"mse": nan, "ssim": nan, "mse_baseline": nan, "ssim_baseline": nan, "num_frames": self.frames}
        return {"mse": self.sq_err / self.pixels, "ssim": self.ssim / self.frames,
                "mse_baseline": self.sq_err_base / self.pixels, "ssim_baseline": self.ssim_base / self.frames,
                "num_frames": self.frames}
