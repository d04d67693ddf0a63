"""Synthetic moving-texture event tensors with a known flow, for the flow loss / network tests.

A texture of random soft-edged disks is moved analytically (no resampling error): ``I(p, s)`` at continuous time
``s`` (in bins). Micro bin ``k`` of bin ``t`` is the temporal difference ``I(t + (k+1)/K) - I(t + k/K)`` split into
a negative (channel ``2k``) and a positive (channel ``2k+1``) part, as an event_cube with split polarity.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

Motion = Callable[[torch.Tensor, torch.Tensor, float], tuple[torch.Tensor, torch.Tensor]]
SIZE = 40


def make_texture(seed: int = 0, n_blobs: int = 14, size: int = SIZE) -> Callable[..., torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centers = torch.rand(n_blobs, 2, generator=g, dtype=torch.float64) * size
    radii = 3 + torch.rand(n_blobs, generator=g, dtype=torch.float64) * 5
    amps = torch.rand(n_blobs, generator=g, dtype=torch.float64) * 2 - 1

    def texture(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(x)
        for c, r, a in zip(centers, radii, amps, strict=True):
            d = torch.sqrt((x - c[0]) ** 2 + (y - c[1]) ** 2)
            out = out + a * torch.sigmoid((r - d) / 0.4)  # sharp (sub-pixel) edges
        return out

    return texture


def translation(v: tuple[float, float]) -> Motion:
    """Content moves by ``v`` pixels per bin: the image at time s is the texture sampled at ``p - v s``."""

    def motion(xs: torch.Tensor, ys: torch.Tensor, s: float) -> tuple[torch.Tensor, torch.Tensor]:
        return xs - v[0] * s, ys - v[1] * s

    return motion


def rotation(theta: float, center: tuple[float, float]) -> Motion:
    """Content rotates by ``theta`` radians per bin around ``center``."""

    def motion(xs: torch.Tensor, ys: torch.Tensor, s: float) -> tuple[torch.Tensor, torch.Tensor]:
        a = -theta * s
        dx, dy = xs - center[0], ys - center[1]
        return center[0] + math.cos(a) * dx - math.sin(a) * dy, center[1] + math.sin(a) * dx + math.cos(a) * dy

    return motion


def rotation_flow(theta: float, center: tuple[float, float], h: int = SIZE, w: int = SIZE) -> torch.Tensor:
    """Exact displacement over one bin of the rotation, ``(2, H, W)``: ``R(theta)(p - c) + c - p``."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    dx, dy = xs - center[0], ys - center[1]
    fx = math.cos(theta) * dx - math.sin(theta) * dy - dx
    fy = math.sin(theta) * dx + math.cos(theta) * dy - dy
    return torch.stack([fx, fy])


def render(texture, motion: Motion, num_tbins: int = 4, num_utbins: int = 3, h: int = SIZE, w: int = SIZE,
           threshold: float = 0.01) -> torch.Tensor:
    """event_cube-like tensor ``(T, 1, 2*K, H, W)`` float32 of the moving texture."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    return render_images(lambda s: texture(*motion(xs, ys, s)), num_tbins, num_utbins, threshold)


def render_images(image: Callable[[float], torch.Tensor], num_tbins: int = 4, num_utbins: int = 3,
                  threshold: float = 0.01) -> torch.Tensor:
    """event_cube-like tensor ``(T, 1, 2*K, H, W)`` float32 of the brightness ``image(s)`` at time ``s`` (bins).

    Micro bin ``k`` of bin ``t`` is ``image(t + (k+1)/K) - image(t + k/K)`` split into its negative and positive
    parts; changes under ``threshold`` leave no event (a sparse tensor, like a sensor's)."""
    bins = []
    for t in range(num_tbins):
        channels = []
        for k in range(num_utbins):
            diff = image(t + (k + 1) / num_utbins) - image(t + k / num_utbins)
            diff = torch.where(diff.abs() < threshold, torch.zeros_like(diff), diff)
            channels += [torch.relu(-diff), torch.relu(diff)]
        bins.append(torch.stack(channels))
    return torch.stack(bins)[:, None].float()


def constant_flow(v: tuple[float, float], num_tbins: int = 4, h: int = SIZE, w: int = SIZE) -> torch.Tensor:
    flow = torch.zeros(num_tbins, 1, 2, h, w)
    flow[:, :, 0] = v[0]
    flow[:, :, 1] = v[1]
    return flow


@pytest.fixture(autouse=True)
def _single_torch_thread():
    """Tiny tensors gain nothing from intra-op threads, and on a busy 2-core machine oversubscribed OpenMP threads
    make CPU convolutions ~10x slower; restored after each test."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


TRUE_V = (2.0, -1.0)
THETA, CENTER = 0.08, (20.0, 20.0)


@pytest.fixture(scope="session")
def translation_case() -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs (4, 1, 6, 40, 40), true flow (4, 1, 2, 40, 40)) for a texture moving (+2, -1) px per bin."""
    return render(make_texture(0), translation(TRUE_V)), constant_flow(TRUE_V)


@pytest.fixture(scope="session")
def rotation_case() -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, true flow) for a texture rotating 0.08 rad per bin around the image centre."""
    flow = rotation_flow(THETA, CENTER).expand(4, 1, 2, SIZE, SIZE).contiguous()
    return render(make_texture(1), rotation(THETA, CENTER)), flow
