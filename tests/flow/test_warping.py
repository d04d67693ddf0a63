"""Backward warping: integer shifts equal torch.roll, sub-pixel shifts of a ramp are exact, one normalisation."""

from __future__ import annotations

import pytest
import torch

from evframe.tasks.flow.warping import Warper, backward_warp, flow_to_sampling_grid, pixel_grid, warp_by_fraction


def _const_flow(n: int, h: int, w: int, dx: float, dy: float) -> torch.Tensor:
    flow = torch.zeros(n, 2, h, w)
    flow[:, 0] = dx
    flow[:, 1] = dy
    return flow


@pytest.mark.parametrize("h,w", [(7, 11), (12, 5)])
@pytest.mark.parametrize("dx,dy", [(2, -1), (-3, 2), (0, 1)])
def test_integer_flow_equals_roll(h, w, dx, dy):
    x = torch.randn(2, 3, h, w)
    out = backward_warp(x, _const_flow(2, h, w, dx, dy))
    # out[y, x] = x[y + dy, x + dx]  <=>  roll by (-dy, -dx)
    rolled = torch.roll(x, shifts=(-dy, -dx), dims=(-2, -1))
    ys = slice(max(0, -dy), h - max(0, dy))
    xs = slice(max(0, -dx), w - max(0, dx))
    assert torch.allclose(out[..., ys, xs], rolled[..., ys, xs], atol=1e-5)
    # what would come from outside the image is zero
    inside = torch.zeros(h, w, dtype=torch.bool)
    inside[ys, xs] = True
    assert (out[..., ~inside] == 0).all()


def test_subpixel_shift_of_a_ramp_is_exact():
    h, w = 6, 10
    ramp = pixel_grid(h, w)[0].expand(1, 1, h, w)  # value = x coordinate
    out = backward_warp(ramp, _const_flow(1, h, w, 0.25, 0.0))
    assert torch.allclose(out[..., :, : w - 1], ramp[..., :, : w - 1] + 0.25, atol=1e-5)


def test_grid_normalised_once():
    """Pixel x maps to 2x/(W-1) - 1: the corners hit exactly -1 and +1."""
    grid = flow_to_sampling_grid(torch.zeros(1, 2, 5, 9))
    assert grid[0, 0, 0].tolist() == pytest.approx([-1.0, -1.0])
    assert grid[0, -1, -1].tolist() == pytest.approx([1.0, 1.0])
    grid = flow_to_sampling_grid(_const_flow(1, 5, 9, 4.0, 2.0))
    assert grid[0, 0, 0].tolist() == pytest.approx([0.0, 0.0])  # (0,0) + (4,2) is the centre of 9x5


def test_five_dim_and_fraction():
    x = torch.randn(3, 2, 4, 8, 8)
    flow = torch.zeros(3, 2, 2, 8, 8)
    flow[:, :, 0] = 4.0
    out = warp_by_fraction(x, flow, 0.5)
    assert out.shape == x.shape
    assert torch.allclose(out[..., :, :6], x[..., :, 2:], atol=1e-5)
    assert torch.allclose(Warper()(x, flow, 0.5), out)


def test_gradient_reaches_flow():
    x = torch.randn(1, 1, 8, 8)
    flow = _const_flow(1, 8, 8, 0.3, -0.2).requires_grad_(True)
    backward_warp(x, flow).square().sum().backward()
    assert torch.isfinite(flow.grad).all() and flow.grad.abs().sum() > 0


def test_shape_errors():
    with pytest.raises(ValueError, match="flow must have shape"):
        backward_warp(torch.zeros(1, 3, 8, 8), torch.zeros(1, 2, 8, 7))
    with pytest.raises(ValueError, match="expected x"):
        backward_warp(torch.zeros(3, 8, 8), torch.zeros(2, 8, 8))
    with pytest.raises(ValueError, match="mode"):
        Warper("bicubic")
