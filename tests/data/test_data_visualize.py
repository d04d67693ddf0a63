"""Rendering of input tensors and batch grids."""

import numpy as np
import pytest
import torch

from evframe.data.visualize import batch_frames, get_vis_func, make_grid, vis_diff, vis_generic, vis_histo


def test_vis_histo_colors():
    x = np.zeros((2, 2, 3), dtype=np.float32)
    x[0, 0, 0] = 2.0  # OFF only -> red
    x[1, 0, 1] = 4.0  # ON only -> blue
    x[0, 1, 2], x[1, 1, 2] = 2.0, 4.0  # both -> white
    img = vis_histo(torch.from_numpy(x))
    assert img.dtype == np.uint8 and img.shape == (2, 3, 3)
    assert img[0, 0].tolist() == [255, 0, 0]
    assert img[0, 1].tolist() == [0, 0, 255]
    assert img[1, 2].tolist() == [255, 255, 255]
    assert img[1, 0].tolist() == [0, 0, 0]


def test_vis_diff_gray_around_128():
    x = np.array([[[-2.0, 0.0, 1.0]]], dtype=np.float32)
    img = vis_diff(x)
    assert img[0, :, 0].tolist() == [1, 128, 192]
    assert (img[..., 0] == img[..., 2]).all()


def test_registry_and_fallback():
    assert get_vis_func("histo") is vis_histo
    assert get_vis_func("no_such_preprocess") is vis_generic
    assert get_vis_func("event_cube")(np.ones((6, 4, 5))).shape == (4, 5, 3)
    assert get_vis_func("timesurface")(np.ones((2, 4, 5))).shape == (4, 5, 3)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        vis_histo(np.zeros((4, 5)))


def test_make_grid_places_images_row_major():
    imgs = [np.full((2, 3, 3), v, dtype=np.uint8) for v in (10, 20, 30)]
    grid = make_grid(imgs)  # 2 columns, 2 rows, last cell black
    assert grid.shape == (4, 6, 3)
    assert grid[0, 0, 0] == 10 and grid[0, 3, 0] == 20 and grid[2, 0, 0] == 30 and grid[2, 3, 0] == 0


def test_batch_frames_calls_viz_labels_on_non_none_labels():
    batch = {"inputs": torch.zeros(2, 2, 2, 4, 5), "labels": [["a", None], [None, "b"]]}
    seen = []

    def viz(frame, label):
        seen.append(label)
        frame[0, 0] = 255
        return frame

    frames = list(batch_frames(batch, vis_histo, viz))
    assert len(frames) == 2 and frames[0].shape == (4, 10, 3)
    assert seen == ["a", "b"]
    assert frames[0][0, 0].tolist() == [255, 255, 255] and frames[0][0, 5].tolist() == [0, 0, 0]
