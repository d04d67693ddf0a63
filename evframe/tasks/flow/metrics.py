"""Flow accuracy against ground truth: average endpoint error (AEE) and percentage of outliers.

Outlier definition: a pixel whose endpoint error ``||pred - gt||`` exceeds ``outlier_px`` (3 pixels, the "% outliers
(>3 px)" of the event-flow literature). Optionally (KITTI style) also require the error to exceed ``outlier_rel``
times ``||gt||``. Errors are in whatever unit both flows share; evframe compares flows in pixels per time bin at the
network input resolution (see :func:`gt_to_pixels_per_bin` to convert the px/s labels).

Each metric is reported beside the same metric for a zero-flow prediction on the same pixels, the trivial baseline
any useful model must beat.

Without labels, :func:`flow_warp_loss` (FWL) measures how much sharper a bin's events become when moved by the
predicted flow; it needs the events only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchmetrics import Metric

from evframe.tasks.flow.losses import micro_bin_times, split_micro_bins
from evframe.tasks.flow.warping import forward_splat

OUTLIER_PX = 3.0


def _as_tensor(x: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x)
    if isinstance(x, torch.Tensor):
        return x
    raise TypeError(f"flow_metrics: {name} must be a torch.Tensor or np.ndarray, got {type(x).__name__}")


def gt_to_pixels_per_bin(flow_px_per_s: torch.Tensor, delta_t_us: int, downsample: int = 0) -> torch.Tensor:
    """Converts a ground-truth flow in sensor pixels per second to pixels per time bin of ``delta_t_us``
    microseconds at a resolution downsampled by ``2**downsample`` (values only; resize the map separately)."""
    return flow_px_per_s * (float(delta_t_us) * 1e-6 / 2**downsample)


def endpoint_errors(
    pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pixel endpoint errors of ``pred`` and of zero flow at the valid pixels.

    Args:
        pred, gt: ``(B, 2, H, W)`` flows (x then y).
        mask: ``(B, H, W)`` bool, pixels to evaluate (e.g. with events); None = all. Pixels whose ``gt`` is not
            finite are always excluded.

    Returns:
        ``(epe, gt_norm, valid)``: errors of ``pred`` and of zero flow, 1-D over the valid pixels, and the
        ``(B, H, W)`` mask used.
    """
    pred = _as_tensor(pred, "pred")
    gt = _as_tensor(gt, "gt")
    if pred.ndim != 4 or pred.shape[1] != 2 or pred.shape != gt.shape:
        raise ValueError(
            f"flow_metrics: pred {tuple(pred.shape)} and gt {tuple(gt.shape)} must both be (B, 2, H, W)"
        )
    valid = torch.isfinite(gt).all(dim=1)
    if mask is not None:
        mask = _as_tensor(mask, "mask")
        if tuple(mask.shape) != (gt.shape[0], *gt.shape[2:]):
            raise ValueError(f"flow_metrics: mask must be (B, H, W) = {(gt.shape[0], *gt.shape[2:])}, "
                             f"got {tuple(mask.shape)}")
        valid = valid & mask.to(device=gt.device, dtype=torch.bool)
    pred = pred.to(device=gt.device, dtype=torch.float64)
    gt = gt.to(torch.float64)
    epe = torch.linalg.vector_norm(pred - gt, dim=1)[valid]
    gt_norm = torch.linalg.vector_norm(gt, dim=1)[valid]
    return epe, gt_norm, valid


def _outliers(epe: torch.Tensor, gt_norm: torch.Tensor, outlier_px: float, outlier_rel: float | None) -> torch.Tensor:
    out = epe > outlier_px
    if outlier_rel is not None:
        out = out & (epe > outlier_rel * gt_norm)
    return out


def flow_metrics(
    pred: torch.Tensor,
    gt: torch.Tensor,
    mask: torch.Tensor | None = None,
    outlier_px: float = OUTLIER_PX,
    outlier_rel: float | None = None,
) -> dict[str, float]:
    """AEE and % outliers of ``pred`` against ``gt`` at the pixels of ``mask``, with the zero-flow baseline.

    Args:
        pred, gt: ``(B, 2, H, W)`` flows in the same unit (pixels per bin).
        mask: ``(B, H, W)`` bool pixels to evaluate (None = all pixels with a finite gt).
        outlier_px: endpoint error above which a pixel is an outlier.
        outlier_rel: if set, an outlier must also have ``epe > outlier_rel * ||gt||`` (KITTI: 0.05).

    Returns:
        ``{"aee", "outlier_pct", "aee_zero", "outlier_pct_zero", "n_pixels"}``; the rates are NaN when no pixel
        is valid. ``*_zero`` are the same metrics for a zero-flow prediction.
    """
    epe, gt_norm, _ = endpoint_errors(pred, gt, mask)
    n = int(epe.numel())
    if n == 0:
        nan = float("nan")
        return {"aee": nan, "outlier_pct": nan, "aee_zero": nan, "outlier_pct_zero": nan, "n_pixels": 0}
    return {
        "aee": float(epe.mean()),
        "outlier_pct": 100.0 * float(_outliers(epe, gt_norm, outlier_px, outlier_rel).double().mean()),
        "aee_zero": float(gt_norm.mean()),
        "outlier_pct_zero": 100.0 * float(_outliers(gt_norm, gt_norm, outlier_px, outlier_rel).double().mean()),
        "n_pixels": n,
    }


class FlowErrorMetric(Metric):
    """Accumulates :func:`flow_metrics` over batches as pixel-weighted sums, so the epoch value is the exact mean
    over all evaluated pixels (not a mean of batch means). The sums are torchmetrics states reduced by summation,
    so under DDP the value covers the pixels of all processes.

    ``update(pred (N, 2, H, W), gt (N, 2, H, W), mask (N, H, W) bool or None)``; ``compute()`` returns tensors
    ``{"aee", "outlier_pct", "aee_zero", "outlier_pct_zero", "n_pixels"}`` (NaN rates when no pixel was seen).
    """

    full_state_update = False

    def __init__(self, outlier_px: float = OUTLIER_PX, outlier_rel: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.outlier_px = float(outlier_px)
        self.outlier_rel = outlier_rel
        for name in ("epe_sum", "outliers", "zero_sum", "zero_outliers", "n_pixels"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        epe, gt_norm, _ = endpoint_errors(pred, gt, mask)
        self.epe_sum += epe.sum()
        self.outliers += _outliers(epe, gt_norm, self.outlier_px, self.outlier_rel).sum()
        self.zero_sum += gt_norm.sum()
        self.zero_outliers += _outliers(gt_norm, gt_norm, self.outlier_px, self.outlier_rel).sum()
        self.n_pixels += epe.numel()

    def compute(self) -> dict[str, torch.Tensor]:
        n = self.n_pixels
        if n <= 0:
            nan = torch.tensor(float("nan"), dtype=torch.float64, device=n.device)
            return {"aee": nan, "outlier_pct": nan, "aee_zero": nan, "outlier_pct_zero": nan, "n_pixels": n.clone()}
        return {"aee": self.epe_sum / n, "outlier_pct": 100.0 * self.outliers / n, "aee_zero": self.zero_sum / n,
                "outlier_pct_zero": 100.0 * self.zero_outliers / n, "n_pixels": n.clone()}


def flow_warp_loss(inputs: torch.Tensor, flow: torch.Tensor, channels_per_micro_bin: int = 2) -> torch.Tensor:
    """Flow warp loss (FWL, Stoffregen et al. 2020, "Reducing the Sim-to-Real Gap for Event Cameras") of every time
    bin: how much sharper the bin's events get when moved by the predicted flow than when left in place.

    What is warped, with what, to when: micro bin ``k`` of bin ``t`` (``K`` micro bins, centre ``tau_k = (k + 0.5) /
    K`` bins after the bin start, :func:`~evframe.tasks.flow.losses.micro_bin_times`) holds at pixel ``p`` the event
    count ``c_k(p) = sum over its channels of |x|`` (exact for event_cube with split polarity). Each count is moved
    to the start of bin ``t`` along the flow of its own pixel, ``p -> p - tau_k * F_t(p)`` with ``F_t`` the flow of
    bin ``t`` in pixels per bin, and splatted bilinearly (:func:`~evframe.tasks.flow.warping.forward_splat`: every
    event is moved once; what leaves the image is lost). The image of warped events is ``IWE_F = sum_k`` of the
    moved counts, and with zero flow ``IWE_0 = sum_k c_k``. Then::

        FWL = var(IWE_F) / var(IWE_0)        (spatial variances over all H x W pixels)

    1: no sharper than no motion (exactly 1 for zero flow); above 1: sharper; below 1: blurrier. With one micro bin
    per bin (histo, diff, ...) bins ``t`` and ``t + 1`` act as two micro bins at times 0 and 1, moved with ``F_t``
    (as :func:`~evframe.tasks.flow.losses.bw_deblur_loss` does), for ``t = 0 .. T - 2``.

    Args:
        inputs: event tensor ``(T, B, C, H, W)`` at the flow's resolution, channels micro-bin major (see
            :func:`~evframe.tasks.flow.losses.split_micro_bins`).
        flow: ``(T, B, 2, H, W)`` in pixels per bin (x then y), forward in time.
        channels_per_micro_bin: ``P`` (event_cube: 2 with split polarity, 1 without; histo/diff: ``C``).

    Returns:
        ``(T, B)`` float64 (``(T - 1, B)`` with one micro bin per bin); NaN where ``IWE_0`` has no contrast (a bin
        without events).
    """
    if inputs.ndim != 5 or flow.ndim != 5 or flow.shape[2] != 2 or flow.shape[:2] != inputs.shape[:2] \
            or flow.shape[-2:] != inputs.shape[-2:]:
        raise ValueError(f"flow_warp_loss: expected inputs (T, B, C, H, W) with flow (T, B, 2, H, W) of the same T, B, "
                         f"H, W; got inputs {tuple(inputs.shape)} and flow {tuple(flow.shape)}")
    counts = split_micro_bins(inputs, channels_per_micro_bin).abs().sum(dim=3)  # (T, B, K, H, W)
    flow = flow.detach().to(counts.dtype)
    t, b, k, h, w = counts.shape
    if k == 1:
        if t < 2:
            return torch.empty(0, b, dtype=torch.float64, device=inputs.device)
        counts = torch.cat((counts[:-1], counts[1:]), dim=2)
        flow = flow[:-1]
        times = torch.tensor([0.0, 1.0])
        t, k = t - 1, 2
    else:
        times = micro_bin_times(k)
    # every micro bin goes back to the bin start: displacement -tau_k * F_t at each event's own pixel
    steps = -times.to(device=flow.device, dtype=flow.dtype).view(1, k, 1, 1, 1)
    moved = forward_splat(counts.reshape(t * b * k, 1, h, w), (flow.reshape(t * b, 1, 2, h, w) * steps)
                          .reshape(t * b * k, 2, h, w)).view(t * b, k, h, w)
    sharp = moved.sum(dim=1).double().var(dim=(-2, -1), unbiased=False)
    still = counts.reshape(t * b, k, h, w).sum(dim=1).double().var(dim=(-2, -1), unbiased=False)
    fwl = torch.where(still > 0, sharp / still.clamp_min(torch.finfo(torch.float64).tiny), float("nan"))
    return fwl.view(t, b)


class FlowWarpLossMetric(Metric):
    """The mean :func:`flow_warp_loss` over every time bin with events of an epoch (bins without events are left
    out). The sums are torchmetrics states reduced by summation, so under DDP it covers the bins of all processes.

    ``update(inputs (T, B, C, H, W), flow (T, B, 2, H, W))`` as :func:`flow_warp_loss`; ``compute()`` returns
    ``{"fwl", "n_bins"}`` tensors (``fwl`` NaN when no bin had events).
    """

    full_state_update = False

    def __init__(self, channels_per_micro_bin: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.channels_per_micro_bin = int(channels_per_micro_bin)
        for name in ("fwl_sum", "n_bins"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, inputs: torch.Tensor, flow: torch.Tensor) -> None:
        values = flow_warp_loss(inputs, flow, self.channels_per_micro_bin)
        values = values[torch.isfinite(values)]
        self.fwl_sum += values.sum()
        self.n_bins += values.numel()

    def compute(self) -> dict[str, torch.Tensor]:
        n = self.n_bins
        fwl = self.fwl_sum / n if n > 0 else torch.tensor(float("nan"), dtype=torch.float64, device=n.device)
        return {"fwl": fwl, "n_bins": n.clone()}


class WeightedMeans(Metric):
    """Means of named scalars over an epoch, each batch weighted by its number of streams: the validation and test
    loss terms. The sums are torchmetrics states reduced by summation, so under DDP the means cover the batches of
    all processes exactly (a mean of per-process means would not when processes saw different numbers of streams).

    ``update(values: {name: scalar tensor}, weight)`` with the names given at construction; ``compute()`` returns
    ``{name: mean}`` (NaN when nothing was updated).
    """

    full_state_update = False

    def __init__(self, names: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.names = list(names)
        self.add_state("sums", default=torch.zeros(len(self.names), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("weight", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, values: dict[str, torch.Tensor], weight: float) -> None:
        unknown = set(values) - set(self.names)
        if unknown:
            raise KeyError(f"WeightedMeans: values {sorted(unknown)} were not declared (declared: {self.names})")
        row = torch.stack([values[n].detach().double().reshape(()) if n in values else
                           torch.zeros((), dtype=torch.float64, device=self.sums.device) for n in self.names])
        self.sums += row.to(self.sums.device) * float(weight)
        self.weight += float(weight)

    def compute(self) -> dict[str, torch.Tensor]:
        if self.weight <= 0:
            nan = torch.tensor(float("nan"), dtype=torch.float64, device=self.sums.device)
            return {name: nan for name in self.names}
        means = self.sums / self.weight
        return {name: means[i] for i, name in enumerate(self.names)}
