"""Losses of event-to-video reconstruction, each a weight in ``conf/loss/e2v.yaml`` (0 disables a term).

* ``l1``: mean absolute error to the target frames;
* ``ssim``: ``1 - SSIM`` (torchmetrics' Gaussian-window SSIM, data range 1);
* ``temporal_consistency``: the previous output, warped to the current time with the clip's known flow, should
  match the current output where the target frames agree after the same warp (occlusions, brightness changes and
  points that come from outside the frame are masked out), as in Rebecq et al.'s training;
* ``perceptual``: L1 between deep features of output and target, computed by a torchvision VGG whose weights the
  user provides as a file (nothing is ever downloaded): enabling the term without weights is a config error.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.functional.image import structural_similarity_index_measure

from evframe.tasks.flow.warping import backward_warp

TERMS = ("l1", "ssim", "temporal_consistency", "perceptual")
#: torchvision VGG feature configurations usable by the perceptual loss
VGG_ARCHS = ("vgg11", "vgg13", "vgg16", "vgg19")
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def ssim_per_image(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SSIM of every image of ``(N, C, H, W)`` pairs in [0, 1] (Gaussian window 11, sigma 1.5); returns ``(N,)``."""
    return structural_similarity_index_measure(pred, target, data_range=1.0, reduction="none")


class PerceptualLoss(nn.Module):
    """L1 distance between VGG features (grayscale replicated to RGB, ImageNet normalisation).

    Args:
        weights_path: a torchvision VGG ``state_dict`` file (the whole network's, or one holding only the
            ``features.*`` keys used here). Required: nothing is downloaded.
        arch: one of :data:`VGG_ARCHS`.
        num_layers: how many modules of ``vgg.features`` are used (9: up to relu2_2 of vgg16).
    """

    def __init__(self, weights_path: str | os.PathLike, arch: str = "vgg16", num_layers: int = 9) -> None:
        super().__init__()
        from torchvision.models import vgg as tv_vgg

        if arch not in VGG_ARCHS:
            raise ValueError(f"loss.perceptual.arch={arch!r} is not one of {VGG_ARCHS}")
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"loss.perceptual.weights_path: '{path}' does not exist (a torchvision {arch} "
                                    "state_dict file is needed; nothing is downloaded)")
        letter = {"vgg11": "A", "vgg13": "B", "vgg16": "D", "vgg19": "E"}[arch]
        features = tv_vgg.make_layers(tv_vgg.cfgs[letter])
        if not 1 <= int(num_layers) <= len(features):
            raise ValueError(f"loss.perceptual.num_layers must be in [1, {len(features)}] for {arch}, got {num_layers}")
        self.features = features[: int(num_layers)]
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, Mapping) else state
        if not isinstance(state, Mapping):
            raise ValueError(f"loss.perceptual.weights_path: '{path}' does not hold a state_dict")
        wanted = self.features.state_dict()
        picked = {k: state.get(f"features.{k}") for k in wanted}
        missing = [f"features.{k}" for k, v in picked.items() if v is None]
        if missing:
            raise ValueError(f"loss.perceptual.weights_path: '{path}' lacks {missing[:4]} for {arch} "
                             f"(first {num_layers} feature modules)")
        bad = [f"features.{k}" for k, v in picked.items() if tuple(v.shape) != tuple(wanted[k].shape)]
        if bad:
            raise ValueError(f"loss.perceptual.weights_path: '{path}' has tensors of the wrong shape for {arch}: "
                             f"{bad[:4]}")
        self.features.load_state_dict(picked)
        self.features.requires_grad_(False).eval()
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> PerceptualLoss:
        super().train(mode)
        self.features.eval()  # frozen feature extractor: never in training mode
        return self

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features((x.expand(-1, 3, -1, -1) - self.mean) / self.std)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``pred``, ``target`` (N, 1, H, W) in [0, 1] -> scalar."""
        return F.l1_loss(self._features(pred), self._features(target))


def temporal_consistency(pred: torch.Tensor, target: torch.Tensor, flow: torch.Tensor, flow_mask: torch.Tensor,
                         pairs: torch.Tensor, alpha: float = 50.0) -> torch.Tensor | None:
    """Mean masked ``|pred_t - warp(pred_{t-1})|`` over consecutive bins (t-1, t) of the batch.

    Args:
        pred, target: ``(T, B, 1, H, W)``.
        flow: ``(T, B, 2, H, W)`` backward flow from bin t-1's target to bin t's (pixels).
        flow_mask: ``(T, B, H, W)`` where that flow is defined.
        pairs: ``(T, B)`` bool, pairs (t-1, t) to use (row 0 is ignored).
        alpha: the mask also weighs pixels by ``exp(-alpha * (target_t - warp(target_{t-1}))**2)`` (occlusions and
            brightness changes break consistency there).
    Returns:
        scalar, or None when no pair is usable.
    """
    use = pairs[1:]
    if not bool(use.any()):
        return None
    t_idx, b_idx = torch.nonzero(use, as_tuple=True)
    prev_pred, cur_pred = pred[t_idx, b_idx], pred[t_idx + 1, b_idx]
    prev_tgt, cur_tgt = target[t_idx, b_idx], target[t_idx + 1, b_idx]
    f = flow[t_idx + 1, b_idx]
    warped_pred = backward_warp(prev_pred, f)
    warped_tgt = backward_warp(prev_tgt, f)
    weight = flow_mask[t_idx + 1, b_idx].unsqueeze(1).to(pred.dtype) * torch.exp(-alpha * (cur_tgt - warped_tgt) ** 2)
    return (weight * (cur_pred - warped_pred).abs()).sum() / weight.sum().clamp_min(1.0)


class E2VLoss(nn.Module):
    """Weighted sum of the reconstruction terms of :data:`TERMS`.

    Args:
        weights: ``{term: weight}``; missing terms weigh 0.
        perceptual: options of :class:`PerceptualLoss` (``weights_path``, ``arch``, ``num_layers``); needed only
            when ``weights.perceptual > 0``.
        tc_alpha: see :func:`temporal_consistency`.

    ``forward(pred, target, valid, flow=None, flow_mask=None, flow_valid=None)`` with ``pred``/``target``
    ``(T, B, 1, H, W)`` and ``valid`` ``(T, B)`` (bins that have a target) returns ``{term: value, "loss": total}``
    (terms with weight 0 or nothing to compare are left out; the total is 0 when nothing is valid).
    """

    def __init__(self, weights: Mapping[str, float], perceptual: Mapping | None = None, tc_alpha: float = 50.0) -> None:
        super().__init__()
        unknown = sorted(set(weights) - set(TERMS))
        if unknown:
            raise ValueError(f"loss.weights: unknown term(s) {unknown}; expected {list(TERMS)}")
        self.weights = {k: float(weights.get(k, 0.0)) for k in TERMS}
        negative = [k for k, v in self.weights.items() if v < 0]
        if negative:
            raise ValueError(f"loss.weights: {negative} must be >= 0")
        self.tc_alpha = float(tc_alpha)
        self.perceptual: PerceptualLoss | None = None
        if self.weights["perceptual"] > 0:
            options = dict(perceptual or {})
            if not options.get("weights_path"):
                raise ValueError("loss.weights.perceptual > 0 needs loss.perceptual.weights_path: a torchvision VGG "
                                 "state_dict file (nothing is downloaded); or set loss.weights.perceptual=0")
            self.perceptual = PerceptualLoss(**options)

    def forward(self, pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                flow: torch.Tensor | None = None, flow_mask: torch.Tensor | None = None,
                flow_valid: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if pred.shape != target.shape or pred.ndim != 5 or tuple(valid.shape) != tuple(pred.shape[:2]):
            raise ValueError(f"E2VLoss: pred {tuple(pred.shape)} and target {tuple(target.shape)} must be "
                             f"(T, B, C, H, W) with valid (T, B), got valid {tuple(valid.shape)}")
        terms: dict[str, torch.Tensor] = {}
        valid = valid.bool()
        p, t = pred[valid], target[valid]
        if p.shape[0]:
            if self.weights["l1"] > 0:
                terms["l1"] = F.l1_loss(p, t)
            if self.weights["ssim"] > 0:
                terms["ssim"] = 1.0 - ssim_per_image(p, t).mean()
            if self.perceptual is not None:
                terms["perceptual"] = self.perceptual(p, t)
        if self.weights["temporal_consistency"] > 0 and flow is not None and flow_valid is not None:
            pairs = valid & flow_valid.bool()
            pairs = pairs & torch.cat([torch.zeros_like(pairs[:1]), pairs[:-1]])  # both bins of the pair valid
            tc = temporal_consistency(pred, target, flow, flow_mask, pairs, self.tc_alpha)
            if tc is not None:
                terms["temporal_consistency"] = tc
        # starts from 0 * pred so that the total stays in the graph even when no term applies
        total = sum((self.weights[k] * v for k, v in terms.items()), (pred * 0).sum())
        terms["loss"] = total
        return terms
