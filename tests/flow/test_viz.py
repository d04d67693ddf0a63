"""Flow visualisation: dtypes/shapes, colours by direction, arrows only where flow is shown."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evframe.tasks.flow.viz import convert_to_gray, draw_arrows, draw_flow_on_grid, flow_to_rgb, get_arrows


def _block_flow(h: int = 64, w: int = 64, v: tuple[float, float] = (8.0, 0.0)) -> np.ndarray:
    flow = np.zeros((2, h, w), np.float32)
    flow[0, 24:40, 24:40] = v[0]
    flow[1, 24:40, 24:40] = v[1]
    return flow


def test_convert_to_gray():
    img = np.zeros((4, 5, 3), np.uint8)
    img[..., 0] = 255  # pure red
    gray = convert_to_gray(img)
    assert gray.shape == (4, 5, 3) and gray.dtype == np.uint8
    assert (gray == 76).all()  # 0.299 * 255
    assert convert_to_gray(np.full((4, 5), 9, np.uint8)).shape == (4, 5, 3)
    with pytest.raises(ValueError, match="uint8"):
        convert_to_gray(img.astype(np.float32))


def test_flow_to_rgb_colours():
    flow = np.zeros((2, 3, 3), np.float32)
    flow[0, 0, 0] = 2.0  # +x -> hue 0 -> red, brightest
    flow[0, 1, 1] = 1.0  # half magnitude
    flow[1, 2, 2] = -2.0  # -y (up on screen) -> hue 135 (270 deg) -> violet-blue
    rgb = flow_to_rgb(torch.from_numpy(flow))
    assert rgb.shape == (3, 3, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == [255, 0, 0]
    assert rgb[1, 1, 0] == 127 and rgb[1, 1, 1:].tolist() == [0, 0]
    assert rgb[0, 1].tolist() == [0, 0, 0]  # zero flow is black
    assert rgb[2, 2, 2] == 255 and rgb[2, 2, 1] == 0


def test_arrows_only_where_flow_is_nonzero_and_unmasked():
    flow = _block_flow()
    out = draw_arrows(np.zeros((64, 64, 3), np.uint8), flow, step=8)
    drawn = out.any(axis=2)
    assert drawn[24:40, 24:48].any()  # arrows start in the block and point +8 px in x
    outside = drawn.copy()
    outside[20:44, 20:52] = False
    assert not outside.any()
    # +x arrows are red
    assert (out[drawn][:, 0] >= out[drawn][:, 1]).all() and out[drawn][:, 0].max() > 100
    mask = np.ones((64, 64), bool)
    mask[24:40, 24:40] = False
    assert not draw_arrows(np.zeros((64, 64, 3), np.uint8), flow, step=8, mask=mask).any()
    assert not draw_arrows(np.zeros((64, 64, 3), np.uint8), flow * 0.05, step=8).any()  # below threshold


def test_get_arrows_canvas():
    out = get_arrows(torch.from_numpy(_block_flow()))
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8 and out.any()
    base = np.full((64, 64, 3), 30, np.uint8)
    out = get_arrows(_block_flow(), base_img=base, step=8)
    assert (out[0, 0] == 30).all()  # background kept (as gray)
    with pytest.raises(ValueError, match=r"\(2, H, W\)"):
        get_arrows(np.zeros((3, 8, 8)))


def test_draw_flow_on_grid():
    t_bins, batch, h, w = 2, 3, 32, 32
    inputs = np.zeros((t_bins, batch, 2, h, w), np.float32)
    inputs[:, :, :, 8:24, 8:24] = 1.0
    fine = torch.zeros(t_bins, batch, 2, h, w)
    fine[:, :, 0] = 6.0
    coarse = fine[..., ::2, ::2] / 2
    grid = np.zeros((t_bins, 2 * h, 2 * w, 3), np.uint8)

    def make_img(x: np.ndarray) -> np.ndarray:
        return np.zeros((h, w, 3), np.uint8)

    out = draw_flow_on_grid(inputs, [coarse, fine], grid, make_img, scale=0, step=8)
    assert out is grid
    for b in range(batch):
        row, col = divmod(b, 2)
        cell = grid[:, row * h: (row + 1) * h, col * w: (col + 1) * w]
        assert cell.any()
        assert not cell[:, :6].any()  # no arrow starts outside the events (mask_by_input)
    assert not grid[:, h:, w:].any()  # the 4th cell is empty
    dense = draw_flow_on_grid(inputs, [coarse, fine], np.zeros_like(grid), make_img, draw_dense=True)
    assert (dense[0, 8:24, 8:24] == [255, 0, 0]).all()  # +x, uniform magnitude -> pure red inside the events
    assert not dense[0, :8].any()
    with pytest.raises(ValueError, match="grid"):
        draw_flow_on_grid(inputs, [fine], np.zeros((2, 33, 64, 3), np.uint8), make_img)
