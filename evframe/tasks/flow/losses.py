"""Self-supervised losses for optical flow regressed from event tensors.

Conventions used by every function here:

* ``inputs``: event tensor ``(T, B, C, H, W)`` at the flow's resolution (time bins of ``delta_t``).
* ``flow``: ``(T, B, 2, H, W)``, channel 0 = x, 1 = y, in pixels (of that resolution) per time bin, forward in
  time: a point at ``p`` during bin ``t`` is at ``p + F_t(p)`` during bin ``t + 1``.
* ``mask``: optional weights ``(T, B, 1, H, W)`` or ``(T, B, H, W)`` (bool or float), 1 where a pixel counts.

Task terms (they make the flow explain the events):

* ``data`` (:func:`data_loss`): ``x_t(p) ~ x_{t+1}(p + F_t(p))``.
* ``time_consistency`` (:func:`time_consistency_loss`): the flow of bin ``t`` also explains ``t+1 -> t+2``.
* ``bw_deblur`` (:func:`bw_deblur_loss`): contrast maximisation of the micro time bins warped back to the bin
  start.

That is Metavision's pairing (``pairing="next"``). With ``pairing="centred"`` (:data:`PAIRINGS`) each term uses the
bins around the start of bin ``t`` instead, the time the flow labels describe: ``x_{t-1}(p) ~ x_t(p + F_t(p))``, the
pairs just before and after that one, and the micro bins of bins ``t - 1`` and ``t``.

Regularisers: ``smoothness`` (first-order differences), ``smoothness2`` (second-order), ``l1`` (magnitude).

Why the photometric terms compare *blurred* tensors: event tensors are sparse, so two edge maps one pixel apart
share no support and bilinear sampling gives a gradient only within one pixel of an edge. A small Gaussian blur
(``blur_sigma`` pixels, at every pyramid level) widens the basin of attraction while keeping the minimum at the
true flow (blurring commutes with translation). Why the residual is divided by ``sum(|a| + |warped b|)``: it makes
the term independent of event density and contrast threshold (a value in ``[0, 1]``), and it makes the degenerate
"warp everything out of the image" solution score exactly like no overlap at all (1), never better than a flow that
aligns the events (near 0).

:class:`FlowLoss` sums the weighted terms over the flow pyramid, downsampling the inputs (area average) to each
level's size.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from evframe.tasks.flow.warping import backward_warp, forward_density

LOSS_NAMES = ("data", "time_consistency", "bw_deblur", "smoothness", "smoothness2", "l1")
TASK_TERMS = ("data", "time_consistency", "bw_deblur")
REGULARISERS = ("smoothness", "smoothness2", "l1")

# Sensible starting weights (task terms are O(1); the regularisers are per-pixel Charbonnier of flow differences in
# pixels, so small weights suffice).
DEFAULT_LOSS_WEIGHTS: dict[str, float] = {
    "data": 1.0,
    "time_consistency": 0.5,
    "bw_deblur": 1.0,
    "smoothness": 0.1,
    "smoothness2": 0.0,
    "l1": 0.0,
}

_NORM_EPS = 1e-6


# ---------------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------------
def charbonnier(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Robust penalty ``sqrt(x^2 + eps^2) - eps`` (quadratic near 0, ~|x| far away; exactly 0 at 0).

    Written as ``x^2 / (sqrt(x^2 + eps^2) + eps)`` which is the same value without cancellation error.
    """
    sq = x * x
    return sq / (torch.sqrt(sq + eps * eps) + eps)


def _check_inputs_flow(inputs: torch.Tensor, flow: torch.Tensor, where: str) -> None:
    if inputs.ndim != 5:
        raise ValueError(f"{where}: inputs must be (T, B, C, H, W), got shape {tuple(inputs.shape)}")
    expected = (inputs.shape[0], inputs.shape[1], 2, inputs.shape[3], inputs.shape[4])
    if tuple(flow.shape) != expected:
        raise ValueError(f"{where}: flow must have shape {expected} (T, B, 2, H, W), got {tuple(flow.shape)}")


def _check_flow(flow: torch.Tensor, where: str) -> None:
    if flow.ndim != 5 or flow.shape[2] != 2:
        raise ValueError(f"{where}: flow must be (T, B, 2, H, W), got shape {tuple(flow.shape)}")


def _mask_5d(mask: torch.Tensor | None, like: torch.Tensor, where: str) -> torch.Tensor | None:
    """Returns ``mask`` as float ``(T, B, 1, H, W)`` matching ``like`` (T, B, *, H, W), or None."""
    if mask is None:
        return None
    if mask.ndim == 4:
        mask = mask.unsqueeze(2)
    t, b, _, h, w = like.shape
    if mask.ndim != 5 or mask.shape[2] != 1 or tuple(mask.shape[:2]) != (t, b) or tuple(mask.shape[-2:]) != (h, w):
        raise ValueError(f"{where}: mask must be (T, B, H, W) or (T, B, 1, H, W) = {(t, b, 1, h, w)}, "
                         f"got {tuple(mask.shape)}")
    return mask.to(device=like.device, dtype=like.dtype)


def _zero(flow: torch.Tensor) -> torch.Tensor:
    """A 0 that stays connected to ``flow``'s graph (so ``backward`` works even if every term is empty)."""
    return flow.sum() * 0.0


#: Which bins explain the flow ``F_t`` of bin ``t`` (whose labels describe the motion at the bin start).
#: ``next`` (Metavision): bin ``t`` against bin ``t + 1`` (data), ``t + 1`` against ``t + 2`` (time consistency), the
#: micro bins of bin ``t`` (bw_deblur): the motion of the next half bin to bin and a half, partly in the future of
#: what the network has seen. ``centred``: bins ``t - 1`` against ``t`` (data), the pairs before and after that one
#: (time consistency), the micro bins of bins ``t - 1`` and ``t`` (bw_deblur): each term measures the motion around
#: the bin start, from events the network has already seen.
PAIRINGS = ("next", "centred")


def _check_pairing(pairing: str, where: str) -> None:
    if pairing not in PAIRINGS:
        raise ValueError(f"{where}: pairing must be one of {list(PAIRINGS)}, got {pairing!r}")


def event_mask(inputs: torch.Tensor) -> torch.Tensor:
    """``(T, B, 1, H, W)`` float mask of pixels with any non-zero channel."""
    return (inputs != 0).any(dim=2, keepdim=True).to(inputs.dtype)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(N, C, H, W)`` per channel (zero padding: no events outside the sensor).
    ``sigma <= 0`` returns ``x`` unchanged."""
    if sigma <= 0:
        return x
    radius = max(1, int(math.ceil(2.0 * sigma)))
    coords = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (coords / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    kx = kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1)
    ky = kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1)
    x = F.conv2d(x, kx, padding=(0, radius), groups=c)
    return F.conv2d(x, ky, padding=(radius, 0), groups=c)


def _blur5(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """:func:`gaussian_blur` of a ``(T, B, C, H, W)`` tensor."""
    if sigma <= 0:
        return x
    t, b = x.shape[:2]
    return gaussian_blur(x.flatten(0, 1), sigma).view(t, b, *x.shape[2:])


def resize_inputs(inputs: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Area-downsamples ``(T, B, C, H, W)`` to ``(T, B, C, *size)`` (identity when the size already matches)."""
    if tuple(inputs.shape[-2:]) == tuple(size):
        return inputs
    t, b = inputs.shape[:2]
    out = F.interpolate(inputs.flatten(0, 1), size=tuple(size), mode="area")
    return out.view(t, b, *out.shape[1:])


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Max-pools a ``(T, B, 1, H, W)`` mask to ``(T, B, 1, *size)`` (a coarse pixel counts if any fine one does)."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    t, b = mask.shape[:2]
    out = F.adaptive_max_pool2d(mask.flatten(0, 1).float(), tuple(size))
    return out.view(t, b, *out.shape[1:]).to(mask.dtype)


def micro_bin_times(num_micro_bins: int) -> torch.Tensor:
    """Centre time of each micro bin as a fraction of the bin duration: ``(k + 0.5) / K`` (shape ``(K,)``)."""
    return (torch.arange(num_micro_bins, dtype=torch.float32) + 0.5) / num_micro_bins


def split_micro_bins(inputs: torch.Tensor, channels_per_micro_bin: int = 2) -> torch.Tensor:
    """Views ``(T, B, C, H, W)`` as ``(T, B, K, P, H, W)`` with ``P = channels_per_micro_bin`` and ``K = C // P``.

    The channel layout is micro-bin major, ``c = k * P + p`` (event_cube with split polarity: ``[u0 neg, u0 pos,
    u1 neg, u1 pos, ...]``). For tensors without micro bins (histo, diff, ...) set ``P = C``: one micro bin.
    """
    t, b, c, h, w = inputs.shape
    p = int(channels_per_micro_bin)
    if p < 1 or c % p:
        raise ValueError(
            f"split_micro_bins: channels_per_micro_bin={channels_per_micro_bin} must divide the number of input "
            f"channels C={c} (event_cube: 2 with split_polarity, 1 without; histo/diff: C)"
        )
    return inputs.view(t, b, c // p, p, h, w)


def channels_per_micro_bin_for(preprocess: str, num_channels: int, split_polarity: bool = True) -> int:
    """The ``channels_per_micro_bin`` to use for a preprocessing name (see :func:`split_micro_bins`)."""
    if preprocess in ("event_cube", "event_cube_per_bin"):
        return 2 if split_polarity else 1
    # histo/diff/timesurface/...: the whole tensor is one snapshot of the bin -> one micro bin.
    return num_channels


# ---------------------------------------------------------------------------------------------------------------
# task terms
# ---------------------------------------------------------------------------------------------------------------
def _photometric(
    ref: torch.Tensor,
    target: torch.Tensor,
    flow: torch.Tensor,
    mask: torch.Tensor | None,
    blur_sigma: float,
    eps: float,
) -> torch.Tensor:
    """Mean over (t, b) of ``sum rho(ref - warp(target, flow)) / sum(|ref| + |warp(target, flow)|)``."""
    ref_s = _blur5(ref, blur_sigma)
    warped = backward_warp(_blur5(target, blur_sigma), flow)
    residual = charbonnier(ref_s - warped, eps)
    norm = ref_s.abs() + warped.abs()
    if mask is not None:
        residual = residual * mask
        norm = norm * mask
    ratio = residual.sum(dim=(2, 3, 4)) / (norm.sum(dim=(2, 3, 4)) + _NORM_EPS)
    return ratio.mean()


def data_loss(
    inputs: torch.Tensor,
    flow: torch.Tensor,
    mask: torch.Tensor | None = None,
    blur_sigma: float = 1.0,
    eps: float = 1e-3,
    pairing: str = "next",
) -> torch.Tensor:
    """Brightness constancy between consecutive bins: ``x_t(p) ~ x_{t+1}(p + F_t(p))``.

    ``x_{t+1}`` is backward-warped by ``F_t`` and compared to ``x_t`` (both Gaussian-blurred by ``blur_sigma``)
    with a Charbonnier penalty normalised by ``sum(|x_t| + |warped x_{t+1}|)`` per (t, b): 0 = perfect
    alignment, 1 = no overlap. ``mask[t]`` weights the reference pixels of the pair ``F_t`` explains (those of
    bin ``t``). Uses ``t = 0 .. T-2``; returns a 0 connected to ``flow`` when ``T < 2``. Returns a scalar.

    ``pairing="centred"`` (see :data:`PAIRINGS`): ``F_t`` explains the pair of bins around its start instead,
    ``x_{t-1}(p) ~ x_t(p + F_t(p))`` for ``t = 1 .. T-1`` (``mask[t]`` then weights pixels of bin ``t - 1``).
    """
    _check_inputs_flow(inputs, flow, "data_loss")
    _check_pairing(pairing, "data_loss")
    if inputs.shape[0] < 2:
        return _zero(flow)
    m = _mask_5d(mask, inputs, "data_loss")
    used = slice(1, None) if pairing == "centred" else slice(None, -1)
    return _photometric(inputs[:-1], inputs[1:], flow[used], None if m is None else m[used], blur_sigma, eps)


def time_consistency_loss(
    inputs: torch.Tensor,
    flow: torch.Tensor,
    mask: torch.Tensor | None = None,
    blur_sigma: float = 1.0,
    eps: float = 1e-3,
    pairing: str = "next",
) -> torch.Tensor:
    """Constant-motion prior: the flow of bin ``t`` must also explain ``t+1 -> t+2``: ``x_{t+1}(p) ~
    x_{t+2}(p + F_t(p))``, same penalty and normalisation as :func:`data_loss` (the flow is used in pixels as is,
    normalised once inside the warp). Uses ``t = 0 .. T-3``; a 0 connected to ``flow`` when ``T < 3``.
    ``mask`` is indexed like :func:`data_loss`'s, by the flow whose own pair it describes: the pair ``t+1 -> t+2``
    is weighted by ``mask[t + 1]``. Returns a scalar.

    ``pairing="centred"``: ``F_t`` explains the pairs just before and just after its own (``t-2 -> t-1`` for
    ``t >= 2`` and ``t -> t+1`` for ``t <= T-2``, the mean of both), so the prior looks as far back as forward.
    """
    _check_inputs_flow(inputs, flow, "time_consistency_loss")
    _check_pairing(pairing, "time_consistency_loss")
    if inputs.shape[0] < 3:
        return _zero(flow)
    m = _mask_5d(mask, inputs, "time_consistency_loss")
    if pairing == "next":
        return _photometric(inputs[1:-1], inputs[2:], flow[:-2], None if m is None else m[1:-1], blur_sigma, eps)
    after = _photometric(inputs[:-1], inputs[1:], flow[:-1], None if m is None else m[1:], blur_sigma, eps)
    before = _photometric(inputs[:-2], inputs[1:-1], flow[2:], None if m is None else m[1:-1], blur_sigma, eps)
    return 0.5 * (after + before)


def warp_micro_bins(
    micro: torch.Tensor, flow: torch.Tensor, times: torch.Tensor, ref_time: float = 0.0
) -> torch.Tensor:
    """Moves every micro-bin image to time ``ref_time`` (fractions of a bin) assuming a constant flow in the bin.

    Args:
        micro: ``(N, K, P, H, W)`` micro-bin images (K micro bins of P channels).
        flow: ``(N, 2, H, W)`` pixels per bin.
        times: ``(K,)`` time of each micro bin as a fraction of the bin.
        ref_time: the time to warp to.

    Returns:
        ``(N, K, P, H, W)``: ``x_k(p + (tau_k - ref_time) * F(p))`` (backward sampling: a flow pointing outside
        just reads zeros, it cannot pile events up).
    """
    n, k, p, h, w = micro.shape
    fractions = (times.to(device=flow.device, dtype=flow.dtype) - ref_time).view(1, k, 1, 1, 1)
    flows = (flow.unsqueeze(1) * fractions).reshape(n * k, 2, h, w)
    warped = backward_warp(micro.reshape(n * k, p, h, w), flows)
    return warped.view(n, k, p, h, w)


def image_of_warped_events(
    micro: torch.Tensor, flow: torch.Tensor, times: torch.Tensor, ref_time: float = 0.0
) -> torch.Tensor:
    """Sum over K of :func:`warp_micro_bins`: ``(N, K, P, H, W) -> (N, P, H, W)``, the image of warped events."""
    return warp_micro_bins(micro, flow, times, ref_time).sum(dim=1)


def bins_warped_to_start(inputs: torch.Tensor, flow: torch.Tensor, channels_per_micro_bin: int = 2) -> torch.Tensor:
    """Each bin's image of warped events at its start: inputs ``(T, B, C, H, W)``, flow ``(T, B, 2, H, W)`` ->
    ``(T, B, P, H, W)``.

    Micro bin ``k`` of bin ``t`` is sampled at ``p + tau_k * F_t(p)`` (:func:`warp_micro_bins`) and the ``K`` micro
    bins summed (``P = channels_per_micro_bin``). With the true flow this is the edge map of the scene at the bin start,
    the time the flow labels describe: an object's edge that sweeps over background pixels during the bin is moved
    back to where it started, so the swept pixels no longer hold events that move with the object.
    """
    micro = split_micro_bins(inputs, channels_per_micro_bin)
    t, b, k = micro.shape[:3]
    iwe = image_of_warped_events(micro.flatten(0, 1), flow.flatten(0, 1), micro_bin_times(k), 0.0)
    return iwe.view(t, b, *iwe.shape[1:])


def unoccluded_mask(flow: torch.Tensor, max_density: float = 1.5) -> torch.Tensor:
    """Pixels of each bin whose target in the next bin is not shared with another surface: ``(T, B, 2, H, W) ->
    (T, B, 1, H, W)`` float (no gradient).

    A pixel ``p`` of bin ``t`` is left out when the :func:`~evframe.tasks.flow.warping.forward_density` of ``F_t`` at
    ``p + F_t(p)`` exceeds ``max_density``: two surfaces land there, as where an object moves onto the background.
    There the background pixels it covers hold, during the bin, the events of the object's edge sweeping over them;
    compared with the next bin they are explained best by giving the background the object's motion, while the labels
    give them the background's. Leaving them out of the photometric terms takes away that reward for a halo of object
    motion around moving objects.
    """
    _check_flow(flow, "unoccluded_mask")
    t, b = flow.shape[:2]
    flat = flow.detach().flatten(0, 1)
    density = backward_warp(forward_density(flat), flat)
    return (density <= max_density).to(flow.dtype).view(t, b, 1, *flow.shape[-2:])


def undisoccluded_mask(flow: torch.Tensor, max_density: float = 1.5) -> torch.Tensor:
    """Pixels of each bin whose source in the previous bin is not shared with another surface: :func:`unoccluded_mask`
    of the reversed flow, ``(T, B, 2, H, W) -> (T, B, 1, H, W)`` float (no gradient).

    Motion assumed constant, the surface at ``p`` came from ``p - F_t(p)``. Where two surfaces come from the same
    place, one of them was hidden there: background that a moving object uncovers. Its pixels hold the events of the
    object's trailing edge sweeping off them, which move with the object; explaining them with the background's
    motion costs, explaining them with the object's does not, so without this mask the photometric terms reward a
    halo of object motion behind moving objects.
    """
    _check_flow(flow, "undisoccluded_mask")
    return unoccluded_mask(-flow, max_density)


def _spatial_variance(x: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Spatial variance per image: ``(..., H, W) -> (...)``; with ``weights`` (broadcastable to ``x``) the weighted
    variance over the pixels they keep."""
    if weights is None:
        return x.var(dim=(-2, -1), unbiased=False)
    weights = weights.expand_as(x)
    total = weights.sum(dim=(-2, -1)).clamp_min(_NORM_EPS)
    mean = (weights * x).sum(dim=(-2, -1)) / total
    return (weights * x * x).sum(dim=(-2, -1)) / total - mean * mean


def bw_deblur_loss(
    inputs: torch.Tensor,
    flow: torch.Tensor,
    mask: torch.Tensor | None = None,
    channels_per_micro_bin: int = 2,
    blur_sigma: float = 1.0,
    eps: float = 1e-3,
    window: int = 1,
    window_start: int = 0,
) -> torch.Tensor:
    """Backward deblurring (contrast maximisation) inside each bin (or a window of ``window`` bins).

    Every micro bin ``k`` (centre time ``tau_k = (k + 0.5) / K`` of the bin, see :func:`split_micro_bins`) is
    warped back to the bin start by sampling at ``p + tau_k * F_t(p)`` giving ``w_k``; their sum is the image of
    warped events (IWE). The loss is::

        -var(IWE) / (K * sum_k var(w_k))        (spatial variances, summed over polarity channels)

    averaged over (t, b); it lies in ``[-1, 0]``: -1 when all warped micro bins coincide (sharpest), about
    ``-1/K`` when they are uncorrelated, 0 when the warp samples only empty space (the degenerate "send
    everything away" flow is the worst possible). Normalising by the variance of the *warped* micro bins rather
    than of the un-warped sum matters: bilinear sampling at sub-pixel positions smooths thin event edges and lowers
    their variance, which would otherwise reward zero or integer flows over the true one. Micro bins are blurred by
    ``blur_sigma`` first (wider basin). When the input has a single micro bin (histo, diff, ...), consecutive bins
    ``x_t`` and ``x_{t+1}`` act as micro bins at times 0 and 1. ``mask[t]`` (on the grid of the IWE of ``F_t``,
    the bin start) keeps the variances to the pixels it weights; ``eps`` is unused (accepted for a uniform
    signature). Returns a scalar.

    ``window > 1``: the micro bins of bins ``t .. t + window - 1`` are all warped back to the start of bin ``t``
    with the flow ``F_t`` (times ``j + tau_k``, in bins), assuming the motion stays constant over the window. The
    displacements, and so the contrast signal, grow ``window`` times: a motion of one pixel per bin becomes
    measurable. Needs ``T >= window`` (else 0).

    ``window_start = -s`` (``0 < s < window``) starts the window ``s`` bins before bin ``t``: the micro bins of bins
    ``t - s .. t - s + window - 1`` (times ``j - s + tau_k``) are warped to the start of bin ``t`` with ``F_t``, for
    ``t = s .. T - window + s``. ``window=2, window_start=-1`` centres the window on the bin start.
    """
    _check_inputs_flow(inputs, flow, "bw_deblur_loss")
    del eps
    m = _mask_5d(mask, inputs, "bw_deblur_loss")
    window, start = int(window), int(window_start)
    if window < 1:
        raise ValueError(f"bw_deblur_loss: window must be >= 1, got {window}")
    if not -window < start <= 0:
        raise ValueError(f"bw_deblur_loss: window_start must be in ({-window}, 0] for window={window}, got {start}")
    micro = split_micro_bins(inputs, channels_per_micro_bin)
    t, b, k = micro.shape[:3]
    if window > 1:
        if t < window:
            return _zero(flow)
        per_bin = micro_bin_times(k)
        micro = torch.cat([micro[j:t - window + 1 + j] for j in range(window)], dim=2)
        times = torch.cat([per_bin + j + start for j in range(window)])
        flow = flow[-start:t - window + 1 - start]
        m = None if m is None else m[-start:t - window + 1 - start]
        k = k * window
    elif k == 1:
        if t < 2:
            return _zero(flow)
        micro = torch.cat((micro[:-1], micro[1:]), dim=2)
        flow = flow[:-1]
        m = None if m is None else m[:-1]
        times = torch.tensor([0.0, 1.0])
        k = 2
    elif window == 1:
        times = micro_bin_times(k)
    micro = micro.flatten(0, 1)
    if blur_sigma > 0:
        shape = micro.shape
        micro = gaussian_blur(micro.flatten(1, 2), blur_sigma).view(shape)
    warped = warp_micro_bins(micro, flow.flatten(0, 1), times, 0.0)
    pixels = None if m is None else m.flatten(0, 1)  # (N, 1, H, W)
    contrast = _spatial_variance(warped.sum(dim=1), pixels).sum(dim=1)
    spread = _spatial_variance(warped, None if pixels is None else pixels.unsqueeze(1)).sum(dim=(1, 2))
    return (-contrast / (k * spread + _NORM_EPS)).mean()


# ---------------------------------------------------------------------------------------------------------------
# regularisers
# ---------------------------------------------------------------------------------------------------------------
def _masked_mean(values: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    if weights is None:
        return values.mean()
    weights = weights.expand_as(values)
    return (values * weights).sum() / (weights.sum() + _NORM_EPS)


def _pair_max(mask: torch.Tensor | None, dim: int, offsets: Sequence[int]) -> torch.Tensor | None:
    """Max of ``mask`` over the pixels a finite difference touches (``offsets`` along ``dim``)."""
    if mask is None:
        return None
    n = mask.shape[dim]
    span = max(offsets)
    parts = [mask.narrow(dim, o, n - span) for o in offsets]
    return torch.stack(parts, 0).amax(0)


def smoothness_loss(flow: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-3) -> torch.Tensor:
    """First-order smoothness: mean Charbonnier of ``F(x+1) - F(x)`` and ``F(y+1) - F(y)`` (both components),
    summed over the two directions. 0 for a constant field. With ``mask``, only differences touching a masked
    pixel count (weighted mean). Returns a scalar."""
    _check_flow(flow, "smoothness_loss")
    m = _mask_5d(mask, flow, "smoothness_loss")
    dx = flow[..., :, 1:] - flow[..., :, :-1]
    dy = flow[..., 1:, :] - flow[..., :-1, :]
    return _masked_mean(charbonnier(dx, eps), _pair_max(m, 4, (0, 1))) + _masked_mean(
        charbonnier(dy, eps), _pair_max(m, 3, (0, 1))
    )


def smoothness2_loss(flow: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-3) -> torch.Tensor:
    """Second-order smoothness: mean Charbonnier of ``F_xx``, ``F_yy`` (``[1, -2, 1]`` stencils) and ``F_xy``
    (2x2 cross difference), summed. 0 for any affine field (rotations, zooms, constant flows). Mask as in
    :func:`smoothness_loss`. Returns a scalar."""
    _check_flow(flow, "smoothness2_loss")
    m = _mask_5d(mask, flow, "smoothness2_loss")
    fxx = flow[..., :, 2:] - 2 * flow[..., :, 1:-1] + flow[..., :, :-2]
    fyy = flow[..., 2:, :] - 2 * flow[..., 1:-1, :] + flow[..., :-2, :]
    fxy = flow[..., 1:, 1:] - flow[..., 1:, :-1] - flow[..., :-1, 1:] + flow[..., :-1, :-1]
    mxy = None if m is None else _pair_max(_pair_max(m, 4, (0, 1)), 3, (0, 1))
    return (
        _masked_mean(charbonnier(fxx, eps), _pair_max(m, 4, (0, 1, 2)))
        + _masked_mean(charbonnier(fyy, eps), _pair_max(m, 3, (0, 1, 2)))
        + _masked_mean(charbonnier(fxy, eps), mxy)
    )


def l1_loss(flow: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute flow component ``mean(|F|)`` over ``(T, B, 2, H, W)`` (masked mean with ``mask``); a
    constant flow ``(a, b)`` gives ``(|a| + |b|) / 2``. Returns a scalar."""
    _check_flow(flow, "l1_loss")
    return _masked_mean(flow.abs(), _mask_5d(mask, flow, "l1_loss"))


# ---------------------------------------------------------------------------------------------------------------
# the module
# ---------------------------------------------------------------------------------------------------------------
def validate_loss_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """Checks the names (subset of :data:`LOSS_NAMES`) and values (finite floats); returns a plain dict."""
    unknown = sorted(set(weights) - set(LOSS_NAMES))
    if unknown:
        raise ValueError(f"flow loss weights: unknown loss name(s) {unknown}; valid names are {list(LOSS_NAMES)}")
    out = {}
    for name, value in weights.items():
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"flow loss weights: weight of {name!r} must be a number, got {value!r}") from None
        if not math.isfinite(value):
            raise ValueError(f"flow loss weights: weight of {name!r} must be finite, got {value}")
        out[name] = value
    return out


class FlowLoss(nn.Module):
    """Weighted multi-scale sum of the flow losses.

    Args:
        weights: ``{name: weight}`` with names from :data:`LOSS_NAMES`; terms absent or weighted 0 are skipped.
        masked_terms: regulariser names (``smoothness``, ``smoothness2``, ``l1``) applied only at pixels with
            events (at the level's resolution); ``True`` means all regularisers.
        channels_per_micro_bin: see :func:`split_micro_bins` (2 for event_cube with split polarity).
        blur_sigma: Gaussian blur (pixels of each level) of the tensors compared by the task terms.
        eps: Charbonnier epsilon.
        level_weights: optional weight per pyramid level (coarse to fine); default: see ``coarse_level_decay``.
        coarse_level_decay: without ``level_weights``, level ``j`` of ``L`` (0 = coarsest) weighs
            ``coarse_level_decay ** (L - 1 - j)``: the finest level 1, each coarser one ``coarse_level_decay`` times
            the next finer (1: every level alike, as Metavision). A coarse pixel mixes an object with the
            background around it; a smaller weight there keeps the blurred object motion of the coarse levels
            from spreading into the background of the finest one.
        deblur_window: bins warped together by ``bw_deblur`` (1: each bin alone, as Metavision; see
            :func:`bw_deblur_loss`).
        occlusion_masked: ``data`` and ``time_consistency`` leave out the pixels that move onto pixels another surface
            also moves onto (:func:`unoccluded_mask`); False compares every pixel, as Metavision.
        occlusion_max_density: forward density above which a target counts as shared (1 = one pixel's worth).
        disocclusion_masked: ``data`` and ``time_consistency`` also leave out the pixels that come from where another
            surface also comes from (:func:`undisoccluded_mask`: background uncovered by a moving object); False, as
            Metavision, compares them.
        deblur_masked: ``bw_deblur`` measures contrast only on the pixels the (dis)occlusion masks keep (False: on
            every pixel, as Metavision).
        motion_compensated: ``data`` and ``time_consistency`` compare the bins' images of warped events at their
            start (:func:`bins_warped_to_start`) instead of the raw bins (False, as Metavision).
        pairing: which bins explain each bin's flow (:data:`PAIRINGS`): ``"next"`` as Metavision, ``"centred"`` the
            bins around the bin start, the time the flow labels describe; ``bw_deblur`` then warps the
            ``2 * deblur_window`` bins around the bin start (``window_start=-deblur_window``).

    ``forward(inputs (T, B, C, H, W), flows: list of (T, B, 2, h_s, w_s) coarse to fine (or one tensor), mask=None)``
    returns ``{name: weighted term summed over levels, ..., "loss": total}`` (scalar tensors).
    """

    def __init__(
        self,
        weights: Mapping[str, float] | None = None,
        masked_terms: Iterable[str] | bool = (),
        channels_per_micro_bin: int = 2,
        blur_sigma: float = 1.0,
        eps: float = 1e-3,
        level_weights: Sequence[float] | None = None,
        deblur_window: int = 1,
        coarse_level_decay: float = 1.0,
        motion_compensated: bool = False,
        occlusion_masked: bool = False,
        occlusion_max_density: float = 1.5,
        pairing: str = "next",
        disocclusion_masked: bool = False,
        deblur_masked: bool = False,
    ) -> None:
        super().__init__()
        self.disocclusion_masked = bool(disocclusion_masked)
        self.deblur_masked = bool(deblur_masked)
        _check_pairing(pairing, "FlowLoss")
        self.pairing = pairing
        if not float(occlusion_max_density) > 1.0:
            raise ValueError(f"FlowLoss: occlusion_max_density must be > 1 (a smooth flow gives 1 everywhere), got "
                             f"{occlusion_max_density}")
        self.occlusion_masked = bool(occlusion_masked)
        self.occlusion_max_density = float(occlusion_max_density)
        self.motion_compensated = bool(motion_compensated)
        if int(deblur_window) < 1:
            raise ValueError(f"FlowLoss: deblur_window must be >= 1, got {deblur_window}")
        if not (math.isfinite(float(coarse_level_decay)) and float(coarse_level_decay) >= 0):
            raise ValueError(f"FlowLoss: coarse_level_decay must be a finite number >= 0, got {coarse_level_decay}")
        self.coarse_level_decay = float(coarse_level_decay)
        self.deblur_window = int(deblur_window)
        self.weights = validate_loss_weights(DEFAULT_LOSS_WEIGHTS if weights is None else weights)
        if masked_terms is True:
            masked_terms = REGULARISERS
        elif masked_terms is False or masked_terms is None:
            masked_terms = ()
        masked_terms = tuple(masked_terms)
        bad = sorted(set(masked_terms) - set(REGULARISERS))
        if bad:
            raise ValueError(f"FlowLoss: masked_terms {bad} are not regularisers {list(REGULARISERS)}")
        self.masked_terms = masked_terms
        self.channels_per_micro_bin = int(channels_per_micro_bin)
        self.blur_sigma = float(blur_sigma)
        self.eps = float(eps)
        self.level_weights = None if level_weights is None else [float(w) for w in level_weights]

    def level_weight(self, level: int, num_levels: int) -> float:
        """Weight of pyramid level ``level`` (0 = coarsest) of ``num_levels``."""
        if self.level_weights is not None:
            return self.level_weights[level]
        return self.coarse_level_decay ** (num_levels - 1 - level)

    def extra_repr(self) -> str:
        return (f"weights={self.weights}, masked_terms={self.masked_terms}, blur_sigma={self.blur_sigma}, "
                f"pairing={self.pairing}")

    def level_terms(
        self, inputs: torch.Tensor, flow: torch.Tensor, mask: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Unweighted terms (non-zero weight only) for one level; ``inputs`` already at the flow's size."""
        _check_inputs_flow(inputs, flow, "FlowLoss")
        out: dict[str, torch.Tensor] = {}
        active = [name for name, weight in self.weights.items() if weight != 0]
        blurred = None
        if any(name in TASK_TERMS for name in active):
            # Blur once per level: every task term compares the same blurred bins (the blur is per channel, so
            # blurring before splitting micro bins is the same as after).
            blurred = _blur5(inputs, self.blur_sigma)
        events = event_mask(inputs) if self.masked_terms else None
        compared, photometric_mask = blurred, None
        photometric = any(name in ("data", "time_consistency") for name in active)
        masked = photometric or (self.deblur_masked and "bw_deblur" in active)
        if self.motion_compensated and photometric:
            compared = bins_warped_to_start(blurred, flow, self.channels_per_micro_bin)
        if self.occlusion_masked and masked:
            # mask of bin t from F_t; time_consistency (bin t+1 warped by F_t) uses that of F_{t+1}, its own step
            photometric_mask = unoccluded_mask(flow, self.occlusion_max_density)
        if self.disocclusion_masked and masked:
            uncovered = undisoccluded_mask(flow, self.occlusion_max_density)
            photometric_mask = uncovered if photometric_mask is None else photometric_mask * uncovered
        if mask is not None and masked:
            # the photometric masks are indexed by the flow whose pair they weigh; a centred pair's reference is the
            # previous bin, so the caller's mask of bin t - 1 weighs the pair of F_t
            pixels = _mask_5d(mask, inputs, "FlowLoss")
            if self.pairing == "centred":
                pixels = torch.cat((pixels[:1], pixels[:-1]))
            photometric_mask = pixels if photometric_mask is None else photometric_mask * pixels
        window, window_start = self.deblur_window, 0
        if self.pairing == "centred":
            window, window_start = 2 * self.deblur_window, -self.deblur_window
        for name in active:
            if name == "data":
                out[name] = data_loss(compared, flow, photometric_mask, 0.0, self.eps, self.pairing)
            elif name == "time_consistency":
                out[name] = time_consistency_loss(compared, flow, photometric_mask, 0.0, self.eps, self.pairing)
            elif name == "bw_deblur":
                out[name] = bw_deblur_loss(blurred, flow, photometric_mask if self.deblur_masked else None,
                                           self.channels_per_micro_bin, 0.0, window=window, window_start=window_start)
            else:
                reg_mask = events if name in self.masked_terms else None
                if reg_mask is not None and mask is not None:
                    reg_mask = reg_mask * _mask_5d(mask, inputs, "FlowLoss")
                if name == "smoothness":
                    out[name] = smoothness_loss(flow, reg_mask, self.eps)
                elif name == "smoothness2":
                    out[name] = smoothness2_loss(flow, reg_mask, self.eps)
                else:
                    out[name] = l1_loss(flow, reg_mask)
        return out

    def forward(
        self,
        inputs: torch.Tensor,
        flows: torch.Tensor | Sequence[torch.Tensor],
        mask: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        if isinstance(flows, torch.Tensor):
            flows = [flows]
        if len(flows) == 0:
            raise ValueError("FlowLoss: flows is an empty list")
        if inputs.ndim != 5:
            raise ValueError(f"FlowLoss: inputs must be (T, B, C, H, W), got shape {tuple(inputs.shape)}")
        if self.level_weights is not None and len(self.level_weights) != len(flows):
            raise ValueError(f"FlowLoss: {len(self.level_weights)} level_weights for {len(flows)} flow levels")
        full_mask = _mask_5d(mask, inputs, "FlowLoss") if mask is not None else None
        totals: dict[str, torch.Tensor] = {}
        for level, flow in enumerate(flows):
            _check_flow(flow, f"FlowLoss (level {level})")
            size = tuple(flow.shape[-2:])
            level_inputs = resize_inputs(inputs, size)
            level_mask = None if full_mask is None else resize_mask(full_mask, size)
            lw = self.level_weight(level, len(flows))
            for name, value in self.level_terms(level_inputs, flow, level_mask).items():
                weighted = value * (self.weights[name] * lw)
                totals[name] = totals[name] + weighted if name in totals else weighted
        total = sum(totals.values()) if totals else _zero(flows[-1])
        totals["loss"] = total
        return totals
